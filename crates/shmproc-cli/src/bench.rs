//! `shmproc bench`: runs the comparison benches of the repository's
//! `benches/` crate with cargo, from a checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::ValueEnum;

/// The comparison benches: each runs shmproc and its baselines side by side
/// in rounds and prints medians, ratios and PASS/MISS per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchName {
    /// Queue against the atomic floor, a minimal SPSC ring, a Unix socket,
    /// ipc-channel, crossbeam-channel and Python.
    #[value(name = "queue_compare")]
    Queue,
    /// Pipe against the floor, a futex wake, a Unix socket, pipe(2) and memcpy.
    #[value(name = "pipe_compare")]
    Pipe,
    /// Lock and Value against pthread, raw_sync and the atomic floor.
    #[value(name = "sync_compare")]
    Sync,
}

impl BenchName {
    /// The bench's name, as cargo knows it.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// What it compares (its doc comment above).
    fn about(self) -> String {
        self.to_possible_value()
            .and_then(|v| v.get_help().map(ToString::to_string))
            .unwrap_or_default()
    }
}

/// `--list`: prints the benches; otherwise runs `name` (or all of them, in
/// turn) with `cargo bench -p shmproc-benches --bench NAME` in the checkout
/// the current directory is in.
pub(crate) fn run(list: bool, name: Option<BenchName>) -> ExitCode {
    if list {
        let mut out = String::new();
        for b in BenchName::value_variants() {
            out.push_str(&format!("{:<14} {}\n", b.name(), b.about()));
        }
        crate::emit(&out);
        return ExitCode::SUCCESS;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let Some(root) = checkout_root(&cwd) else {
        eprintln!(
            "shmproc bench: {} is not inside a checkout of the shmproc repository (no \
             benches/Cargo.toml of the shmproc-benches crate in it or above it).\n\
             The comparison benches build from the sources: run `shmproc bench` inside a checkout.",
            cwd.display()
        );
        return ExitCode::from(2);
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let benches = name.map_or(BenchName::value_variants().to_vec(), |b| vec![b]);
    for b in benches {
        eprintln!(
            "shmproc bench: cargo bench -p shmproc-benches --bench {} (in {})",
            b.name(),
            root.display()
        );
        let status = Command::new(&cargo)
            .args(["bench", "-p", "shmproc-benches", "--bench", &b.name()])
            .current_dir(&root)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("shmproc bench: {} failed ({s})", b.name());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("shmproc bench: cannot run {}: {e}", cargo.to_string_lossy());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The nearest directory at or above `dir` holding the shmproc workspace:
/// a `Cargo.toml` and a `benches/Cargo.toml` of `shmproc-benches`.
fn checkout_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            d.join("Cargo.toml").is_file()
                && std::fs::read_to_string(d.join("benches/Cargo.toml"))
                    .is_ok_and(|t| t.contains("name = \"shmproc-benches\""))
        })
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_found_from_inside_it() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = checkout_root(here).expect("this crate lives in the repository");
        assert!(root.join("benches/queue_compare.rs").is_file());
        assert_eq!(checkout_root(Path::new("/")), None);
    }
}
