//! The `airbar` binary: parse the command line, load the configuration, start.

use std::collections::BTreeMap;
use std::process::ExitCode;

use airbar::config::{Settings, Source};
use airbar::startup::{self, Application};

const USAGE: &str = "usage: airbar [serve|migrate]
  serve    create the database if missing, migrate, then serve HTTP and WebSocket (default)
  migrate  create the database if missing and apply pending migrations, then exit
configuration: config/default.toml, config/$AIRBAR_ENV.toml, then the environment
  (PORT, DATABASE_URL, REDIS_URL, AIRBAR__<SECTION>__<KEY>); see README.md";

enum Command {
    Serve,
    Migrate,
}

fn parse_args() -> Result<Command, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => Ok(Command::Serve),
        ["migrate"] => Ok(Command::Migrate),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let command = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("airbar: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let loaded = Source::from_vars(&vars).and_then(|source| {
        Settings::load(&source, &vars).map(|settings| (source.environment, settings))
    });
    let (environment, settings) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("airbar: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    airbar::telemetry::init(&settings.telemetry);

    let outcome = actix_web::rt::System::new().block_on(async move {
        let migrated = startup::prepare_database(&settings)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(migrations_applied = migrated, "database ready");
        if let Command::Migrate = command {
            return Ok(());
        }
        let app = Application::build(settings, environment, None).map_err(|e| e.to_string())?;
        app.run_until_signalled()
            .await
            .map_err(|e| format!("server error: {e}"))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("airbar: {e}");
            ExitCode::FAILURE
        }
    }
}
