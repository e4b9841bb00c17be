//! What `sync_lock` and `sync_compare` share: the cases (our `Lock` and
//! `Value`, the baselines), the two-process contended run, and Python's
//! `multiprocessing.Value` run.
//!
//! Baselines call libc directly (pthread mutexes, `mmap`, `clock_gettime`);
//! fork, wait, kill and futex calls go through `shmproc_shm::os`.

#![allow(
    unsafe_code,
    reason = "baselines: pthread mutexes and raw_sync in a MAP_SHARED mmap, a non-atomic counter under each lock, fork"
)]

use std::hint::black_box;
use std::io::Read as _;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use raw_sync::locks::{LockImpl, LockInit, Mutex as RawSyncMutex};
use shmproc_shm::os::{self, ExitStatus, Forked, Pid};
use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};
use shmproc_sync::{Lock, Value};

/// Whether this is a real measurement (`cargo bench` passes `--bench`) rather
/// than the smoke run of `cargo test --benches` (criterion's test mode).
pub(crate) fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Iteration counts: the figures for a real run, small ones for the
/// smoke run so that `cargo test --benches` takes seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Increments per process in the contended case.
    pub(crate) contended_per_proc: u64,
    /// Increments per process in the Python case.
    pub(crate) python_per_proc: u64,
    /// Acquire+release pairs per uncontended measurement (sync_compare).
    pub(crate) uncontended_ops: u64,
    /// Repetitions (medians are taken over these) in sync_compare.
    pub(crate) reps: usize,
}

impl Sizes {
    pub(crate) fn for_this_run() -> Self {
        if full_run() {
            Self {
                contended_per_proc: 1_000_000,
                python_per_proc: 200_000,
                uncontended_ops: 2_000_000,
                reps: 11,
            }
        } else {
            Self {
                contended_per_proc: 10_000,
                python_per_proc: 2_000,
                uncontended_ops: 10_000,
                reps: 1,
            }
        }
    }
}

// ---- shared anonymous memory ----------------------------------------------------

