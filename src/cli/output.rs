//! Standard output for every command, and the one rule for a reader that has gone away.
//!
//! `credit-node ledger list … | head -1` closes the pipe after one line. Rust ignores SIGPIPE,
//! so the next write fails with `BrokenPipe` (and `println!` panics on it). As Unix tools do,
//! a command whose reader is gone ends quietly with exit 0: [`write_error`] turns that error
//! into [`CliError::OutputClosed`], which `main` reports as nothing at all. Commands print
//! with [`outln!`](crate::outln) and [`out!`](crate::out), and map the errors of writers on
//! standard output with [`write_error`]; none handles a closed pipe itself.

use std::io::{self, Write};

use super::CliError;

/// An error writing standard output: [`CliError::OutputClosed`] when the reader has gone,
/// otherwise a runtime failure.
pub fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::OutputClosed
    } else {
        CliError::Runtime(format!("writing output: {e}"))
    }
}

/// Writes `args` to standard output (what [`out!`](crate::out) expands to).
pub fn print(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(write_error)
}

/// `print!` that returns `Result<(), CliError>` instead of panicking on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!($($arg)*))
    };
}

/// `println!` that returns `Result<(), CliError>` instead of panicking on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_ends_quietly_and_other_errors_are_failures() {
        let closed = write_error(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(closed, CliError::OutputClosed));
        assert_eq!(closed.exit_code(), 0);
        let full = write_error(io::Error::other("no space left on device"));
        assert_eq!(full.exit_code(), 1);
        assert_eq!(full.to_string(), "writing output: no space left on device");
    }
}
