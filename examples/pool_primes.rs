//! The tutorial's `Pool.map(is_prime, numbers)` over its four large
//! numbers: the CPU count, each verdict and the time taken.
//!
//! `cargo run --release --example pool_primes [-- --workers N]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::{default_workers, pool_primes};

const USAGE: &str = "\
usage: pool_primes [--workers N]
  --workers N   pool processes (default: one per available CPU)";

fn main() -> ExitCode {
    run_example(USAGE, &["workers"], |opts, out| {
        pool_primes(out, opts.get("workers", default_workers())?)?;
        Ok(())
    })
}
