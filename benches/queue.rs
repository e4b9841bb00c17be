//! Issue 4 (queues), in criterion: shmproc's `Queue` against its floors and
//! baselines, all in forked processes pinned to different CPUs (threads for
//! crossbeam-channel).
//!
//! - `queue_pingpong_<size>` (8B, 4KiB): one-way latency (half a round trip)
//!   of `atomic_pingpong` (the busy-poll floor, 8B only), `spsc_ring` (the
//!   minimal shared-memory ring), `shmproc_queue_spin` (`try_put`/`try_get`
//!   spinning), `futex_pingpong` (the blocking floor, 8B only),
//!   `shmproc_queue` (`put`/`get`), `unix_seqpacket`, `ipc_channel`,
//!   `crossbeam_threads`.
//! - `queue_<P>p<C>c_<size>` (1p1c, 2p2c, 4p1c; 8B, 64B, 4KiB, 64KiB):
//!   throughput, msgs/s and bytes/s (the spinning contestants 1p1c only).
//! - Python's `multiprocessing.Queue` (python/queue.py), printed beside them.
//!
//! `cargo bench -p shmproc-benches --bench queue`; `cargo test --benches`
//! runs each case once with tiny counts. `queue_compare` prints p50/p99,
//! medians and ratios.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use shmproc_benches::harness::size_label;
use shmproc_benches::pingpong::LAT_SIZES;
use shmproc_benches::queue::{self, Pattern, SHAPES, SIZES, Who};
use shmproc_benches::sizes::LinkSizes;

fn pingpong(c: &mut Criterion) {
    let sz = LinkSizes::queue();
    for size in LAT_SIZES {
        let mut g = c.benchmark_group(format!("queue_pingpong_{}", size_label(size)));
        // One iteration is one message one way; a sample forks two processes.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(1));
        for who in Who::LATENCY.into_iter().filter(|w| w.has_latency(size)) {
            g.bench_function(who.name(), |b| {
                b.iter_custom(|iters| {
                    queue::latency(who, size, iters, 1, &sz)
                        .expect("case exists")
                        .total()
                });
            });
        }
        g.finish();
    }
}

fn streams(c: &mut Criterion) {
    let sz = LinkSizes::queue();
    for (p, n) in SHAPES {
        for size in SIZES {
            let mut g = c.benchmark_group(format!("queue_{p}p{n}c_{}", size_label(size)));
            // One iteration is one message; a sample forks p + n processes.
            g.sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2))
                .throughput(Throughput::ElementsAndBytes {
                    elements: 1,
                    bytes: size as u64,
                });
            for who in Who::STREAM.into_iter().filter(|w| w.has_stream(p, n)) {
                g.bench_function(who.name(), |b| {
                    b.iter_custom(|iters| {
                        queue::throughput(who, size, p, n, iters, &sz, Pattern::User)
                            .expect("case exists")
                    });
                });
            }
            g.finish();
        }
    }
}

/// Not a criterion measurement (Python runs for seconds): printed beside them.
fn python_mp_queue(_: &mut Criterion) {
    let sz = LinkSizes::queue();
    match shmproc_benches::python::queue(&sz) {
        Ok(r) => {
            for (size, p50, p99) in r.latency {
                println!(
                    "python_mp_queue pingpong {}: one-way p50 {:.1} us, p99 {:.1} us",
                    size_label(size),
                    p50 / 1e3,
                    p99 / 1e3
                );
            }
            for (size, rate) in r.stream {
                println!(
                    "python_mp_queue 1p1c {}: {:.1} k msgs/s, {:.3} GB/s",
                    size_label(size),
                    rate / 1e3,
                    rate * size as f64 / 1e9
                );
            }
        }
        Err(why) => println!("python_mp_queue: SKIPPED: {why}"),
    }
}

criterion_group! {
    name = benches;
    // Few samples and no plots: every sample forks processes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .nresamples(20_000)
        .without_plots();
    targets = pingpong, streams, python_mp_queue
}
criterion_main!(benches);
