//! A long `Pool::imap` behind a progress bar (indicatif), the way Python
//! users wrap `pool.imap` in `tqdm`. The bar draws on stderr when it is a
//! terminal; a summary line follows either way.
//!
//! `cargo run --release --example imap_progress [-- --len N]`

use std::process::ExitCode;

use shmproc_examples::run_example;
use shmproc_examples::scenarios::{default_workers, imap_progress};

const USAGE: &str = "\
usage: imap_progress [--len N] [--workers N] [--no-bar]
  --len N       items (blocks of 2000 numbers whose primes are counted; default 3000)
  --workers N   pool processes (default: one per available CPU)
  --no-bar      no progress bar, only the summary";

fn main() -> ExitCode {
    run_example(USAGE, &["len", "workers", "no-bar"], |opts, out| {
        imap_progress(
            out,
            opts.get("len", 3000)?,
            opts.get("workers", default_workers())?,
            !opts.flag("no-bar"),
        )?;
        Ok(())
    })
}
