//! Issue 3 (locks), in criterion: uncontended acquire+release, and two forked
//! processes each incrementing a shared non-atomic counter under the lock
//! (1M each; the final count is checked), for our `Lock` and `Value`, a
//! process-shared pthread mutex (plain and robust), `raw_sync`'s mutex and the
//! atomic `fetch_add` floor; then Python's `multiprocessing.Value` under
//! `get_lock()` (python/value_lock.py), measured in the same run.
//!
//! `cargo bench -p shmproc-benches --bench sync_lock`; `cargo test --benches`
//! runs each case once with 10k increments. `sync_compare` prints the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use shmproc_benches::sizes::SyncSizes;
use shmproc_benches::sync::{self, Case, CaseVisitor};

struct Uncontended<'a, 'c>(&'a mut BenchmarkGroup<'c, WallTime>);

impl CaseVisitor for Uncontended<'_, '_> {
    fn visit<C: Case>(&mut self, case: &C) {
        self.0.bench_function(case.name(), |b| {
            b.iter(|| black_box(case).acquire_release())
        });
    }
}

struct Contended<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    per_proc: u64,
}

impl CaseVisitor for Contended<'_, '_> {
    fn visit<C: Case>(&mut self, case: &C) {
        let per_proc = self.per_proc;
        self.group.bench_function(case.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| sync::run_contended(case, per_proc))
                    .sum()
            });
        });
    }
}

fn lock_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_uncontended");
    g.throughput(Throughput::Elements(1));
    sync::each_case(&mut Uncontended(&mut g));
    g.finish();
}

fn lock_contended(c: &mut Criterion) {
    let per_proc = SyncSizes::for_this_run().contended_per_proc;
    let mut g = c.benchmark_group(format!("lock_contended_2p_{}k", per_proc / 1000));
    // One iteration is a whole run (fork two children, 2 x per_proc increments).
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(2 * per_proc));
    sync::each_case(&mut Contended {
        group: &mut g,
        per_proc,
    });
    g.finish();
}

/// Not a criterion measurement (one run takes about a second): printed beside them.
fn python_value_lock(_: &mut Criterion) {
    let per_proc = SyncSizes::for_this_run().python_per_proc;
    match shmproc_benches::python::value_lock(per_proc) {
        Ok(rate) => println!(
            "python_value_lock_2p_{}k: {:.3} M incr/s (multiprocessing.Value + get_lock(), 2 processes)",
            per_proc / 1000,
            rate / 1e6
        ),
        Err(why) => println!("python_value_lock: SKIPPED: {why}"),
    }
}

criterion_group! {
    name = benches;
    // Fewer samples and resamples than criterion's defaults, and no plots:
    // keeps the whole binary well under two minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .nresamples(20_000)
        .without_plots();
    targets = lock_uncontended, lock_contended, python_value_lock
}
criterion_main!(benches);