/// A `MAP_SHARED | MAP_ANONYMOUS` mapping: zero-filled, shared with children
/// forked after it was made.
pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    pub(crate) fn new(len: usize) -> Self {
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
    pub(crate) fn at<T>(&self, off: usize) -> *mut T {
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

/// Pins the calling thread (the whole process when it has one thread) to
/// `cpu` (`sched_setaffinity`).
pub(crate) fn pin_to(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is valid (empty).
    let mut set: libc::cpu_set_t = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is an initialised cpu_set_t of exactly the size passed.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    r == 0
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

// ---- the cases --------------------------------------------------------------------

/// Offset of the lock in a baseline's map, and of the counter (its own line).
const LOCK_OFF: usize = 0;
const COUNTER_OFF: usize = 128;
const MAP_LEN: usize = 4096;

/// One way to protect a shared counter. `increment` adds one to a counter
/// in shared memory (a plain, non-atomic `u64` under a lock, except for the
/// atomic floor); `acquire_release` is the uncontended pair.
pub(crate) trait Case {
    /// The bench id (`<group>/<name>`) and the table label.
    fn name(&self) -> &'static str;
    fn acquire_release(&self);
    fn increment(&self);
    fn count(&self) -> u64;
    fn reset(&self);
}

/// Something run once per case, with the concrete type (no dynamic dispatch in
/// the measured loops).
pub(crate) trait CaseVisitor {
    fn visit<C: Case>(&mut self, case: &C);
}

/// Builds every case, in table order, and hands each to `v`.
pub(crate) fn each_case(v: &mut impl CaseVisitor) {
    v.visit(&AtomicFloor::new());
    v.visit(&Pthread::new(false));
    v.visit(&Pthread::new(true));
    v.visit(&RawSync::new());
    v.visit(&OursLock::new());
    v.visit(&OursValue::new());
}

/// The table label of each case, in `each_case` order.
pub(crate) mod names {
    pub(crate) const ATOMIC: &str = "atomic_fetch_add";
    pub(crate) const PTHREAD: &str = "pthread_mutex";
    pub(crate) const PTHREAD_ROBUST: &str = "pthread_mutex_robust";
    pub(crate) const RAW_SYNC: &str = "raw_sync_mutex";
    pub(crate) const OURS: &str = "shmproc_lock";
    pub(crate) const OURS_VALUE: &str = "shmproc_value";
}

/// The floor: `fetch_add` on a shared word, no lock.
struct AtomicFloor {
    map: SharedMap,
}

impl AtomicFloor {
    fn new() -> Self {
        Self {
            map: SharedMap::new(MAP_LEN),
        }
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: `at` checked bounds and alignment; the zero-filled word is a valid
        // AtomicU64 and lives as long as `self.map`, which `&self` borrows.
        unsafe { &*self.map.at::<AtomicU64>(COUNTER_OFF) }
    }
}

impl Case for AtomicFloor {
    fn name(&self) -> &'static str {
        names::ATOMIC
    }
    fn acquire_release(&self) {
        self.word().fetch_add(1, Ordering::Relaxed);
    }
    fn increment(&self) {
        self.word().fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.word().load(Ordering::Relaxed)
    }
    fn reset(&self) {
        self.word().store(0, Ordering::Relaxed);
    }
}

/// A process-shared pthread mutex (optionally robust) and a plain counter in a
/// `MAP_SHARED` mapping.
struct Pthread {
    map: SharedMap,
    robust: bool,
}

impl Pthread {
    fn new(robust: bool) -> Self {
        let map = SharedMap::new(MAP_LEN);
        let m = map.at::<libc::pthread_mutex_t>(LOCK_OFF);
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable storage for a mutexattr, initialised by this call.
        let r = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        assert_eq!(r, 0, "pthread_mutexattr_init");
        // SAFETY: `attr` was initialised just above.
        let r = unsafe {
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED)
        };
        assert_eq!(r, 0, "pthread_mutexattr_setpshared");
        if robust {
            // SAFETY: `attr` was initialised above.
            let r = unsafe {
                libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)
            };
            assert_eq!(r, 0, "pthread_mutexattr_setrobust");
        }
        // SAFETY: `m` points to writable, aligned storage inside the mapping that
        // nothing else uses yet; `attr` is initialised.
        let r = unsafe { libc::pthread_mutex_init(m, attr.as_ptr()) };
        assert_eq!(r, 0, "pthread_mutex_init");
        // SAFETY: `attr` is initialised and no longer needed (the mutex copied it).
        unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
        Self { map, robust }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.map.at(LOCK_OFF)
    }

    fn counter(&self) -> *mut u64 {
        self.map.at(COUNTER_OFF)
    }

    #[inline]
    fn lock(&self) {
        // SAFETY: the mutex was initialised in `new` and lives in `self.map`.
        let r = unsafe { libc::pthread_mutex_lock(self.mutex()) };
        // EOWNERDEAD cannot happen: no holder is ever killed in these benches.
        assert_eq!(r, 0, "pthread_mutex_lock");
    }

    #[inline]
    fn unlock(&self) {
        // SAFETY: the mutex was initialised in `new` and is held by this process.
        let r = unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        assert_eq!(r, 0, "pthread_mutex_unlock");
    }
}

impl Drop for Pthread {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and unlocked (every lock is paired with an
        // unlock, and the children that used it have exited).
        unsafe { libc::pthread_mutex_destroy(self.mutex()) };
    }
}

impl Case for Pthread {
    fn name(&self) -> &'static str {
        if self.robust {
            names::PTHREAD_ROBUST
        } else {
            names::PTHREAD
        }
    }
    fn acquire_release(&self) {
        self.lock();
        self.unlock();
    }
    fn increment(&self) {
        self.lock();
        // SAFETY: the mutex is held, so no other process touches the counter.
        unsafe { *self.counter() += 1 };
        self.unlock();
    }
    fn count(&self) -> u64 {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().read() }
    }
    fn reset(&self) {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().write(0) };
    }
}

/// `raw_sync`'s mutex (a process-shared pthread mutex behind a `Box<dyn LockImpl>`).
struct RawSync {
    // Declared before `map`: dropped (it does not unmap anything) while the map lives.
    lock: Box<dyn LockImpl>,
    map: SharedMap,
}

