//! One-way latency: a ping-pong over two `Link`s (ping a -> b, pong
//! b -> a) between two forked processes pinned to different CPUs (or two
//! threads), half a round trip per sample. Busy-poll runs time a batch of
//! round trips per sample (a clock read costs about as much as a busy-poll
//! hand-off); runs with a pause before each ping time each round trip.

use std::time::Duration;

use bytemuck::Pod;
use shmproc_shm::sync::{AtomicU64, Ordering};

use crate::harness::{SharedMap, cpu_for, now_ns, quantile, run_procs, run_threads};
use crate::links::{Link, seq_of, set_seq};

/// The ping-pong message sizes of the queue and pipe benches, in bytes.
pub const LAT_SIZES: [usize; 2] = [8, 4096];

/// Latency samples of one ping-pong run: one-way nanoseconds, each the mean
/// over `batch` round trips (halved).
#[derive(Debug, Clone)]
pub struct Latency {
    one_way_ns: Vec<f64>,
    batch: u64,
}

impl Latency {
    /// The `p` quantile (0..=1) of the samples, nearest rank.
    pub fn quantile(&self, p: f64) -> f64 {
        quantile(&self.one_way_ns, p)
    }

    /// The total one-way time (for criterion's `iter_custom`).
    pub fn total(&self) -> Duration {
        let ns: f64 = self.one_way_ns.iter().sum::<f64>() * self.batch as f64;
        Duration::from_nanos(ns as u64)
    }
}

/// Busy-waits `ns` nanoseconds (on this process's own CPU).
pub(crate) fn pause(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = now_ns() + ns;
    while now_ns() < until {
        std::hint::spin_loop();
    }
}

/// The pinger: `warm` untimed round trips, then `samples.len()` samples of
/// `batch` round trips, each sample's nanoseconds stored; an untimed pause
/// of `gap` ns before each (with `batch` 1).
fn pinger<T: Pod, L: Link<T>>(
    ping: &L,
    pong: &L,
    warm: u64,
    (batch, gap): (u64, u64),
    samples: &[AtomicU64],
) {
    let mut m = T::zeroed();
    let mut seq = 0;
    let mut trip = |m: &mut T| {
        seq += 1;
        set_seq(m, seq);
        ping.send(m);
        pong.recv(m);
        assert_eq!(seq_of(m), seq, "pong out of order");
    };
    for _ in 0..warm {
        pause(gap);
        trip(&mut m);
    }
    for s in samples {
        pause(gap);
        let t0 = now_ns();
        for _ in 0..batch {
            trip(&mut m);
        }
        s.store(now_ns() - t0, Ordering::Relaxed);
    }
}

/// The ponger: echoes `total` messages.
fn ponger<T: Pod, L: Link<T>>(ping: &L, pong: &L, total: u64) {
    let mut m = T::zeroed();
    for _ in 0..total {
        ping.recv(&mut m);
        pong.send(&m);
    }
}

/// One run's plan and its samples (in a shared map, written by the pinger).
struct PingPong {
    warm: u64,
    batch: u64,
    gap: u64,
    samples: u64,
    map: SharedMap,
}

impl PingPong {
    fn new(rtts: u64, batch: u64, gap: u64) -> Self {
        let batch = if gap > 0 {
            1
        } else {
            batch.clamp(1, rtts.max(1))
        };
        let samples = (rtts / batch).max(1);
        Self {
            warm: (rtts / 10).clamp(1, 1000),
            batch,
            gap,
            samples,
            map: SharedMap::new(usize::try_from(samples).expect("sample count") * 8 + 64),
        }
    }
    fn out(&self) -> &[AtomicU64] {
        self.map
            .atomics(0, usize::try_from(self.samples).expect("sample count"))
    }
    fn work<T: Pod, L: Link<T>>(&self, ping: &L, pong: &L, i: usize) -> i32 {
        if i == 0 {
            pinger(ping, pong, self.warm, (self.batch, self.gap), self.out());
        } else {
            ponger(ping, pong, self.warm + self.samples * self.batch);
        }
        0
    }
    fn result(&self) -> Latency {
        let div = 2.0 * self.batch as f64;
        Latency {
            one_way_ns: self
                .out()
                .iter()
                .map(|s| s.load(Ordering::Relaxed) as f64 / div)
                .collect(),
            batch: self.batch,
        }
    }
}

/// A ping-pong between two forked processes on different CPUs: about
/// `rtts` round trips over `ping` and back over `pong`, `batch` round trips
/// per timed sample, an untimed pause of `gap_ns` before each ping (then
/// `batch` is 1). The children are killed after `deadline`.
pub(crate) fn procs<T: Pod, L: Link<T>>(
    ping: &L,
    pong: &L,
    rtts: u64,
    (batch, gap_ns): (u64, u64),
    deadline: Duration,
) -> Latency {
    let pp = PingPong::new(rtts, batch, gap_ns);
    run_procs(
        2,
        |i| cpu_for(&[0, 1], i),
        |i| pp.work(ping, pong, i),
        || {},
        deadline,
    );
    pp.result()
}

/// The same between two threads of this process.
pub(crate) fn threads<T: Pod, L: Link<T> + Sync>(
    ping: &L,
    pong: &L,
    rtts: u64,
    (batch, gap_ns): (u64, u64),
) -> Latency {
    let pp = PingPong::new(rtts, batch, gap_ns);
    run_threads(
        2,
        |i| cpu_for(&[0, 1], i),
        |i| pp.work(ping, pong, i),
        || {},
    );
    pp.result()
}
