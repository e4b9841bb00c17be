//! The tutorial's exercise: worker processes send log lines through a
//! Queue to one writer process, which writes a single log file; the file
//! is read back (every line present, none interleaved mid-line).
//!
//! `cargo run --release --example queue_logging [-- --log PATH]`

use std::path::PathBuf;
use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::{default_log_path, queue_logging};

const USAGE: &str = "\
usage: queue_logging [--log PATH] [--workers N] [--lines N]
  --log PATH    the log file (default: shmproc-queue-logging-<pid>.log in the temporary directory)
  --workers N   worker processes (default 4)
  --lines N     lines per worker (default 1000)";

fn main() -> ExitCode {
    run_example(USAGE, &["log", "workers", "lines"], |opts, out| {
        let path = opts
            .value("log")
            .map_or_else(default_log_path, PathBuf::from);
        queue_logging(
            out,
            &path,
            opts.get("workers", 4)?,
            opts.get("lines", 1000)?,
        )?;
        Ok(())
    })
}
