//! The tutorial's exercise: a CPU-heavy function (`is_prime` on 13-digit
//! numbers) over a large list, in a plain loop and with `Pool::map` (and
//! `Pool::map_into` over shared arrays): the times and the speed-ups.
//!
//! `cargo run --release --example compare_sequential_pool [-- --size N]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::{compare_sequential_pool, default_workers};

const USAGE: &str = "\
usage: compare_sequential_pool [--size N] [--start S] [--workers N]
  --size N      how many numbers (default 20000)
  --start S     the first number (default 1_000_000_000_000)
  --workers N   pool processes (default: one per available CPU)";

fn main() -> ExitCode {
    run_example(USAGE, &["size", "start", "workers"], |opts, out| {
        compare_sequential_pool(
            out,
            opts.get("start", 1_000_000_000_000)?,
            opts.get("size", 20_000)?,
            opts.get("workers", default_workers())?,
        )?;
        Ok(())
    })
}
