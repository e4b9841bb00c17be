//! The lock cases of `sync_lock` and `sync_compare` (issue 3): our `Lock`
//! and `Value`, a process-shared pthread mutex (plain and robust),
//! `raw_sync`'s mutex and the atomic `fetch_add` floor, each protecting a
//! counter in shared memory; the uncontended pair and the two-process
//! contended run.
//!
//! Baselines call libc directly (pthread mutexes in a `MAP_SHARED` mmap).

#![allow(
    unsafe_code,
    reason = "baselines: pthread mutexes and raw_sync in a MAP_SHARED mmap, a non-atomic counter under each lock"
)]

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use raw_sync::locks::{LockImpl, LockInit, Mutex as RawSyncMutex};
use shmproc_shm::os::ExitStatus;
use shmproc_shm::sync::{AtomicU64, Ordering};
use shmproc_sync::{Lock, Value};

use crate::harness::{Child, SharedMap, StartLine, contended_cpus, now_ns, pin_to};

/// Offset of the lock in a baseline's map, and of the counter (its own line).
const LOCK_OFF: usize = 0;
const COUNTER_OFF: usize = 128;
const MAP_LEN: usize = 4096;

/// One way to protect a shared counter. `increment` adds one to a counter
/// in shared memory (a plain, non-atomic `u64` under a lock, except for the
/// atomic floor); `acquire_release` is the uncontended pair.
pub trait Case {
    /// The bench id (`<group>/<name>`) and the table label.
    fn name(&self) -> &'static str;
    /// Takes and releases the lock (for the floor: one `fetch_add`).
    fn acquire_release(&self);
    /// Adds one to the counter under the lock.
    fn increment(&self);
    /// The counter (called when no child runs).
    fn count(&self) -> u64;
    /// Sets the counter to zero (called when no child runs).
    fn reset(&self);
}

/// Something run once per case, with the concrete type (no dynamic dispatch in
/// the measured loops).
pub trait CaseVisitor {
    /// Runs on one case.
    fn visit<C: Case>(&mut self, case: &C);
}

/// Builds every case, in table order, and hands each to `v`.
pub fn each_case(v: &mut impl CaseVisitor) {
    v.visit(&AtomicFloor::new());
    v.visit(&Pthread::new(false));
    v.visit(&Pthread::new(true));
    v.visit(&RawSync::new());
    v.visit(&OursLock::new());
    v.visit(&OursValue::new());
}

/// The table label of each case, in `each_case` order.
pub mod names {
    /// The floor: `fetch_add` on a shared word, no lock.
    pub const ATOMIC: &str = "atomic_fetch_add";
    /// A process-shared pthread mutex.
    pub const PTHREAD: &str = "pthread_mutex";
    /// The same, robust.
    pub const PTHREAD_ROBUST: &str = "pthread_mutex_robust";
    /// `raw_sync`'s mutex.
    pub const RAW_SYNC: &str = "raw_sync_mutex";
    /// Our `Lock`.
    pub const OURS: &str = "shmproc_lock";
    /// Our `Value<u64>`.
    pub const OURS_VALUE: &str = "shmproc_value";
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
    #[inline]
    fn acquire_release(&self) {
        self.word().fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
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
    #[inline]
    fn acquire_release(&self) {
        self.lock();
        self.unlock();
    }
    #[inline]
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
    #[inline]
    fn acquire_release(&self) {
        drop(self.lock.lock().expect("raw_sync lock"));
    }
    #[inline]
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
    #[inline]
    fn acquire_release(&self) {
        drop(self.lock.lock().expect("no lock holder dies in the bench"));
    }
    #[inline]
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
    #[inline]
    fn acquire_release(&self) {
        drop(self.value.lock().expect("no lock holder dies in the bench"));
    }
    #[inline]
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
pub fn uncontended_ns<C: Case>(case: &C, ops: u64) -> f64 {
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
    start: StartLine,
    /// Each child's `now_ns()` when it finished.
    end_ns: [AtomicU64; 2],
}

/// Two forked processes each call `case.increment()` `per_proc` times, starting
/// together; returns the time from the start signal to the last one finishing.
/// Both children's CPU time (user + system, fork to exit) is then
/// [`last_run_cpu_ns`](crate::harness::last_run_cpu_ns).
///
/// # Panics
/// If the final count is not exactly `2 * per_proc`, a child fails, or a child
/// runs for more than two minutes (it is then killed and reaped).
pub fn run_contended<C: Case>(case: &C, per_proc: u64) -> Duration {
    let map = SharedMap::new(MAP_LEN);
    // SAFETY: `at` checked bounds and alignment; the zero-filled bytes are a valid
    // `Control` of atomics, and `map` outlives every use (children are reaped below).
    let ctl: &Control = unsafe { &*map.at::<Control>(0) };
    let cpus = contended_cpus();
    let cpu0 = crate::harness::children_cpu_ns();
    let spawn = |i: usize| {
        Child::fork(|| {
            if let Some(cpus) = cpus {
                if !pin_to(cpus[i]) {
                    return 4;
                }
            }
            case.acquire_release(); // warm: caches pid and start time after the fork
            if !ctl.start.wait_go() {
                return 2;
            }
            for _ in 0..per_proc {
                case.increment();
            }
            ctl.end_ns[i].store(now_ns(), Ordering::Relaxed);
            0
        })
    };
    let children = [spawn(0), spawn(1)];
    ctl.start.wait_ready(2, Duration::from_secs(30));
    // After the children's warm-up pair (which bumps the atomic floor's counter);
    // published to them by the Release store of `go`.
    case.reset();
    let t0 = ctl.start.go();
    for ch in children {
        let status = ch.wait(Duration::from_secs(120));
        assert_eq!(
            status,
            ExitStatus::Exited(0),
            "{} child failed",
            case.name()
        );
    }
    crate::harness::set_last_run_cpu(cpu0);
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
