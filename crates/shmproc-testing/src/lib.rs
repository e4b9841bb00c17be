//! Test support for shmproc (dev-only): unique segment names, child
//! processes (re-executing the test binary with a role, or forking), a
//! watchdog that fails a hung test, and a check that a test left nothing in
//! `/dev/shm`.
//!
//! # A test with a child process
//! ```no_run
//! use std::time::Duration;
//! use shmproc_testing::{Child, TestShm, arg, current_test, role};
//!
//! #[test]
//! fn child_writes_parent_reads() {
//!     // The child re-runs this very test; `role()` tells it apart.
//!     if role().as_deref() == Some("writer") {
//!         let name = arg("name").expect("parent passes the name");
//!         // ... open `name`, write ...
//!         return;
//!     }
//!     let shm = TestShm::new();
//!     let name = shm.name("seg");
//!     // ... create `name` ...
//!     let child = Child::spawn(current_test!(), "writer", &[("name", &name)]).unwrap();
//!     assert_eq!(child.wait_timeout(Duration::from_secs(30)).code(), 0);
//!     // `shm` checks on drop that nothing named after it is left in /dev/shm.
//! }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmproc_shm::Segment;
use shmproc_shm::os::{self, ExitStatus, Pid};

/// Prefix of every name the harness hands out; `.ci/run` and the before-stop
/// check look for leftovers under it.
pub const TEST_PREFIX: &str = "shmproc-test-";

const ENV_ROLE: &str = "SHMPROC_TEST_ROLE";
const ENV_PARENT: &str = "SHMPROC_TEST_PARENT";
const ENV_ARG: &str = "SHMPROC_TEST_ARG_";

static SCOPES: AtomicU64 = AtomicU64::new(0);

/// A per-test namespace of segment names.
///
/// Every name from [`name`](Self::name) starts with this scope's own prefix
/// (`shmproc-test-<pid>-<n>-`), so tests running in parallel never collide.
/// On drop it removes whatever is left in `/dev/shm` under the prefix and
/// **fails the test** if anything was (unless the test is already failing):
/// a leaked segment is a bug. A test that leaks on purpose (it SIGKILLs a
/// child that created segments) calls [`sweep`](Self::sweep) first and
/// asserts on what it removed.
#[derive(Debug)]
pub struct TestShm {
    prefix: String,
    next: AtomicU64,
}

impl TestShm {
    /// A fresh namespace.
    pub fn new() -> Self {
        let n = SCOPES.fetch_add(1, Ordering::Relaxed);
        let rand = os::random_u64() & 0xffff;
        Self {
            prefix: format!("{TEST_PREFIX}{}-{n}{rand:04x}-", os::getpid()),
            next: AtomicU64::new(0),
        }
    }

    /// A unique segment name in this namespace (without the leading `/`).
    pub fn name(&self, tag: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{tag}{n}", self.prefix)
    }

    /// The prefix shared by every name of this namespace.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names under this namespace that exist in `/dev/shm` now.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers_with_prefix(&self.prefix)
    }

    /// Removes every segment left under this namespace and returns their names
    /// (whatever their state: a test's leftovers are removed even while a
    /// stray child still maps them, unlike crash cleanup's orphans).
    pub fn sweep(&self) -> Vec<String> {
        let left = self.leftovers();
        for name in &left {
            let _ = Segment::remove(name);
        }
        left
    }
}

impl Default for TestShm {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestShm {
    fn drop(&mut self) {
        let left = self.sweep();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("test leaked shared-memory segments (now removed): {left:?}");
        }
    }
}

