//! `shmproc`: the command-line tool of the shmproc workspace.
//!
//! - `shmproc ls [--json] [--prefix P]`: every shmproc segment in `/dev/shm`,
//!   with its kind, element type, size, creator (alive or not), whether it
//!   was persisted, and the fill level of queues and pipes;
//! - `shmproc inspect NAME [--json]`: the header field by field and the
//!   kind's live state (a queue's indices, leases and sleepers; a lock's
//!   holder; a pipe's ends and rings); a corrupt segment is reported as
//!   corrupt, naming each bad field, and the exit code is 1;
//! - `shmproc clean [--dry-run] [--all] [--prefix P]`: removes the segments
//!   whose creator died, that were not persisted and that no live process
//!   maps or holds open (`shmproc_shm::cleanup`);
//! - `shmproc bench [--quick] [--json FILE] [--plot FILE.svg] [GROUP...]`:
//!   the comparison run (`shmproc_benches::suite`) with a progress bar, a
//!   table of ratios, the raw figures as JSON and a chart as SVG.
//!
//! Segments are untrusted input: they are read through a read-only
//! descriptor into a copy ([`shmproc_shm::inspect::Snapshot`]), never
//! mapped, and decoded by the owning crates' `inspect` modules, which check
//! every field and never panic.
//!
//! Install with `cargo install --path crates/shmproc-cli`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod clean;
mod inspect;
mod ls;
mod report;

/// Inspect and clean shmproc's shared-memory segments, and run the
/// comparison benches.
#[derive(Debug, Parser)]
#[command(name = "shmproc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List every shmproc segment in /dev/shm: kind, element type, size,
    /// creator and whether it is alive, persisted or not, fill level.
    Ls {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only segments whose names start with PREFIX.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Show a segment's header, field by field, and its live state (exit
    /// code 1 when it is corrupt or cannot be read).
    Inspect {
        /// The segment: `name`, `/name` or `/dev/shm/name`.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the segments whose creator died, that were not persisted and
    /// that no live process maps or holds open.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove unreadable files named like generated names
        /// (`shmproc-<pid>-...`) whose pid is dead and that nobody holds open:
        /// leftovers of a creator killed before it wrote the header.
        #[arg(long)]
        all: bool,
        /// Only segments whose names start with PREFIX.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// The comparison run: shmproc's Queue, Pipe, Value, Process start,
    /// Pool and Manager against their baselines (and Python's multiprocessing when
    /// python3 is present), in interleaved rounds; a table of ratios.
    Bench {
        /// List the groups and exit.
        #[arg(long)]
        list: bool,
        /// Small sizes and 3 rounds: under a minute on 2 CPUs.
        #[arg(long)]
        quick: bool,
        /// Write every sample, median and ratio to FILE as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Draw each case's medians to FILE, an SVG chart.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<std::path::PathBuf>,
        /// Leave Python's multiprocessing out.
        #[arg(long)]
        no_python: bool,
        /// The groups to run (all of them when left out).
        groups: Vec<bench::GroupArg>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ls { json, prefix } => ls::run(json, prefix.as_deref()),
        Cmd::Inspect { name, json } => inspect::run(&name, json),
        Cmd::Clean {
            dry_run,
            all,
            prefix,
        } => clean::run(dry_run, all, prefix.as_deref()),
        Cmd::Bench {
            list,
            quick,
            json,
            plot,
            no_python,
            groups,
        } => bench::run(bench::BenchArgs {
            list,
            quick,
            json,
            plot,
            no_python,
            groups,
        }),
    }
}

/// Writes `text` to stdout; a closed pipe (`shmproc ls | head`) is not an
/// error worth a message.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("shmproc: cannot write to stdout: {e}");
        }
    }
}

/// Writes `value` as pretty JSON and a newline to stdout.
fn emit_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => emit(&format!("{s}\n")),
        Err(e) => eprintln!("shmproc: cannot encode JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
