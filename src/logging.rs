//! Structured logs with `tracing`, as text for people or JSON for log shippers. Logs go to
//! stderr so that stdout stays for output that programs read.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests, `demo` after `serve`) are no-ops.
/// `RUST_LOG`, when set, overrides the configured level.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a configured `log.level` before it is used. `EnvFilter` reads any word that is not a
/// level as a target name, so a typo such as `warning` or `Info ` is accepted and silently turns
/// every log off, errors included; a node must not lose its error log to a typo. Accepted: a
/// level, or comma-separated `target=level` directives (with at most one bare level).
pub fn check_level(filter: &str) -> Result<(), String> {
    let expected = "expected a level (trace, debug, info, warn, error, off) or comma-separated \
                    target=level directives, e.g. \"info\" or \"warn,credit_node=debug\"";
    for directive in filter.split(',') {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                let target_ok = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'));
                if !target_ok {
                    return Err(format!("{directive:?}: bad target; {expected}"));
                }
                level
            }
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "{directive:?}: {level:?} is not a level; {expected}"
            ));
        }
    }
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("{e}; {expected}"))
}

#[cfg(test)]
mod tests {
    use super::check_level;

    #[test]
    fn levels_and_directives_pass_and_typos_do_not() {
        for good in [
            "info",
            "WARN",
            "off",
            "warn,credit_node=debug",
            "credit_node::api=trace",
        ] {
            assert_eq!(check_level(good), Ok(()), "{good}");
        }
        for bad in [
            "warning",
            "Info ",
            "",
            "info,",
            "credit_node",
            "=debug",
            "a b=info",
        ] {
            assert!(check_level(bad).is_err(), "{bad:?} accepted");
        }
    }
}