/// The entries of `/dev/shm` whose names start with `prefix`, sorted
/// (readable segments or not: a leak is a leak), as
/// [`cleanup::list_matching`](shmproc_shm::cleanup::list_matching) lists
/// them.
pub fn leftovers_with_prefix(prefix: &str) -> Vec<String> {
    shmproc_shm::cleanup::list_matching(|n| n.starts_with(prefix))
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// The role this process was started with by [`Child::spawn`], or `None` in
/// the parent. The first call in a child also arranges for the child to be
/// killed if the test thread that spawned it goes away.
pub fn role() -> Option<String> {
    let role = std::env::var(ENV_ROLE).ok()?;
    if let Some(parent) = std::env::var(ENV_PARENT)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(Pid::from_raw)
    {
        match os::set_parent_death_signal(os::SIGKILL, parent) {
            Ok(true) => {}
            // The parent is already gone: nobody is waiting for this child.
            Ok(false) => os::exit_now(1),
            Err(e) => panic!("PR_SET_PDEATHSIG failed: {e}"),
        }
    }
    Some(role)
}

/// An argument passed to this child by [`Child::spawn`].
pub fn arg(key: &str) -> Option<String> {
    std::env::var(format!("{ENV_ARG}{key}")).ok()
}

/// An argument passed to this child, parsed.
///
/// # Panics
/// When the argument is missing or does not parse: a harness bug.
pub fn arg_parsed<T: std::str::FromStr>(key: &str) -> T {
    let raw = arg(key).unwrap_or_else(|| panic!("child argument {key:?} missing"));
    raw.parse()
        .unwrap_or_else(|_| panic!("child argument {key:?} = {raw:?} does not parse"))
}

/// The path of the current test function as libtest names it
/// (`module::test_name`), for [`Child::spawn`].
#[macro_export]
macro_rules! current_test {
    () => {{
        fn here() {}
        $crate::test_path_of(::std::any::type_name_of_val(&here))
    }};
}

/// Turns `crate::module::test::here` into `module::test` (the name libtest
/// filters on). Used by [`current_test!`].
#[doc(hidden)]
pub fn test_path_of(here: &'static str) -> &'static str {
    let without_here = here.strip_suffix("::here").unwrap_or(here);
    let without_closure = without_here.trim_end_matches("::{{closure}}");
    match without_closure.split_once("::") {
        Some((_crate, rest)) => rest,
        None => without_closure,
    }
}

/// A child process running one test of this binary in a role.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    test: String,
    role: String,
    done: Option<ExitStatus>,
}

impl Child {
    /// Re-runs this test binary with `--exact test`, so only `test` runs,
    /// and with `role` and `args` in its environment ([`role`], [`arg`]).
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn spawn(test: &str, role: &str, args: &[(&str, &str)]) -> io::Result<Child> {
        Self::spawn_with(test, role, args, |_| {})
    }

    /// As [`spawn`](Self::spawn), with a hook to adjust the command (a uid,
    /// extra environment, inherited fds) before it starts.
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn spawn_with(
        test: &str,
        role: &str,
        args: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> io::Result<Child> {
        Self::spawn_exe(&std::env::current_exe()?, test, role, args, adjust)
    }

    /// As [`spawn_with`](Self::spawn_with), running `exe` (a copy of the
    /// test binary, say, placed where another user can execute it).
    ///
    /// # Errors
    /// When the child cannot be started.
    pub fn spawn_exe(
        exe: &std::path::Path,
        test: &str,
        role: &str,
        args: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> io::Result<Child> {
        let mut cmd = Command::new(exe);
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(ENV_ROLE, role)
            .env(ENV_PARENT, os::getpid().to_string())
            .stdin(Stdio::null());
        for (k, v) in args {
            cmd.env(format!("{ENV_ARG}{k}"), v);
        }
        adjust(&mut cmd);
        // An executable the test just copied (one that runs itself as
        // another user) is "busy" (ETXTBSY) while another test thread's
        // fork, between its fork and its exec, still holds the copy's
        // write descriptor: the fork/exec race of every multithreaded
        // program (golang/go#22315). Try again until that child has
        // exec'd (bounded).
        let busy_until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let child = loop {
            match cmd.spawn() {
                Err(e)
                    if e.kind() == io::ErrorKind::ExecutableFileBusy
                        && std::time::Instant::now() < busy_until =>
                {
                    std::thread::yield_now();
                }
                r => break r?,
            }
        };
        Ok(Child {
            child,
            test: test.to_owned(),
            role: role.to_owned(),
            done: None,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_u32(self.child.id()).expect("a started child has a positive pid")
    }

    /// Sends `SIGKILL`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Sends signal `sig`.
    ///
    /// # Errors
    /// The OS error when the signal cannot be sent.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        os::kill(self.pid(), sig)
    }

    /// Whether the child has ended (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        self.poll().is_some()
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.done.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.done = Some(convert(st));
            }
        }
        self.done
    }

    /// Waits for the child to end, at most `timeout`.
    ///
    /// # Panics
    /// When the child is still running after `timeout`: it is killed, and the
    /// test fails with a message naming the child.
    pub fn wait_timeout(mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_timeout(timeout) {
            Some(st) => st,
            None => {
                self.kill();
                let _ = self.child.wait();
                panic!(
                    "child {} (role {:?} of test {}) still running after {timeout:?}: killed",
                    self.pid(),
                    self.role,
                    self.test
                );
            }
        }
    }

    /// Waits at most `timeout`; `None` if the child is still running.
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit with a deadline; the pause only bounds the
            // polling rate.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Waits for the child and asserts it passed (exit code 0).
    ///
    /// # Panics
    /// When the child fails, is killed, or outlives `timeout`.
    pub fn expect_success(self, timeout: Duration) {
        let who = format!("child role {:?} of test {}", self.role, self.test);
        let st = self.wait_timeout(timeout);
        assert_eq!(st, ExitStatus::Exited(0), "{who} ended with {st:?}");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.poll().is_none() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

fn convert(st: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitStatus::Exited(c),
        (None, Some(s)) => ExitStatus::Signaled(s),
        (None, None) => ExitStatus::Exited(-1),
    }
}

static IN_FORKED_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs (once, in the parent) a panic hook that, inside a forked child,
/// writes the message straight to fd 2 instead of running the default hook:
/// that one takes stderr's and the backtrace's locks, which another thread of
/// the parent may have held at the moment of the fork, and would deadlock.
fn install_fork_safe_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_FORKED_CHILD.load(Ordering::Relaxed) {
                let msg = format!("forked child {} panicked: {info}\n", os::getpid());
                os::write_stderr_raw(msg.as_bytes());
            } else {
                previous(info);
            }
        }));
    });
}

