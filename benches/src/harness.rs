//! What every bench runs on: shared anonymous memory, the clock, CPU
//! pinning, forked workers (and threads, for the in-process baselines), the
//! start line that releases a run's workers together, and the statistics
//! (medians, quantiles) of the samples.
//!
//! Baselines call libc directly (`mmap`, `clock_gettime`, `sched_*affinity`);
//! fork, wait, kill and futex calls go through `shmproc_shm::os`.

#![allow(
    unsafe_code,
    reason = "a MAP_SHARED mmap handing out raw pointers, clock_gettime, sched_*affinity, fork"
)]

use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use shmproc_shm::os::{self, ExitStatus, Forked, Pid};
use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};

// ---- shared anonymous memory ----------------------------------------------------

/// A `MAP_SHARED | MAP_ANONYMOUS` mapping: zero-filled, shared with children
/// forked after it was made.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    /// Maps `len` zero-filled bytes.
    ///
    /// # Panics
    /// If `mmap` fails.
    pub fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing;
        // it aliases nothing, and the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            p != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let ptr = NonNull::new(p.cast::<u8>()).expect("mmap never returns null on success");
        Self { ptr, len }
    }

    /// A pointer to a `T` at byte offset `off` (checked in bounds and aligned).
    ///
    /// # Panics
    /// If a `T` at `off` would not lie inside the mapping, or be misaligned.
    #[inline]
    pub fn at<T>(&self, off: usize) -> *mut T {
        assert!(
            off + size_of::<T>() <= self.len,
            "offset {off} out of the mapping"
        );
        // `off` is in bounds (asserted): the result stays inside the mapping.
        let p = self.ptr.as_ptr().wrapping_add(off);
        assert!(
            p.align_offset(align_of::<T>()) == 0,
            "offset {off} misaligned"
        );
        #[allow(clippy::cast_ptr_alignment, reason = "alignment asserted just above")]
        let typed = p.cast::<T>();
        typed
    }

    /// A slice of `n` atomics at offset `off`, zero until something stores
    /// into them.
    #[inline]
    pub(crate) fn atomics(&self, off: usize, n: usize) -> &[AtomicU64] {
        let first = self.at::<AtomicU64>(off);
        // Bounds and alignment of the first element are checked by `at`; the last:
        let _ = self.at::<AtomicU64>(off + (n.max(1) - 1) * size_of::<AtomicU64>());
        // SAFETY: `n` zero-filled (valid) AtomicU64s lie in bounds from `first`
        // (first and last checked above), and they live as long as the map, which
        // the returned slice borrows.
        unsafe { std::slice::from_raw_parts(first, n) }
    }
}

// SAFETY: the mapping is plain shared memory, valid until drop; the handle only
// hands out raw pointers (what is done through them is each caller's to justify),
// so it may move to and be borrowed from other threads.
unsafe impl Send for SharedMap {}
// SAFETY: as above; `&SharedMap` only reads the pointer and length.
unsafe impl Sync for SharedMap {}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; every pointer handed out
        // by `at` is tied (by the cases that own this map) to the map's lifetime.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes (unlike `Instant`).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_MONOTONIC)");
    let secs = u64::try_from(ts.tv_sec).expect("monotonic clock is positive");
    let nanos = u64::try_from(ts.tv_nsec).expect("tv_nsec is in 0..1e9");
    secs * 1_000_000_000 + nanos
}

// ---- CPU pinning -------------------------------------------------------------------

