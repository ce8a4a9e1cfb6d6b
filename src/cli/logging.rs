//! Logs on stderr, for people (text) or for log shippers (`FACEGATE_LOG_FORMAT=json`, one
//! JSON object per line). `FACEGATE_LOG` is a tracing filter (`info`, `facegate=debug`…);
//! one that cannot be parsed is an error, not silently the default.

use crate::error::Error;

/// Sets up logging; `default_filter` applies when `FACEGATE_LOG` is not set.
pub fn init(default_filter: &str) -> Result<(), Error> {
    let filter = match std::env::var("FACEGATE_LOG") {
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text)
            .map_err(|e| Error::Config(vec![format!("FACEGATE_LOG: {text:?} is not a log filter: {e}")]))?,
        Err(_) => tracing_subscriber::EnvFilter::new(default_filter),
    };
    let format = std::env::var("FACEGATE_LOG_FORMAT").unwrap_or_else(|_| "text".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format.as_str() {
        "text" => builder
            // Colours only on a terminal: not in journald or log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        "json" => builder.json().flatten_event(true).init(),
        other => {
            return Err(Error::Config(vec![format!(
                "FACEGATE_LOG_FORMAT: {other:?} is not one of text, json"
            )]));
        }
    }
    Ok(())
}
