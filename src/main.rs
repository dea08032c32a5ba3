//! The `airbar` binary: parse the command line, load the configuration, start.

use std::collections::BTreeMap;
use std::process::ExitCode;

use airbar::config::{Settings, Source};
use airbar::startup::{self, Application};
use chrono::{DateTime, NaiveDate, Utc};

/// mimalloc: allocations made on one thread and freed on another (frames and messages that
/// cross from trackers to sockets) are cheap; glibc's arenas made them a tenth of the tracking
/// path's CPU (BENCHMARKS.md, Live tracking).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: airbar [serve|migrate|reconcile [--from DATE] [--to DATE]]
  serve      create the database if missing, migrate, then serve HTTP and WebSocket (default)
  migrate    create the database if missing and apply pending migrations, then exit
  reconcile  check the ledger's invariants and the payment records against it and, with
             Stripe configured, against Stripe's objects created from --from (default 30 days
             ago) to --to (default now; dates as YYYY-MM-DD or RFC 3339); exit 1 on a mismatch
configuration: config/default.toml, config/$AIRBAR_ENV.toml, then the environment
  (PORT, DATABASE_URL, REDIS_URL, AIRBAR__<SECTION>__<KEY>); see README.md";

enum Command {
    Serve,
    Migrate,
    Reconcile {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("not a date: {s}"))
}

fn parse_reconcile(rest: &[&str]) -> Result<Command, String> {
    let now = Utc::now();
    let (mut from, mut to) = (now - chrono::Duration::days(30), now);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match *flag {
            "--from" => from = parse_time(value)?,
            "--to" => to = parse_time(value)?,
            other => return Err(format!("unexpected argument: {other}")),
        }
    }
    if from >= to {
        return Err("--from must be before --to".to_owned());
    }
    Ok(Command::Reconcile { from, to })
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
        ["reconcile", rest @ ..] => parse_reconcile(rest),
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
    if let Command::Reconcile { from, to } = command {
        return reconcile(&settings, from, to);
    }

    let outcome = actix_web::rt::System::new().block_on(async move {
        let migrated = startup::prepare_database(&settings)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(migrations_applied = migrated, "database ready");
        if !matches!(command, Command::Serve) {
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

fn reconcile(settings: &Settings, from: DateTime<Utc>, to: DateTime<Utc>) -> ExitCode {
    let outcome = actix_web::rt::System::new().block_on(startup::reconcile(settings, from, to));
    match outcome {
        Ok(report) => {
            println!(
                "reconcile {from} .. {to}: {} ledger transfers, provider {}",
                report.transfers,
                if report.provider_checked {
                    "compared"
                } else {
                    "not compared (test provider)"
                }
            );
            for m in &report.mismatches {
                println!("MISMATCH {m}");
            }
            if report.ok() {
                println!("ok");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("airbar reconcile: {e}");
            ExitCode::from(2)
        }
    }
}