/// The CPUs this process may run on (`sched_getaffinity`), ascending.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is valid (empty).
    let mut set: libc::cpu_set_t = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `set` is a writable cpu_set_t of exactly the size passed.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: `c` is below CPU_SETSIZE, the number of bits in `set`.
    (0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// The CPUs the two contending processes are pinned to, one each, when at
/// least two are available: a contended run then always measures two CPUs
/// handing the lock back and forth, never two processes time-slicing one CPU
/// (which looks uncontended, and faster).
pub(crate) fn contended_cpus() -> Option<[usize; 2]> {
    match allowed_cpus()[..] {
        [a, b, ..] => Some([a, b]),
        _ => None,
    }
}

/// Where the two processes of a run go, for the banners:
/// `pinned to CPUs a and b`, or `not pinned (one CPU)`.
pub fn pinning() -> String {
    contended_cpus().map_or("not pinned (one CPU)".to_owned(), |[a, b]| {
        format!("pinned to CPUs {a} and {b}")
    })
}

/// Pins the calling thread (the whole process when it has one thread) to
/// `cpu` (`sched_setaffinity`); false if that failed.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is valid (empty).
    let mut set: libc::cpu_set_t = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is an initialised cpu_set_t of exactly the size passed.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    r == 0
}

/// The CPU for worker `i` of a run: `order[i]` (cycled) over the allowed
/// CPUs, or none on a one-CPU machine.
pub(crate) fn cpu_for(order: &[usize], i: usize) -> Option<usize> {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return None;
    }
    Some(cpus[order[i % order.len()] % cpus.len()])
}

// ---- forked children ----------------------------------------------------------------

/// A forked child; killed (SIGKILL) and reaped on drop if not waited for.
pub(crate) struct Child {
    pid: Pid,
    reaped: bool,
}

impl Child {
    /// Forks a child that runs `f` and leaves with its return value through
    /// `_exit` (101 if it panics). The child dies with this process.
    pub(crate) fn fork(f: impl FnOnce() -> i32) -> Self {
        let parent = os::getpid();
        // SAFETY: the child only runs `f` (atomics, lock calls, futex and clock
        // syscalls; glibc keeps malloc usable after fork) and then leaves through
        // `exit_now`, never returning into the parent's code.
        match unsafe { os::fork() }.expect("fork") {
            Forked::Child => {
                let code = catch_unwind(AssertUnwindSafe(|| {
                    if !os::set_parent_death_signal(libc::SIGKILL, parent).unwrap_or(false) {
                        return 3;
                    }
                    f()
                }));
                os::exit_now(code.unwrap_or(101))
            }
            Forked::Parent(pid) => Self { pid, reaped: false },
        }
    }

    /// Reaps a child that has already said it is finished (it is leaving
    /// through `_exit`): a blocking `waitpid`, no polling interval.
    pub(crate) fn join_finished(mut self) -> ExitStatus {
        let status = os::wait(self.pid).expect("waitpid");
        self.reaped = true;
        status
    }

    /// Waits for the child, at most `timeout`; kills it and panics after that.
    pub(crate) fn wait(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = os::try_wait(self.pid).expect("waitpid") {
                self.reaped = true;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child {} still running after {timeout:?}: killed",
                self.pid
            );
            // The parent only polls here; the children's own clocks time the run.
            #[expect(
                clippy::disallowed_methods,
                reason = "polling waitpid(WNOHANG) with a deadline"
            )]
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = os::kill(self.pid, libc::SIGKILL);
            let _ = os::wait(self.pid);
        }
    }
}

