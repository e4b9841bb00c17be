//! Issue 5 (Pipe and Connection), in criterion: shmproc's `Pipe` against
//! its floors and baselines, in forked processes pinned to different CPUs.
//!
//! - `pipe_pingpong_<size>` (8B, 4KiB): one-way latency (half a round trip)
//!   of `atomic_pingpong` and `futex_pingpong` (the floors, 8B only),
//!   `shmproc_pipe_spin` (`poll(Some(Duration::ZERO))` spinning, then
//!   `recv_bytes_into`), `shmproc_pipe_readable` (`readable()` spinning),
//!   `shmproc_pipe` (blocking), `shmproc_pipe_woken`
//!   (blocking, a pause before each ping), `os_pipe`, `unix_stream`,
//!   `ipc_channel`.
//! - `pipe_stream_<size>` (64B, 64KiB, 1MiB, 64MiB): one-way throughput,
//!   msgs/s and bytes/s, of `shmproc_pipe_copy`, `shmproc_pipe_zerocopy`,
//!   `shmproc_pipe_default`, `os_pipe`, `unix_stream`, `ipc_channel`, and
//!   `memcpy` (one process).
//! - Python's `multiprocessing.Pipe` (python/pipe.py), printed beside them.
//!
//! `cargo bench -p shmproc-benches --bench pipe`; `cargo test --benches`
//! runs each case once with tiny counts. `pipe_compare` prints p50/p99,
//! medians, paired ratios and the targets.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use shmproc_benches::harness::size_label;
use shmproc_benches::pingpong::LAT_SIZES;
use shmproc_benches::pipe::{self, Lat, STREAM_SIZES, Tput};
use shmproc_benches::sizes::LinkSizes;

fn pingpong(c: &mut Criterion) {
    let sz = LinkSizes::pipe();
    for size in LAT_SIZES {
        let mut g = c.benchmark_group(format!("pipe_pingpong_{}", size_label(size)));
        // One iteration is one message one way; a sample forks two processes.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(1));
        for who in Lat::ALL.into_iter().filter(|w| w.has_size(size)) {
            g.bench_function(who.name(), |b| {
                b.iter_custom(|iters| {
                    pipe::latency(who, size, iters, 1, &sz)
                        .expect("case exists")
                        .total()
                });
            });
        }
        g.finish();
    }
}

fn streams(c: &mut Criterion) {
    let sz = LinkSizes::pipe();
    for size in STREAM_SIZES {
        let mut g = c.benchmark_group(format!("pipe_stream_{}", size_label(size)));
        // One iteration is one message; a sample forks two processes.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::ElementsAndBytes {
                elements: 1,
                bytes: size as u64,
            });
        for who in Tput::ALL {
            g.bench_function(who.name(), |b| {
                b.iter_custom(|iters| pipe::throughput(who, size, iters.max(1), &sz));
            });
        }
        g.finish();
    }
}

/// Not a criterion measurement (Python runs for seconds): printed beside them.
fn python_mp_pipe(_: &mut Criterion) {
    let sz = LinkSizes::pipe();
    match shmproc_benches::python::pipe(&sz) {
        Ok(r) => {
            for (size, p50, p99) in r.latency {
                println!(
                    "python_mp_pipe pingpong {}: one-way p50 {:.1} us, p99 {:.1} us",
                    size_label(size),
                    p50 / 1e3,
                    p99 / 1e3
                );
            }
            for (size, rate) in r.stream {
                println!(
                    "python_mp_pipe stream {}: {:.1} k msgs/s, {:.3} GB/s",
                    size_label(size),
                    rate / 1e3,
                    rate * size as f64 / 1e9
                );
            }
        }
        Err(why) => println!("python_mp_pipe: SKIPPED: {why}"),
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
    targets = pingpong, streams, python_mp_pipe
}
criterion_main!(benches);