impl RawSync {
    fn new() -> Self {
        let map = SharedMap::new(MAP_LEN);
        let mem = map.at::<u8>(LOCK_OFF);
        assert!(
            RawSyncMutex::size_of(Some(mem)) <= COUNTER_OFF,
            "raw_sync mutex fits before the counter"
        );
        let data = map.at::<u8>(COUNTER_OFF);
        // SAFETY: `mem` points to `size_of` writable bytes of the mapping that
        // nothing else uses, and `data` to the counter; both live as long as `map`,
        // which this struct keeps alive longer than `lock`.
        let (lock, _) = unsafe { RawSyncMutex::new(mem, data) }.expect("raw_sync Mutex::new");
        Self { lock, map }
    }

    fn counter(&self) -> *mut u64 {
        self.map.at(COUNTER_OFF)
    }
}

impl Case for RawSync {
    fn name(&self) -> &'static str {
        names::RAW_SYNC
    }
    fn acquire_release(&self) {
        drop(self.lock.lock().expect("raw_sync lock"));
    }
    fn increment(&self) {
        let guard = self.lock.lock().expect("raw_sync lock");
        // The guard's data pointer is the counter (given to `Mutex::new`).
        debug_assert_eq!((*guard).addr(), self.counter().addr());
        // SAFETY: the guard holds the mutex, so no other process touches the counter.
        unsafe { *self.counter() += 1 };
        drop(guard);
    }
    fn count(&self) -> u64 {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().read() }
    }
    fn reset(&self) {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().write(0) };
    }
}

/// Our `Lock` (its own anonymous segment) and a plain counter in a shared map.
struct OursLock {
    lock: Lock,
    map: SharedMap,
}

impl OursLock {
    fn new() -> Self {
        Self {
            lock: Lock::new().expect("Lock::new"),
            map: SharedMap::new(MAP_LEN),
        }
    }

    fn counter(&self) -> *mut u64 {
        self.map.at(COUNTER_OFF)
    }
}

impl Case for OursLock {
    fn name(&self) -> &'static str {
        names::OURS
    }
    fn acquire_release(&self) {
        drop(self.lock.lock().expect("no lock holder dies in the bench"));
    }
    fn increment(&self) {
        let guard = self.lock.lock().expect("no lock holder dies in the bench");
        // SAFETY: the guard holds the lock, so no other process touches the counter.
        unsafe { *self.counter() += 1 };
        drop(guard);
    }
    fn count(&self) -> u64 {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().read() }
    }
    fn reset(&self) {
        // SAFETY: called when no child runs; in bounds and aligned (`at`).
        unsafe { self.counter().write(0) };
    }
}

/// Our `Value<u64>`: lock and value in one segment, Python's `Value('q')`.
struct OursValue {
    value: Value<u64>,
}

impl OursValue {
    fn new() -> Self {
        Self {
            value: Value::new(0).expect("Value::new"),
        }
    }
}

impl Case for OursValue {
    fn name(&self) -> &'static str {
        names::OURS_VALUE
    }
    fn acquire_release(&self) {
        drop(self.value.lock().expect("no lock holder dies in the bench"));
    }
    fn increment(&self) {
        *self.value.lock().expect("no lock holder dies in the bench") += 1;
    }
    fn count(&self) -> u64 {
        self.value.load().expect("no lock holder dies in the bench")
    }
    fn reset(&self) {
        self.value
            .store(0)
            .expect("no lock holder dies in the bench");
    }
}

// ---- runners ----------------------------------------------------------------------

