//! `Pool::map_slices` over a large shared `f32` array (`y = a·x + b`),
//! checked against the sequential result, with the bandwidth reached.
//!
//! `cargo run --release --example shared_array_kernel [-- --size N]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::{default_workers, shared_array_kernel};

const USAGE: &str = "\
usage: shared_array_kernel [--size N] [--rounds R] [--workers N]
  --size N      elements of x and y (default 33_554_432: 128 MiB each)
  --rounds R    calls to time (default 5)
  --workers N   pool processes (default: one per available CPU)";

fn main() -> ExitCode {
    run_example(USAGE, &["size", "rounds", "workers"], |opts, out| {
        shared_array_kernel(
            out,
            opts.get("size", 1 << 25)?,
            opts.get("workers", default_workers())?,
            opts.get("rounds", 5)?,
        )?;
        Ok(())
    })
}
