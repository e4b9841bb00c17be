//! The pool comparison (`pool_compare`, issue 16): its tasks, and the
//! baselines that need no pool crate: the ideal static split over forked
//! processes, raw process starts, and the timing of idle round trips.
//! The contestants that use `shmproc-pool`, rayon or procspawn (dev
//! dependencies) are in the bench's `main`.
//!
//! - [`is_prime`]: trial division, `u64 -> u8` (1 for a prime), the task of
//!   the CPU-bound row; Python's `python/pool.py` has the same one.
//! - [`axpy_slice`]: `y = A*x + B` over `f32`s, the memory-bound row.
//! - [`static_split`]: `WORKERS` forked processes, each given one
//!   contiguous `len / WORKERS` of the input and writing into a shared output
//!   array, started inside the timing or waiting at a start line before it.
//! - [`fork_exit_wait`]: `fork` + `_exit` + `waitpid` of `n` processes.
//! - [`round_trips`]: p50/p99 of a round trip, each after an untimed pause
//!   so the other side sleeps.

#![allow(
    unsafe_code,
    reason = "the static split: forked children writing disjoint ranges of a MAP_SHARED mmap; raw fork+_exit"
)]

use std::ops::Range;
use std::time::{Duration, Instant};

use shmproc_shm::os::{self, ExitStatus, Forked};
use shmproc_shm::sync::{AtomicU32, Ordering};

use crate::harness::{Child, SharedMap, StartLine, cpu_for, now_ns, pin_to, quantile};
use crate::pingpong::pause;

/// Worker processes (threads, for rayon) of every parallel contestant.
pub const WORKERS: usize = 2;

/// 1 when `n` is prime, else 0: trial division by 2, then by the odd numbers
/// up to the square root (Python's `python/pool.py` runs the same loop).
pub fn is_prime(n: u64) -> u8 {
    if n < 2 {
        return 0;
    }
    if n % 2 == 0 {
        return u8::from(n == 2);
    }
    let mut i = 3;
    while i * i <= n {
        if n % i == 0 {
            return 0;
        }
        i += 2;
    }
    1
}

/// The memory-bound kernel's factor.
pub const AXPY_A: f32 = 1.5;
/// The memory-bound kernel's offset.
pub const AXPY_B: f32 = 0.25;

/// `y[i] = AXPY_A * x[i] + AXPY_B` (the shorter length of the two).
pub fn axpy_slice(x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = AXPY_A * *x + AXPY_B;
    }
}

/// `x`, unchanged: the task of the per-task overhead rows.
pub fn identity(x: u64) -> u64 {
    x
}

/// Busy-waits `ns` nanoseconds (untimed pauses between round trips).
pub fn pause_ns(ns: u64) {
    pause(ns);
}

/// Worker `i`'s contiguous part of `len` items.
fn part(len: usize, i: usize) -> Range<usize> {
    i * len / WORKERS..(i + 1) * len / WORKERS
}

/// Waits until `word` reaches `n`, in bounded futex waits.
///
/// # Panics
/// When it has not within `within`.
fn wait_count(word: &AtomicU32, n: u32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        // Acquire: pairs with the children's Release increments, so their
        // writes to the output are visible once the count is seen.
        let v = word.load(Ordering::Acquire);
        if v >= n {
            return;
        }
        assert!(Instant::now() < deadline, "static split: workers too slow");
        os::futex_wait(word, v, Some(Duration::from_millis(100)));
    }
}

/// Byte offset of the finished-workers counter in the static split's map
/// (the start line is at 0).
const DONE_OFF: usize = 64;
/// Byte offset of the output array.
const OUT_OFF: usize = 128;

