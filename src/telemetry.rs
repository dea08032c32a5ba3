//! Logging (tracing subscriber: pretty in development, JSON in production) and the Prometheus
//! metrics registry. What gets logged per request lives in the HTTP middleware, not here.

pub mod metrics;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the process-wide subscriber. `RUST_LOG`, when set, overrides the configured filter.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _already_set = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
