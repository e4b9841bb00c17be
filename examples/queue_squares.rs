//! The tutorial's `Queue` program: a child puts `(n, n²)` pairs and the
//! sentinel `None`; the parent reads until the sentinel.
//!
//! `cargo run --release --example queue_squares [-- --count N]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::queue_squares;

const USAGE: &str = "\
usage: queue_squares [--count N]
  --count N   square the numbers 1..=N (default 5, the tutorial's [1, 2, 3, 4, 5])";

fn main() -> ExitCode {
    run_example(USAGE, &["count"], |opts, out| {
        let count: u64 = opts.get("count", 5)?;
        let numbers: Vec<u64> = (1..=count).collect();
        queue_squares(out, &numbers)?;
        Ok(())
    })
}