/// The ideal static split: `WORKERS` forked processes, pinned one per CPU,
/// worker `i` running `f` over its contiguous part of `input` (read through
/// the fork's copy-on-write view, no copy) into a shared output array; the
/// results are then copied into `out`. Returns the time from the start to the
/// copy's end:
/// - `prestarted == false`: the forks are timed, and the time ends after
///   both workers are reaped (`waitpid`);
/// - `prestarted == true`: the workers are forked and waiting at a start
///   line first (untimed); the time runs from their release until both
///   have finished (reaped afterwards, untimed).
///
/// # Panics
/// When `out` is not as long as `input`, a worker fails or takes more
/// than 120 s.
pub fn static_split(input: &[u64], out: &mut [u8], f: fn(u64) -> u8, prestarted: bool) -> Duration {
    assert_eq!(input.len(), out.len(), "one output per input");
    let len = input.len();
    let map = SharedMap::new(OUT_OFF + len.max(1));
    // SAFETY: `at` checked bounds and alignment; the zero-filled bytes are the
    // start line's initial state (its docs) and live as long as `map`.
    let line = unsafe { &*map.at::<StartLine>(0) };
    // SAFETY: as above; a zero-filled AtomicU32 is valid.
    let done = unsafe { &*map.at::<AtomicU32>(DONE_OFF) };
    let base = map.at::<u8>(OUT_OFF);
    let cpus: Vec<Option<usize>> = (0..WORKERS).map(|i| cpu_for(&[0, 1], i)).collect();
    let t0 = Instant::now();
    let children: Vec<Child> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| {
            Child::fork(move || {
                if let Some(c) = cpu {
                    if !pin_to(c) {
                        return 4;
                    }
                }
                if prestarted && !line.wait_go() {
                    return 5;
                }
                let r = part(len, i);
                // SAFETY: `r` lies in `0..len` and the map holds `len` bytes from
                // `base` (made with `OUT_OFF + len`); the workers' parts are
                // disjoint and the parent reads them only after `done` counts
                // this worker, so nothing else accesses these bytes meanwhile.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(base.wrapping_add(r.start), r.len()) };
                for (d, &x) in dst.iter_mut().zip(&input[r]) {
                    *d = f(x);
                }
                // Release: publishes the writes above to the parent's Acquire load.
                done.fetch_add(1, Ordering::Release);
                os::futex_wake(done, 1);
                0
            })
        })
        .collect();
    let t0 = if prestarted {
        line.wait_ready(WORKERS as u32, Duration::from_secs(60));
        let _ = line.go();
        Instant::now()
    } else {
        t0
    };
    wait_count(done, WORKERS as u32, Duration::from_secs(120));
    let mut children = children;
    if !prestarted {
        for c in children.drain(..) {
            assert_eq!(c.join_finished(), ExitStatus::Exited(0), "a worker failed");
        }
    }
    // SAFETY: `len` bytes from `base` lie in the map (above); every worker has
    // finished writing (counted in `done`, Acquire), so nobody writes them now.
    let shared = unsafe { std::slice::from_raw_parts(base, len) };
    out.copy_from_slice(shared);
    let elapsed = t0.elapsed();
    for c in children {
        assert_eq!(
            c.wait(Duration::from_secs(10)),
            ExitStatus::Exited(0),
            "a worker failed"
        );
    }
    elapsed
}

/// Forks `n` processes that leave at once through `_exit(0)`, and reaps
/// them (`waitpid`); returns the time from the first fork to the last reap.
///
/// # Panics
/// When a fork or wait fails, or a child exits otherwise.
pub fn fork_exit_wait(n: usize) -> Duration {
    let mut pids = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        // SAFETY: the child only calls `_exit` (`exit_now`), async-signal-safe.
        match unsafe { os::fork() }.expect("fork") {
            Forked::Child => os::exit_now(0),
            Forked::Parent(pid) => pids.push(pid),
        }
    }
    for pid in pids {
        assert_eq!(os::wait(pid).expect("waitpid"), ExitStatus::Exited(0));
    }
    t0.elapsed()
}

/// Round-trip times of `call`, microseconds: `warm` untimed calls, then `n`
/// timed ones, each after an untimed busy pause of `gap_ns` (so the other
/// side is asleep when the call comes). Returns (p50, p99).
pub fn round_trips(n: u64, warm: u64, gap_ns: u64, mut call: impl FnMut(u64)) -> (f64, f64) {
    for i in 0..warm {
        pause(gap_ns);
        call(i);
    }
    let mut us = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..n {
        pause(gap_ns);
        let t0 = now_ns();
        call(i);
        us.push((now_ns() - t0) as f64 / 1e3);
    }
    (quantile(&us, 0.5), quantile(&us, 0.99))
}
