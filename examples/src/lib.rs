//! Shared code of the examples.
//!
//! Each scenario of Python's multiprocessing tutorial is one function here
//! ([`scenarios`]) that takes its options and writes its report to any
//! [`Write`]. The standalone examples (`process_basic`,
//! `pool_primes`, ...), `multiprocessing_demo` (all of them, short) and the
//! tests (`tests/examples.rs`) call the same functions; the task functions
//! that run in the children live here too ([`tasks`]), as plain `fn` items.

pub mod options;
pub mod scenarios;
pub mod tasks;

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;

pub use options::Options;

/// What a scenario returns: its report, or the first error (every shmproc
/// error is `'static + Send + Sync`, so `?` works).
pub type ExampleResult<T = ()> = Result<T, Box<dyn Error>>;

/// Runs an example's `body` with its parsed options and stdout, and turns
/// the outcome into an exit code: 0, 1 on an error (printed to stderr), 2
/// on a usage error; `--help` prints `usage`.
pub fn run_example(
    usage: &str,
    known: &[&str],
    body: impl FnOnce(&Options, &mut dyn Write) -> ExampleResult,
) -> ExitCode {
    let opts = match Options::from_env(known) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    if opts.flag("help") {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    match body(&opts, &mut io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A writer that starts every line with `prefix` (the demo indents each
/// scenario's report under its section title).
#[derive(Debug)]
pub struct Indent<W: Write> {
    inner: W,
    prefix: &'static str,
    at_line_start: bool,
}

impl<W: Write> Indent<W> {
    /// Wraps `inner`.
    pub fn new(inner: W, prefix: &'static str) -> Self {
        Self {
            inner,
            prefix,
            at_line_start: true,
        }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Indent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Whole lines at a time (each with its prefix), so one `writeln!`
        // reaches a line-buffered stdout as one line.
        let mut line = Vec::with_capacity(buf.len() + self.prefix.len());
        for &b in buf {
            if self.at_line_start && b != b'\n' {
                line.extend_from_slice(self.prefix.as_bytes());
            }
            line.push(b);
            self.at_line_start = b == b'\n';
        }
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
