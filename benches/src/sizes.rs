//! How big a run is: a real measurement under `cargo bench` (which passes
//! `--bench`), or the smoke run of `cargo test --benches` (criterion's test
//! mode), which runs every case once with small counts so that it takes
//! seconds. [`SyncSizes`] sizes the lock benches, [`LinkSizes`] the queue and
//! pipe benches; each has a full and a smoke set, picked in one place.

use std::time::Duration;

/// Whether this is a real measurement (`cargo bench` passes `--bench`) rather
/// than the smoke run of `cargo test --benches` (criterion's test mode).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` in a real measurement, `smoke` in the smoke run.
fn this_run<T>(full: T, smoke: T) -> T {
    if full_run() { full } else { smoke }
}

/// Iteration counts of the lock benches (`sync_lock`, `sync_compare`).
#[derive(Debug, Clone, Copy)]
pub struct SyncSizes {
    /// Increments per process in the contended case.
    pub contended_per_proc: u64,
    /// Increments per process in the Python case.
    pub python_per_proc: u64,
    /// Acquire+release pairs per uncontended measurement (sync_compare).
    pub uncontended_ops: u64,
    /// Repetitions (medians are taken over these) in sync_compare.
    pub reps: usize,
}

impl SyncSizes {
    /// The figures.
    pub const FULL: Self = Self {
        contended_per_proc: 1_000_000,
        python_per_proc: 200_000,
        uncontended_ops: 2_000_000,
        reps: 11,
    };

    /// The smoke run's.
    pub const SMOKE: Self = Self {
        contended_per_proc: 10_000,
        python_per_proc: 2_000,
        uncontended_ops: 10_000,
        reps: 1,
    };

    /// [`Self::FULL`] or [`Self::SMOKE`], by [`full_run`].
    pub fn for_this_run() -> Self {
        this_run(Self::FULL, Self::SMOKE)
    }
}

/// Round trips, message budgets and rounds of the queue and pipe benches.
#[derive(Debug, Clone, Copy)]
pub struct LinkSizes {
    /// Round trips per busy-poll ping-pong (after a warm-up of a tenth).
    pub busy_rtts: u64,
    /// Round trips per timed sample in busy-poll runs (a clock read costs
    /// about as much as a busy-poll hand-off; blocking runs time each one).
    pub busy_batch: u64,
    /// Round trips per blocking ping-pong.
    pub block_rtts: u64,
    /// Round trips per ping-pong with a pause before each ping.
    pub woken_rtts: u64,
    /// Bytes per stream run for the shared-memory contestants, crossbeam and
    /// memcpy (message count capped at `fast_cap`).
    pub fast_bytes: u64,
    /// The most messages of such a run.
    pub fast_cap: u64,
    /// Bytes per stream run for the system-call contestants (pipe(2), Unix
    /// sockets, ipc-channel), message count capped at `slow_cap`.
    pub slow_bytes: u64,
    /// The most messages of such a run.
    pub slow_cap: u64,
    /// The fewest messages of a stream run.
    pub min_msgs: u64,
    /// Whether the pipe streams warm up first (untimed: a ring's worth of
    /// messages); the queue's streams never do.
    pub warm: bool,
    /// Rounds (medians over these) in queue_compare and pipe_compare.
    pub reps: usize,
    /// Python: round trips per latency case.
    pub python_rtts: u64,
    /// Python: bytes per stream case.
    pub python_bytes: u64,
    /// How long a run may take before its children are killed.
    pub deadline: Duration,
}

impl LinkSizes {
    /// A real queue run.
    pub const QUEUE_FULL: Self = Self {
        busy_rtts: 100_000,
        busy_batch: 10,
        block_rtts: 10_000,
        woken_rtts: 2_000,
        fast_bytes: 256 << 20,
        fast_cap: 1_000_000,
        slow_bytes: 128 << 20,
        slow_cap: 50_000,
        min_msgs: 16,
        warm: false,
        reps: 7,
        python_rtts: 1000,
        python_bytes: 16 << 20,
        deadline: Duration::from_secs(120),
    };

