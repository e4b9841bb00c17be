//! The tutorial's `Process` program: two workers that sleep 2 s and 3 s,
//! started in parallel and joined, then "All processes completed".
//!
//! `cargo run --release --example process_basic [-- --scale 0.01]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::process_basic;

const USAGE: &str = "\
usage: process_basic [--scale F] [--fast]
  --scale F   multiply the sleeps (2 s and 3 s) by F (default 1)
  --fast      the same as --scale 0.01";

fn main() -> ExitCode {
    run_example(USAGE, &["scale", "fast"], |opts, out| {
        let scale = if opts.flag("fast") {
            0.01
        } else {
            opts.get("scale", 1.0)?
        };
        process_basic(out, scale, "")?;
        Ok(())
    })
}