/// Forks `n` workers (worker `i` pinned by `cpu(i)`, running `work(i)`),
/// runs `start` in this process, and reaps them all; a worker that fails or
/// outlives `deadline` fails the run (all of them are then killed and reaped).
pub(crate) fn run_procs(
    n: usize,
    cpu: impl Fn(usize) -> Option<usize>,
    work: impl Fn(usize) -> i32,
    start: impl FnOnce(),
    deadline: Duration,
) {
    let cpu0 = children_cpu_ns();
    let children: Vec<Child> = (0..n)
        .map(|i| {
            let c = cpu(i);
            let work = &work;
            Child::fork(move || {
                if let Some(c) = c {
                    if !pin_to(c) {
                        return 4;
                    }
                }
                work(i)
            })
        })
        .collect();
    start();
    let until = Instant::now() + deadline;
    for ch in children {
        let status = ch.wait(until.saturating_duration_since(Instant::now()));
        assert_eq!(status, ExitStatus::Exited(0), "a worker failed");
    }
    LAST_RUN_CPU_NS.store(
        children_cpu_ns().saturating_sub(cpu0),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// CPU time (user + system) of the workers of the last [`run_procs`], all
/// of them together, in nanoseconds: the reaped children's `getrusage`,
/// from their fork to their exit (set-up and warm-up included, which the
/// runs keep short next to their timed part).
static LAST_RUN_CPU_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The CPU time of the last forked run's workers (see `LAST_RUN_CPU_NS`):
/// divide by its messages for the CPU each message cost, waiting included.
pub fn last_run_cpu_ns() -> u64 {
    LAST_RUN_CPU_NS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets [`last_run_cpu_ns`] for a run of forked workers that began when
/// [`children_cpu_ns`] read `cpu0` and whose workers are all reaped.
pub(crate) fn set_last_run_cpu(cpu0: u64) {
    LAST_RUN_CPU_NS.store(
        children_cpu_ns().saturating_sub(cpu0),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// User + system CPU time of this process's reaped children, in ns.
pub(crate) fn children_cpu_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a writable rusage; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: zero-initialised, then filled by a successful getrusage.
    let ru = unsafe { ru.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// `run_procs` with threads of this process instead of forked processes.
pub(crate) fn run_threads(
    n: usize,
    cpu: impl Fn(usize) -> Option<usize>,
    work: impl Fn(usize) -> i32 + Sync,
    start: impl FnOnce(),
) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let c = cpu(i);
                let work = &work;
                s.spawn(move || {
                    if let Some(c) = c {
                        assert!(pin_to(c), "pin thread to CPU {c}");
                    }
                    work(i)
                })
            })
            .collect();
        start();
        for h in handles {
            assert_eq!(
                h.join().expect("worker thread panicked"),
                0,
                "a worker failed"
            );
        }
    });
}

// ---- the start line -----------------------------------------------------------------

/// The start line of a run, in shared memory (zero-filled is the initial
/// state): each worker checks in and waits; the parent waits until all have
/// checked in, then releases them together and notes the start time.
#[repr(C)]
pub(crate) struct StartLine {
    /// 0 until the parent starts the run.
    go: AtomicU32,
    /// Workers ready to start.
    ready: AtomicU32,
}

impl StartLine {
    /// A worker checks in and waits for the start; false when none came
    /// within 60 s.
    pub(crate) fn wait_go(&self) -> bool {
        self.ready.fetch_add(1, Ordering::Release);
        os::futex_wake(&self.ready, 1);
        let give_up = Instant::now() + Duration::from_secs(60);
        // Acquire: pairs with the Release store of `go` in `go`.
        while self.go.load(Ordering::Acquire) == 0 {
            if Instant::now() > give_up {
                return false;
            }
            os::futex_wait(&self.go, 0, Some(Duration::from_millis(100)));
        }
        true
    }

    /// The parent waits until `workers` have checked in.
    ///
    /// # Panics
    /// When they have not within `within`.
    pub(crate) fn wait_ready(&self, workers: u32, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            // Acquire: pairs with the workers' Release increments of `ready`.
            let r = self.ready.load(Ordering::Acquire);
            if r == workers {
                break;
            }
            assert!(Instant::now() < deadline, "workers did not get ready");
            os::futex_wait(&self.ready, r, Some(Duration::from_millis(100)));
        }
    }

    /// The parent releases the workers; returns the start time (`now_ns`).
    pub(crate) fn go(&self) -> u64 {
        let t0 = now_ns();
        // Release: pairs with the workers' Acquire load of `go`.
        self.go.store(1, Ordering::Release);
        os::futex_wake(&self.go, u32::MAX);
        t0
    }
}

// ---- statistics ---------------------------------------------------------------------

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The nearest-rank `p` quantile (0..=1) of `v` (NaN when empty).
pub(crate) fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p * v.len() as f64) as usize).min(v.len() - 1);
    v[i]
}

/// A message size as the bench ids and tables write it: `8B`, `64KiB`, `1MiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{}MiB", size >> 20)
    } else if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}