    /// The queue's smoke run.
    pub const QUEUE_SMOKE: Self = Self {
        busy_rtts: 200,
        busy_batch: 10,
        block_rtts: 50,
        woken_rtts: 20,
        fast_bytes: 1 << 20,
        fast_cap: 2000,
        slow_bytes: 1 << 20,
        slow_cap: 500,
        min_msgs: 16,
        warm: false,
        reps: 1,
        python_rtts: 20,
        python_bytes: 64 << 10,
        deadline: Duration::from_secs(20),
    };

    /// A real pipe run: twice the queue's shared-memory budget, Python's
    /// 8 times, down to 4 messages (64 MiB each), and a warm-up.
    pub const PIPE_FULL: Self = Self {
        fast_bytes: 512 << 20,
        min_msgs: 4,
        warm: true,
        python_bytes: 128 << 20,
        ..Self::QUEUE_FULL
    };

    /// The pipe's smoke run: down to one message.
    pub const PIPE_SMOKE: Self = Self {
        min_msgs: 1,
        ..Self::QUEUE_SMOKE
    };

    /// The queue benches' sizes for this run ([`full_run`]).
    pub fn queue() -> Self {
        this_run(Self::QUEUE_FULL, Self::QUEUE_SMOKE)
    }

    /// The pipe benches' sizes for this run ([`full_run`]).
    pub fn pipe() -> Self {
        this_run(Self::PIPE_FULL, Self::PIPE_SMOKE)
    }

    /// Messages per stream run of `size`-byte messages, for a system-call
    /// contestant (`syscall`) or another.
    pub fn messages(&self, syscall: bool, size: usize) -> u64 {
        let (bytes, cap) = if syscall {
            (self.slow_bytes, self.slow_cap)
        } else {
            (self.fast_bytes, self.fast_cap)
        };
        (bytes / size as u64).clamp(self.min_msgs, cap.max(self.min_msgs))
    }

    /// (round trips, round trips per timed sample) of a ping-pong in the
    /// comparison benches: busy-poll contestants time `busy_batch` at a
    /// time, the others (those with a pause before each ping, `gap_ns > 0`,
    /// and the blocking ones) each round trip.
    pub fn counts(&self, busy: bool, gap_ns: u64) -> (u64, u64) {
        if busy {
            (self.busy_rtts, self.busy_batch)
        } else if gap_ns > 0 {
            (self.woken_rtts, 1)
        } else {
            (self.block_rtts, 1)
        }
    }
}

/// Item counts, samples and rounds of the pool comparison (`pool_compare`).
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    /// The first number of the `is_prime` range.
    pub prime_start: u64,
    /// Numbers in the `is_prime` range.
    pub prime_n: usize,
    /// Numbers Python's `Pool.map` runs (the range's first ones; its time
    /// is scaled to `prime_n`).
    pub python_prime_n: usize,
    /// `f32`s in each array of the `y = a*x + b` kernel.
    pub axpy_len: usize,
    /// Pool starts per round (the round's sample is their median).
    pub start_samples: usize,
    /// Items of shmproc's `imap` (identity, chunksize 1).
    pub imap_n: u64,
    /// Items of Python's `imap` (identity, chunksize 1).
    pub python_imap_n: u64,
    /// Round trips per `apply_async` run (each after a pause, so the
    /// workers sleep).
    pub apply_rtts: u64,
    /// The untimed pause before each `apply_async` round trip (ns).
    pub apply_gap_ns: u64,
    /// Rounds (at least; medians over these).
    pub reps: usize,
}

impl PoolSizes {
    /// A real run: the figures.
    pub const FULL: Self = Self {
        prime_start: 10_000_000,
        prime_n: 2_000_000,
        python_prime_n: 200_000,
        axpy_len: 64 << 20,
        start_samples: 10,
        imap_n: 1_000_000,
        python_imap_n: 100_000,
        apply_rtts: 2_000,
        apply_gap_ns: 20_000,
        reps: 7,
    };

    /// The smoke run's.
    pub const SMOKE: Self = Self {
        prime_start: 10_000_000,
        prime_n: 20_000,
        python_prime_n: 2_000,
        axpy_len: 64 << 10,
        start_samples: 2,
        imap_n: 2_000,
        python_imap_n: 1_000,
        apply_rtts: 20,
        apply_gap_ns: 20_000,
        reps: 1,
    };

    /// [`Self::FULL`] or [`Self::SMOKE`], by [`full_run`].
    pub fn for_this_run() -> Self {
        this_run(Self::FULL, Self::SMOKE)
    }
}
