//! The pool under `mpirun --oversubscribe`: each test runs
//! `shmproc-mpi-check` (src/bin) on several ranks of this machine, with
//! MPI's shared-memory transport or TCP only (`--mca btl tcp,self`, the
//! stand-in for a second machine), under a watchdog (`timeout`), and checks
//! its output and exit status. One `mpirun` at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// How long one `mpirun` may take before the watchdog ends it.
const WATCHDOG_S: u32 = 120;
/// The exit status `timeout` gives when the watchdog fired.
const TIMED_OUT: i32 = 124;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shmproc-mpi-check"))
}

/// `mpirun --oversubscribe <mca> <apps>` under the watchdog. `apps` is
/// `mpirun`'s program part (`-np N prog args [: -np M prog args]`).
fn mpirun(mca: &[&str], apps: &[&str], env: &[(&str, &str)]) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Command::new("timeout");
    c.args([
        "-k",
        "10",
        &WATCHDOG_S.to_string(),
        "mpirun",
        "--oversubscribe",
    ])
    .args(mca)
    .args(apps)
    // mpirun refuses root without these (CI runs as root).
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("timeout and mpirun are installed");
    assert_ne!(
        out.status.code(),
        Some(TIMED_OUT),
        "the watchdog ended mpirun after {WATCHDOG_S} s: {}",
        text(&out)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const SHM: &[&str] = &["--mca", "btl", "vader,self"];
const TCP: &[&str] = &["--mca", "btl", "tcp,self"];

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut i = 3;
    while i * i <= n {
        if n % i == 0 {
            return false;
        }
        i += 2;
    }
    true
}

/// The local pool's answer for `0..n`, as the check program prints it.
fn local_pool_primes(n: u64) -> String {
    let pool = shmproc_pool::Pool::new(2).expect("local pool");
    let flags = pool.map(is_prime, 0..n).expect("local map");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in &flags {
        h ^= u64::from(f);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "primes n={n} count={} digest={h:#x}",
        flags.iter().filter(|&&f| f).count()
    )
}

fn primes_on_4_ranks(mca: &[&str]) {
    let n = 2_000_000u64;
    let want = local_pool_primes(n);
    let bin = check_bin();
    let out = mpirun(
        mca,
        &[
            "-np",
            "4",
            bin.to_str().expect("utf-8 path"),
            "primes",
            &n.to_string(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains(&format!("{want} workers=3")),
        "the MPI pool's results differ from the local pool's ({want}):\n{}",
        text(&out)
    );
}

#[test]
fn is_prime_2m_on_4_ranks_shared_memory_equals_the_local_pool() {
    primes_on_4_ranks(SHM);
}

#[test]
fn is_prime_2m_on_4_ranks_tcp_only_equals_the_local_pool() {
    primes_on_4_ranks(TCP);
}

fn api(mca: &[&str], transport: &str) {
    let bin = check_bin();
    let out = mpirun(
        mca,
        &["-np", "4", bin.to_str().expect("utf-8 path"), "api"],
        &[("SHMPROC_MPI_TRANSPORT", transport)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    for what in [
        "ok imap yields in input order",
        "ok imap_unordered yields every result once",
        "ok apply_async results",
        "ok a task's panic reaches rank 0 (index 13: thirteen is unlucky)",
        "ok imap yields the items before a panic, then the panic",
        "ok map_slices over 3000000 f32",
        "ok map_into",
        "ok lengths checked",
    ] {
        assert!(stdout.contains(what), "missing {what:?}:\n{}", text(&out));
    }
    if transport == "auto" {
        assert!(
            stdout.contains("(3 workers map the driver's segments)"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn api_over_shared_memory_with_pod_chunks_in_place() {
    api(SHM, "auto");
}

#[test]
fn api_over_tcp_with_pod_chunks_as_messages() {
    api(TCP, "messages");
}

#[test]
fn a_rank_killed_mid_map_ends_the_job_non_zero_naming_the_rank() {
    let bin = check_bin();
    // The task SIGKILLs its own rank on item 77; the watchdog in `mpirun`
    // fails the test if the job hangs instead.
    let out = mpirun(
        SHM,
        &["-np", "4", bin.to_str().expect("utf-8 path"), "die"],
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exited on signal 9") && stderr.contains("process rank"),
        "mpirun did not name the dead rank:\n{}",
        text(&out)
    );
}

#[test]
fn the_driver_killed_mid_map_ends_the_job_non_zero_naming_rank_0() {
    let bin = check_bin();
    let out = mpirun(
        TCP,
        &["-np", "3", bin.to_str().expect("utf-8 path"), "die-driver"],
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("process rank 0") && stderr.contains("exited on signal 9"),
        "mpirun did not name rank 0:\n{}",
        text(&out)
    );
}

/// A unique scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "shmproc-mpi-{tag}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir(&p).expect("scratch dir");
        Self(p)
    }
    fn copy_of(&self, bin: &Path, name: &str, extra: &[u8]) -> PathBuf {
        let to = self.0.join(name);
        std::fs::copy(bin, &to).expect("copy the program");
        let mut bytes = std::fs::read(&to).expect("read");
        bytes.extend_from_slice(extra);
        std::fs::write(&to, bytes).expect("write");
        let mut perm = std::fs::metadata(&to).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&to, perm).expect("chmod");
        to
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_same_build_at_another_path_serves_and_another_build_is_refused() {
    let bin = check_bin();
    let scratch = Scratch::new("build");
    // A byte-identical copy: another file and inode, as on another machine.
    let same = scratch.copy_of(&bin, "same", b"");
    let out = mpirun(
        TCP,
        &[
            "-np",
            "2",
            bin.to_str().expect("utf-8"),
            "build",
            ":",
            "-np",
            "1",
            same.to_str().expect("utf-8"),
            "build",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok build 10"));
    // One more byte: another build. Every rank refuses to start.
    let other = scratch.copy_of(&bin, "other", b"x");
    let out = mpirun(
        TCP,
        &[
            "-np",
            "2",
            bin.to_str().expect("utf-8"),
            "build",
            ":",
            "-np",
            "1",
            other.to_str().expect("utf-8"),
            "build",
        ],
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rank(s) [2] run a different build of the program than rank 0"),
        "{}",
        text(&out)
    );
}