/// Mean ns per uncontended acquire+release over `ops` pairs.
pub(crate) fn uncontended_ns<C: Case>(case: &C, ops: u64) -> f64 {
    for _ in 0..ops.min(10_000) {
        black_box(case).acquire_release();
    }
    let t = Instant::now();
    for _ in 0..ops {
        black_box(case).acquire_release();
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// Start line and finish times of a contended run, in a shared map.
#[repr(C)]
struct Control {
    /// 0 until the parent starts the run.
    go: AtomicU32,
    /// Children ready to start.
    ready: AtomicU32,
    /// Each child's `now_ns()` when it finished.
    end_ns: [AtomicU64; 2],
}

/// Two forked processes each call `case.increment()` `per_proc` times, starting
/// together; returns the time from the start signal to the last one finishing.
///
/// # Panics
/// If the final count is not exactly `2 * per_proc`, a child fails, or a child
/// runs for more than two minutes (it is then killed and reaped).
pub(crate) fn run_contended<C: Case>(case: &C, per_proc: u64) -> Duration {
    let map = SharedMap::new(MAP_LEN);
    // SAFETY: `at` checked bounds and alignment; the zero-filled bytes are a valid
    // `Control` of atomics, and `map` outlives every use (children are reaped below).
    let ctl: &Control = unsafe { &*map.at::<Control>(0) };
    let cpus = contended_cpus();
    let spawn = |i: usize| {
        Child::fork(|| {
            if let Some(cpus) = cpus {
                if !pin_to(cpus[i]) {
                    return 4;
                }
            }
            case.acquire_release(); // warm: caches pid and start time after the fork
            ctl.ready.fetch_add(1, Ordering::Release);
            os::futex_wake(&ctl.ready, 1);
            let give_up = Instant::now() + Duration::from_secs(60);
            // Acquire: pairs with the parent's Release store of `go`.
            while ctl.go.load(Ordering::Acquire) == 0 {
                if Instant::now() > give_up {
                    return 2;
                }
                os::futex_wait(&ctl.go, 0, Some(Duration::from_millis(100)));
            }
            for _ in 0..per_proc {
                case.increment();
            }
            ctl.end_ns[i].store(now_ns(), Ordering::Relaxed);
            0
        })
    };
    let children = [spawn(0), spawn(1)];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Acquire: pairs with the children's Release increments of `ready`.
        let r = ctl.ready.load(Ordering::Acquire);
        if r == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "children did not get ready");
        os::futex_wait(&ctl.ready, r, Some(Duration::from_millis(100)));
    }
    // After the children's warm-up pair (which bumps the atomic floor's counter);
    // published to them by the Release store of `go`.
    case.reset();
    let t0 = now_ns();
    // Release: pairs with the children's Acquire load of `go`.
    ctl.go.store(1, Ordering::Release);
    os::futex_wake(&ctl.go, u32::MAX);
    for ch in children {
        let status = ch.wait(Duration::from_secs(120));
        assert_eq!(
            status,
            ExitStatus::Exited(0),
            "{} child failed",
            case.name()
        );
    }
    let count = case.count();
    assert_eq!(
        count,
        2 * per_proc,
        "{}: lost increments (mutual exclusion broken)",
        case.name()
    );
    let end = ctl
        .end_ns
        .iter()
        .map(|e| e.load(Ordering::Relaxed))
        .max()
        .unwrap_or(t0);
    Duration::from_nanos(end.saturating_sub(t0))
}

// ---- Python -----------------------------------------------------------------------

/// Runs `python/value_lock.py` (two processes incrementing a
/// `multiprocessing.Value` under `get_lock()`), returning increments/s, or why
/// it could not run (python3 missing, script failed).
pub(crate) fn python_value_lock(per_proc: u64) -> Result<f64, String> {
    let pin = if contended_cpus().is_some() {
        "pin"
    } else {
        "nopin"
    };
    let out = run_python("value_lock.py", &[&per_proc.to_string(), pin])?;
    json_number(&out, "incr_per_s")
        .ok_or_else(|| format!("no incr_per_s in python output: {out:?}"))
}

/// Runs `python3 python/<script> <args>` with a deadline of 120 s (killed and
/// reaped after that), returning its stdout, or why it could not run
/// (python3 missing, script failed, deadline passed).
pub(crate) fn run_python(script: &str, args: &[&str]) -> Result<String, String> {
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = match Command::new("python3")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 not found on PATH: Python case skipped".to_owned());
        }
        Err(e) => return Err(format!("could not start python3: {e}")),
    };
    // Drained while it runs: a full pipe would stall the script.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("python3 ran for more than 120 s: killed".to_owned());
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "polling a subprocess with a deadline"
        )]
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "python3 {script} failed ({status}): {}",
            err.trim()
        ));
    }
    Ok(out)
}

/// The number after `"key":` in a flat JSON object.
pub(crate) fn json_number(json: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

// ---- medians, paired ratios and verdicts (every comparison bench) --------------------

/// The median of `v` (NaN when empty).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median over rounds of `a[r] / b[r]`: each ratio pairs two cases
/// measured in the same round, under the same background load.
pub(crate) fn paired(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&ratios)
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

pub(crate) fn size_label(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{}MiB", size >> 20)
    } else if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}
