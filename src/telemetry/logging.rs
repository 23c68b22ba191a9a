//! Log output: human-readable lines or one JSON object per line (for log collectors), on
//! stderr, with the level from `RUST_LOG`. Colours only on a terminal, and never with
//! `NO_COLOR` set (<https://no-color.org>).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (timestamp, level, target, fields).
    Json,
}

/// Installs the global subscriber; `default_level` applies when `RUST_LOG` is unset or invalid.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Whether log lines are coloured: on a terminal, unless `NO_COLOR` is set to anything but
/// the empty string.
fn colours(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colours;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(!colours(false, None), "a file or a pipe gets plain text");
        assert!(!colours(true, Some("1".into())));
        assert!(colours(true, Some("".into())), "an empty NO_COLOR is unset");
    }
}