/// A child made with `fork` running a closure.
#[derive(Debug)]
pub struct ForkedChild {
    pid: Pid,
    done: Option<ExitStatus>,
}

/// Forks a child that runs `f` and exits with the code it returns (101 if
/// it panics), without running the parent's destructors or test harness.
///
/// Use it for short children that touch shared memory and atomics; the
/// [`Child`] harness (a re-executed test binary) has no limits.
///
/// # Safety
/// The test binary has other threads, and only the forking thread exists in
/// the child. `f` must not take a lock another thread may have held at the
/// fork: no printing (stdout's lock), no `std::sync` lock shared with other
/// threads, no `OnceLock` another thread may be initialising. The heap is
/// fine (glibc's `fork` resets malloc's locks in the child).
///
/// # Panics
/// When `fork` fails.
#[allow(unsafe_code)] // The fork harness: `os::fork` is unsafe by contract.
pub unsafe fn fork_child(f: impl FnOnce() -> i32) -> ForkedChild {
    install_fork_safe_panic_hook();
    // SAFETY: the child runs `f` and leaves through `exit_now`, never returning
    // into the harness; the caller guarantees `f` keeps to the limits of this
    // function's # Safety section.
    match unsafe { os::fork() }.expect("fork failed") {
        os::Forked::Child => {
            IN_FORKED_CHILD.store(true, Ordering::Relaxed);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            os::exit_now(code)
        }
        os::Forked::Parent(pid) => ForkedChild { pid, done: None },
    }
}

