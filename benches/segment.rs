//! Named segments: create+map+unlink, and open+map(+unmap) of an existing one,
//! at 4 KiB and 1 MiB, for `shmproc_shm::Segment`, the `shared_memory` crate
//! and plain memmap2 over a file in `/dev/shm` (with and without
//! `posix_fallocate`).
//!
//! What ours does beyond the others, and pays for here: `posix_fallocate` of
//! the whole segment at create (a full `/dev/shm` is an `ENOSPC` at create,
//! not a SIGBUS later: the kernel allocates and zeroes every page now, which
//! dominates at 1 MiB), the 64-byte header written at create and validated
//! at open (magic, version, lengths against `fstat`, kind, fingerprint, the
//! ready state), 64 + 64 bytes more than asked for (header and padding to
//! `DATA_OFFSET`), and `O_EXCL` with mode 0600 (as `shared_memory` and the
//! memmap2 cases do). `memmap2_fallocate` isolates the fallocate cost.
//!
//! `cargo bench -p shmproc-benches --bench segment`; nothing is left in
//! `/dev/shm` (each name is unlinked, and a sweep removes leftovers of a
//! panicked run).

#![allow(
    unsafe_code,
    reason = "the baseline memmap2_fallocate case calls libc::posix_fallocate"
)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memmap2::{MmapOptions, MmapRaw};
use shared_memory::ShmemConf;
use shmproc_shm::{Segment, SegmentKind, SegmentLayout, TypeSpec};

const SIZES: [(usize, &str); 2] = [(4096, "4KiB"), (1 << 20, "1MiB")];

/// This run's name prefix (in `/dev/shm`, without the slash).
fn prefix() -> String {
    format!("shmproc-bench-{:x}-", std::process::id())
}

/// A fresh name for each segment this process creates.
fn fresh_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("/{}{}", prefix(), N.fetch_add(1, Ordering::Relaxed))
}

/// Removes anything of this run still in `/dev/shm` (a panicked iteration).
fn sweep() {
    let prefix = prefix();
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            eprintln!("segment bench: removing leftover {:?}", entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn layout(n: usize) -> SegmentLayout {
    SegmentLayout::new(
        SegmentKind::RAW,
        TypeSpec::bytes().with_capacity(n as u64),
        n as u64,
    )
}

fn ours_create(name: &str, n: usize) -> Segment {
    Segment::create(name, &layout(n))
        .expect("Segment::create")
        .publish()
}

fn ours_open(name: &str, n: usize) -> Segment {
    Segment::open(
        name,
        SegmentKind::RAW,
        TypeSpec::bytes().with_capacity(n as u64),
    )
    .expect("Segment::open")
}

fn dev_shm(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// memmap2 over `/dev/shm/<name>`: `O_CREAT | O_EXCL`, 0600, `ftruncate`, and
/// `posix_fallocate` when asked.
fn memmap2_create(name: &str, n: usize, fallocate: bool) -> (File, MmapRaw) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dev_shm(name))
        .expect("create in /dev/shm");
    file.set_len(n as u64).expect("ftruncate");
    if fallocate {
        let len = libc::off_t::try_from(n).expect("small size");
        // SAFETY: a plain syscall on an fd this function owns; no memory is passed.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        assert_eq!(r, 0, "posix_fallocate");
    }
    let map = MmapOptions::new().len(n).map_raw(&file).expect("mmap");
    (file, map)
}

fn memmap2_open(name: &str, n: usize) -> (File, MmapRaw) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_shm(name))
        .expect("open in /dev/shm");
    let len = usize::try_from(file.metadata().expect("fstat").len()).expect("fits");
    assert_eq!(len, n);
    let map = MmapOptions::new().len(len).map_raw(&file).expect("mmap");
    (file, map)
}

fn create_map_unlink(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment_create_map_unlink");
    g.throughput(Throughput::Elements(1));
    for (n, label) in SIZES {
        g.bench_function(BenchmarkId::new("shmproc_shm", label), |b| {
            b.iter(|| drop(black_box(ours_create(&fresh_name(), n))));
        });
        g.bench_function(BenchmarkId::new("shared_memory", label), |b| {
            b.iter(|| {
                let shm = ShmemConf::new()
                    .size(n)
                    .os_id(fresh_name())
                    .create()
                    .expect("shared_memory create");
                drop(black_box(shm));
            });
        });
        for (id, fallocate) in [("memmap2", false), ("memmap2_fallocate", true)] {
            g.bench_function(BenchmarkId::new(id, label), |b| {
                b.iter(|| {
                    let name = fresh_name();
                    let (file, map) = memmap2_create(&name, n, fallocate);
                    std::fs::remove_file(dev_shm(&name)).expect("unlink");
                    drop(black_box(map));
                    drop(file);
                });
            });
        }
    }
    g.finish();
    sweep();
}

fn open_map(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment_open_map");
    g.throughput(Throughput::Elements(1));
    for (n, label) in SIZES {
        {
            let name = fresh_name();
            let _owner = ours_create(&name, n);
            g.bench_function(BenchmarkId::new("shmproc_shm", label), |b| {
                b.iter(|| drop(black_box(ours_open(&name, n))));
            });
        }
        {
            let name = fresh_name();
            let _owner = ShmemConf::new()
                .size(n)
                .os_id(&name)
                .create()
                .expect("shared_memory create");
            g.bench_function(BenchmarkId::new("shared_memory", label), |b| {
                b.iter(|| {
                    drop(black_box(
                        ShmemConf::new()
                            .os_id(&name)
                            .open()
                            .expect("shared_memory open"),
                    ))
                });
            });
        }
        {
            let name = fresh_name();
            let owner = memmap2_create(&name, n, false);
            g.bench_function(BenchmarkId::new("memmap2", label), |b| {
                b.iter(|| drop(black_box(memmap2_open(&name, n))));
            });
            drop(owner);
            std::fs::remove_file(dev_shm(&name)).expect("unlink");
        }
    }
    g.finish();
    sweep();
}

criterion_group! {
    name = benches;
    // Fewer samples and resamples than criterion's defaults, and no plots:
    // the analysis, not the measurement, dominated the run time.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .nresamples(20_000)
        .without_plots();
    targets = create_map_unlink, open_map
}
criterion_main!(benches);
