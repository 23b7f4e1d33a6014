//! Progress bars for long commands (`ledger verify`, `ledger export`, `gen-data --out`), one
//! look and one rule: on standard error, only when it is a terminal (standard output stays the
//! command's result, and a log or a pipe gets no bar), and only for work of at least
//! [`THRESHOLD`] entries or subjects, which takes long enough to need one.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Show a progress bar only for work of this many entries (or subjects) and more.
pub const THRESHOLD: u64 = 100_000;

/// Bytes of an export line per entry, about (its bytes, leaf hash and a proof of some 17
/// hashes, in hex): what an export file of [`THRESHOLD`] entries weighs, roughly.
pub const EXPORT_BYTES_PER_ENTRY: u64 = 1024;

/// What a bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Ledger entries, with `what` naming them ("entries").
    Count(&'static str),
    /// Bytes of a file; the work counts as `bytes / per_item` items for the rule.
    Bytes { per_item: u64 },
}

/// Whether a bar is shown for `items` items of work, by the rule above.
pub fn wanted(items: u64, on_terminal: bool) -> bool {
    on_terminal && items >= THRESHOLD
}

/// A bar on standard error for `total` units, `verb` saying what is done ("verifying"), or
/// `None` when [`wanted`] says no. Finish it with `finish_and_clear`.
pub fn bar(verb: &str, total: u64, unit: Unit) -> Option<ProgressBar> {
    let items = match unit {
        Unit::Count(_) => total,
        Unit::Bytes { per_item } => total / per_item.max(1),
    };
    if !wanted(items, std::io::stderr().is_terminal()) {
        return None;
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&template(verb, unit)) {
        bar.set_style(style);
    }
    Some(bar)
}

fn template(verb: &str, unit: Unit) -> String {
    match unit {
        Unit::Count(what) => {
            format!("{verb} {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)")
        }
        Unit::Bytes { .. } => {
            format!("{verb} {{bar:40}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_and_for_long_work() {
        assert!(wanted(THRESHOLD, true));
        assert!(!wanted(THRESHOLD - 1, true));
        assert!(!wanted(10 * THRESHOLD, false), "never into a pipe or a log");
    }

    #[test]
    fn one_look_for_every_bar() {
        assert_eq!(
            template("verifying", Unit::Count("entries")),
            "verifying {bar:40} {pos}/{len} entries ({per_sec}, {eta} left)"
        );
        for unit in [
            Unit::Count("subjects"),
            Unit::Bytes {
                per_item: EXPORT_BYTES_PER_ENTRY,
            },
        ] {
            assert!(
                ProgressStyle::with_template(&template("exporting", unit)).is_ok(),
                "{unit:?}"
            );
        }
    }
}