impl ForkedChild {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `SIGKILL`.
    pub fn kill(&self) {
        let _ = os::kill(self.pid, os::SIGKILL);
    }

    /// Sends signal `sig`.
    ///
    /// # Errors
    /// The OS error when the signal cannot be sent.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        os::kill(self.pid, sig)
    }

    /// Waits at most `timeout`; `None` if the child is still running.
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.done.is_some() {
            return self.done;
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            if let Ok(Some(st)) = os::try_wait(self.pid) {
                self.done = Some(st);
                return self.done;
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit with a deadline (see `Child::try_wait_timeout`).
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Waits for the child to end, at most `timeout`.
    ///
    /// # Panics
    /// When the child is still running after `timeout` (it is killed).
    pub fn wait_timeout(mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_timeout(timeout) {
            Some(st) => st,
            None => {
                self.kill();
                panic!(
                    "forked child {} still running after {timeout:?}: killed",
                    self.pid
                );
            }
        }
    }
}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if self.done.is_none() {
            if let Ok(None) = os::try_wait(self.pid) {
                self.kill();
            }
            let _ = os::wait(self.pid);
        }
    }
}

/// Fails a hung test: if not dropped within its timeout, it prints what
/// was being waited for and aborts the whole test process (so CI sees a
/// failure instead of a hang).
#[derive(Debug)]
pub struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog for `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::named(timeout, "test")
    }

    /// Arms a watchdog for `timeout` whose message names `what`.
    pub fn named(timeout: Duration, what: &str) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = std::thread::Builder::new()
            .name("shmproc-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                    eprintln!("watchdog: {what} still running after {timeout:?}; aborting");
                    std::process::abort();
                }
            })
            .expect("spawn watchdog thread");
        Self {
            cancel: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
/// For conditions that nothing can be blocked on (a value another process
/// writes without a wake-up); prefer the primitive's own blocking call.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(20);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Polling is the point of this helper; the pause bounds its rate.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// The workspace's `fuzz/` folder (its own cargo workspace).
pub fn fuzz_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Writes `seeds` (name, bytes) to `fuzz/corpus/<target>/seed-<name>`: the
/// tests that regenerate a target's seeds (ignored, run by hand; `cargo
/// fuzz cmin` renames what it keeps to content hashes).
///
/// # Panics
/// When the directory or a file cannot be written.
pub fn write_fuzz_seeds<N: std::fmt::Display, D: AsRef<[u8]>>(
    target: &str,
    seeds: impl IntoIterator<Item = (N, D)>,
) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, data) in seeds {
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Replays a fuzz target's corpus on stable, without a fuzzer: every input
/// of `fuzz/corpus/<target>/` (which must not be empty, so a missing corpus
/// fails instead of passing silently) and of `fuzz/regressions/<target>/`
/// (which may be missing) goes through `run`, the same library entry point
/// as the cargo-fuzz target. A panic fails with the input's path.
///
/// # Panics
/// When the corpus is empty or missing, or `run` panics on an input.
pub fn replay_fuzz_corpus(target: &str, run: fn(&[u8])) {
    let corpus_dir = fuzz_dir().join("corpus").join(target);
    let corpus = fuzz_inputs(&corpus_dir);
    assert!(
        !corpus.is_empty(),
        "no inputs in {}: the corpus of fuzz target `{target}` is missing",
        corpus_dir.display()
    );
    let regressions = fuzz_inputs(&fuzz_dir().join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        if ran.is_err() {
            panic!("fuzz target `{target}` panicked on {}", path.display());
        }
    }
}

/// The regular, non-hidden files of `dir`, sorted; none when it does not exist.
fn fuzz_inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// A generous timeout for a child or a blocking call in a test: long
/// enough for a loaded 2-core CI machine, short enough to fail a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable that runs the heavy tests at full size
/// (`SHMPROC_STRESS=1`; CI runs them so in a step of their own).
pub const ENV_STRESS: &str = "SHMPROC_STRESS";

/// `full` when [`ENV_STRESS`] is set to anything but `0`, else `smoke`: the
/// heavy tests (millions of messages, a 1 GiB message) scale down by default
/// so the README's test command stays quick on two cores. Child processes
/// inherit the variable, so a test and its children agree on the size.
pub fn stress_or<T>(full: T, smoke: T) -> T {
    match std::env::var_os(ENV_STRESS) {
        Some(v) if v != "0" => full,
        _ => smoke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_path_strips_crate_and_helper() {
        assert_eq!(test_path_of("my_crate::tests::t::here"), "tests::t");
        assert_eq!(test_path_of("it::t::here"), "t");
    }

    #[test]
    fn current_test_names_this_test() {
        assert_eq!(current_test!(), "tests::current_test_names_this_test");
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let a = TestShm::new();
        let b = TestShm::new();
        assert_ne!(a.prefix(), b.prefix());
        let n1 = a.name("x");
        let n2 = a.name("x");
        assert_ne!(n1, n2);
        assert!(n1.starts_with(TEST_PREFIX) && n1.starts_with(a.prefix()));
    }

    #[test]
    fn sweep_removes_and_reports_leftovers() {
        let shm = TestShm::new();
        let name = shm.name("leak");
        std::fs::write(Path::new("/dev/shm").join(&name), b"x").unwrap();
        assert_eq!(shm.leftovers(), vec![name.clone()]);
        assert_eq!(shm.sweep(), vec![name]);
        assert!(shm.leftovers().is_empty());
    }

    #[test]
    fn drop_fails_a_test_that_leaked() {
        let shm = TestShm::new();
        let name = shm.name("leak");
        std::fs::write(Path::new("/dev/shm").join(&name), b"x").unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shm)));
        assert!(
            r.is_err(),
            "dropping a TestShm with leftovers must fail the test"
        );
        assert!(!Path::new("/dev/shm").join(&name).exists());
    }

    #[test]
    fn reexec_child_runs_its_role_and_reports_its_exit_code() {
        if let Some(role) = role() {
            match role.as_str() {
                "ok" => assert_eq!(arg("k").as_deref(), Some("v")),
                "fail" => std::process::exit(7),
                other => panic!("unknown role {other}"),
            }
            return;
        }
        let ok = Child::spawn(current_test!(), "ok", &[("k", "v")]).unwrap();
        ok.expect_success(TIMEOUT);
        let fail = Child::spawn(current_test!(), "fail", &[]).unwrap();
        assert_eq!(fail.wait_timeout(TIMEOUT), ExitStatus::Exited(7));
    }

    #[test]
    fn killed_child_reports_the_signal() {
        if role().is_some() {
            // Block until killed (bounded, so a harness bug cannot hang CI).
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(TIMEOUT);
            return;
        }
        let mut c = Child::spawn(current_test!(), "sleeper", &[]).unwrap();
        c.kill();
        assert_eq!(c.wait_timeout(TIMEOUT), ExitStatus::Signaled(9));
    }

    #[test]
    #[allow(unsafe_code)] // `fork_child` is an unsafe fn.
    fn forked_child_exit_codes() {
        // SAFETY: the children only return a code; the panic goes
        // through the fork-safe hook `fork_child` installs, which takes no lock.
        let zero = unsafe { fork_child(|| 0) };
        // SAFETY: as above.
        let three = unsafe { fork_child(|| 3) };
        // SAFETY: as above.
        let boom = unsafe { fork_child(|| panic!("boom")) };
        assert_eq!(zero.wait_timeout(TIMEOUT), ExitStatus::Exited(0));
        assert_eq!(three.wait_timeout(TIMEOUT), ExitStatus::Exited(3));
        assert_eq!(boom.wait_timeout(TIMEOUT), ExitStatus::Exited(101));
    }

    #[test]
    fn wait_until_reports_both_outcomes() {
        assert!(wait_until(Duration::from_millis(50), || true));
        assert!(!wait_until(Duration::from_millis(5), || false));
    }
}
