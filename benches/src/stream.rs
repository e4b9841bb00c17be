//! Throughput: one stream run of the queue benches (P producers, C
//! consumers) or the pipe benches (one of each). The producers send the
//! sequence numbers `1..=total` between them, each once, then [`SENTINEL`]
//! once per consumer; every consumer counts and sums what it received until
//! its sentinel, and the run checks that every message arrived exactly once.
//! The time is from the start line to the last consumer done.
//!
//! The workers are forked processes (threads for the in-process baselines):
//! producers alternate between the two CPUs, consumers start on the other
//! one. What a worker sends and how is its bench's: this module has the
//! start line, the reports and the check.

#![allow(
    unsafe_code,
    reason = "the stream's control block in a MAP_SHARED mmap"
)]

use std::time::Duration;

use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};

use crate::harness::{SharedMap, StartLine, cpu_for, now_ns, run_procs, run_threads};

/// The sequence number that tells a consumer to stop.
pub(crate) const SENTINEL: u64 = u64::MAX;

/// Most consumers of a stream.
const MAX_CONSUMERS: usize = 8;

/// The start line and the consumers' reports, in a shared map.
#[repr(C)]
struct StreamCtl {
    start: StartLine,
    producers_done: AtomicU32,
    _pad: u32,
    received: [AtomicU64; MAX_CONSUMERS],
    seq_sum: [AtomicU64; MAX_CONSUMERS],
    end_ns: [AtomicU64; MAX_CONSUMERS],
}

/// One stream run: its shape, its message count and its control block.
pub(crate) struct Stream {
    /// Producers: workers `0..producers`.
    pub(crate) producers: usize,
    /// Consumers: workers `producers..producers + consumers`.
    pub(crate) consumers: usize,
    /// Messages of the run, all producers together.
    pub(crate) total: u64,
    map: SharedMap,
}

impl Stream {
    /// A run of `total` messages from `producers` to `consumers` (at most 8).
    pub(crate) fn new(producers: usize, consumers: usize, total: u64) -> Self {
        assert!((1..=MAX_CONSUMERS).contains(&consumers) && producers >= 1);
        Self {
            producers,
            consumers,
            total,
            map: SharedMap::new(4096),
        }
    }

    fn ctl(&self) -> &StreamCtl {
        // SAFETY: `at` checked bounds and alignment; the zero-filled bytes are a
        // valid StreamCtl (atomics and padding) living as long as `self.map`.
        unsafe { &*self.map.at::<StreamCtl>(0) }
    }

    /// Producers 0..P alternate between the CPUs, consumers start on the other one.
    fn cpu(&self, i: usize) -> Option<usize> {
        if i < self.producers {
            cpu_for(&[0, 1], i)
        } else {
            cpu_for(&[1, 0], i - self.producers)
        }
    }

    /// A worker checks in at the start line and waits for the start; false
    /// when none came (the worker then fails with exit code 2).
    pub(crate) fn wait_go(&self) -> bool {
        self.ctl().start.wait_go()
    }

    /// A producer has sent its share; true for the last one, which then
    /// sends the sentinels (after every other producer's messages).
    pub(crate) fn producer_done(&self) -> bool {
        // AcqRel: the last producer sees every other producer's sends done, so
        // the sentinels go after all messages.
        let done = self.ctl().producers_done.fetch_add(1, Ordering::AcqRel) + 1;
        done as usize == self.producers
    }

    /// Consumer `j` (0-based): takes sequence numbers from `recv` until the
    /// sentinel, then reports when it finished, how many it received and
    /// their sum.
    #[inline]
    pub(crate) fn consume(&self, j: usize, mut recv: impl FnMut() -> u64) {
        let (mut n, mut sum) = (0u64, 0u64);
        loop {
            let s = recv();
            if s == SENTINEL {
                break;
            }
            n += 1;
            sum = sum.wrapping_add(s);
        }
        let ctl = self.ctl();
        ctl.end_ns[j].store(now_ns(), Ordering::Relaxed);
        ctl.received[j].store(n, Ordering::Relaxed);
        ctl.seq_sum[j].store(sum, Ordering::Relaxed);
    }

    /// Runs `work(i)` in one forked process per worker, pinned, released
    /// together; checks the run (`what` names it in a failure) and returns
    /// the time from the start line to the last consumer done.
    ///
    /// # Panics
    /// When a message is lost or duplicated, a worker fails, or the
    /// workers outlive `deadline` (they are then killed and reaped).
    pub(crate) fn procs(
        &self,
        work: impl Fn(usize) -> i32,
        what: &str,
        deadline: Duration,
    ) -> Duration {
        let mut t0 = 0;
        run_procs(
            self.producers + self.consumers,
            |i| self.cpu(i),
            work,
            || t0 = self.start(),
            deadline,
        );
        self.result(t0, what)
    }

    /// The same with threads of this process.
    pub(crate) fn threads(&self, work: impl Fn(usize) -> i32 + Sync, what: &str) -> Duration {
        let mut t0 = 0;
        run_threads(
            self.producers + self.consumers,
            |i| self.cpu(i),
            work,
            || t0 = self.start(),
        );
        self.result(t0, what)
    }

    /// Waits for every worker at the start line (at most 60 s: pipe workers
    /// warm up before they check in), releases them, returns the start time.
    fn start(&self) -> u64 {
        let start = &self.ctl().start;
        let all = u32::try_from(self.producers + self.consumers).expect("worker count");
        start.wait_ready(all, Duration::from_secs(60));
        start.go()
    }

    /// Checks that every message arrived once; the time from the start to the last consumer done.
    fn result(&self, t0: u64, what: &str) -> Duration {
        let ctl = self.ctl();
        let c = self.consumers;
        let n: u64 = ctl.received[..c]
            .iter()
            .map(|x| x.load(Ordering::Relaxed))
            .sum();
        let sum = ctl.seq_sum[..c]
            .iter()
            .fold(0u64, |a, x| a.wrapping_add(x.load(Ordering::Relaxed)));
        let expect = (u128::from(self.total) * u128::from(self.total + 1) / 2) as u64;
        assert_eq!(n, self.total, "{what}: messages lost or duplicated");
        assert_eq!(sum, expect, "{what}: wrong messages received");
        let end = ctl.end_ns[..c]
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .max()
            .unwrap_or(t0);
        Duration::from_nanos(end.saturating_sub(t0))
    }
}
