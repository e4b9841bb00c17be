//! Issue 4 (queues): the comparison table. Every case of `queue` is run
//! `reps` times (round-robin: each round runs every contestant once, so that
//! background load hits all alike), and the medians are printed with paired
//! ratios (the median over rounds of the per-round ratio) and a PASS/MISS
//! per target of the issue:
//! - busy-poll one-way latency (8 B) within 1.5x the atomic ping-pong floor;
//! - blocking one-way latency (8 B) within 1.2x a raw futex wake ping-pong;
//! - 64 B 1 -> 1 throughput at least 0.8x the minimal SPSC ring;
//! - at least 10x ipc-channel and a Unix socket (SOCK_SEQPACKET);
//! - at least 100x Python's `multiprocessing.Queue`.
//!
//! A MISS is reported, never a failure. `cargo test --benches` runs one tiny
//! round as a smoke test.

use std::collections::BTreeMap;

#[path = "support/mod.rs"]
#[allow(dead_code, reason = "shared with the sync benches, which use the rest")]
mod support;

#[path = "support/queue.rs"]
#[allow(
    dead_code,
    reason = "shared with queue (criterion), which uses the rest"
)]
mod qsupport;

use qsupport::{LAT_SIZES, QSizes, SHAPES, SIZES, Who};

fn median(v: &[f64]) -> f64 {
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
fn paired(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&ratios)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

const PYTHON: &str = "python_mp_queue";

/// Per-round samples, by key.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn push(&mut self, key: String, v: f64) {
        self.0.entry(key).or_default().push(v);
    }
    fn get(&self, key: &str) -> Option<&[f64]> {
        self.0.get(key).map(Vec::as_slice)
    }
    fn median(&self, key: &str) -> Option<f64> {
        self.get(key).map(median)
    }
    /// Paired ratio `a / b`, when both were measured in every round.
    fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.get(a)?, self.get(b)?);
        (a.len() == b.len()).then(|| paired(a, b))
    }
}

fn lat_key(who: &str, size: usize, q: &str) -> String {
    format!("lat/{size}/{who}/{q}")
}

fn tput_key(who: &str, size: usize, p: usize, c: usize) -> String {
    format!("tput/{p}p{c}c/{size}/{who}")
}

fn is_busy(who: Who) -> bool {
    matches!(who, Who::AtomicFloor | Who::SpscRing | Who::QueueSpin)
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(x) if x >= 100.0 => format!("{x:.0}x"),
        Some(x) if x >= 10.0 => format!("{x:.1}x"),
        Some(x) => format!("{x:.2}x"),
        None => "-".to_owned(),
    }
}

fn print_raw(s: &Samples, key: &str, scale: f64) {
    if let Some(v) = s.get(key) {
        let v: Vec<String> = v.iter().map(|x| format!("{:.3}", x / scale)).collect();
        println!("  {key:<36} {}", v.join(" "));
    }
}

fn one_round(s: &mut Samples, sz: &QSizes) {
    for size in LAT_SIZES {
        for who in Who::LATENCY {
            let (rtts, batch) = if is_busy(who) {
                (sz.busy_rtts, sz.busy_batch)
            } else if who.gap_ns() > 0 {
                (sz.woken_rtts, 1)
            } else {
                (sz.block_rtts, 1)
            };
            if let Some(l) = qsupport::latency(who, size, rtts, batch, sz) {
                s.push(lat_key(who.name(), size, "p50"), l.quantile(0.5));
                s.push(lat_key(who.name(), size, "p99"), l.quantile(0.99));
            }
        }
    }
    for (p, c) in SHAPES {
        for size in SIZES {
            for who in Who::STREAM {
                let n = sz.messages(who, size);
                if let Some(t) = qsupport::throughput(who, size, p, c, n, sz) {
                    s.push(tput_key(who.name(), size, p, c), n as f64 / t.as_secs_f64());
                }
            }
        }
    }
}

fn main() {
    let sz = QSizes::for_this_run();
    let mode = if support::full_run() {
        "full"
    } else {
        "smoke (cargo test --benches)"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "queue_compare: {mode} run, {} rounds, {} CPUs, loadavg {}",
        sz.reps,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "processes forked and {} (threads for crossbeam); latency: ping-pong, one-way = half a round trip, \
         busy-poll {} round trips timed {} at a time, blocking {} timed one at a time; \
         futex_pingpong and shmproc_queue_woken: {} round trips, each after a {} us pause (untimed) so the receiver sleeps",
        support::contended_cpus().map_or("not pinned (one CPU)".to_owned(), |[a, b]| format!(
            "pinned to CPUs {a} and {b}"
        )),
        sz.busy_rtts,
        sz.busy_batch,
        sz.block_rtts,
        sz.woken_rtts,
        Who::FutexFloor.gap_ns() / 1000
    );
    println!(
        "messages: Pod values (u64, [u8; 64], [u8; 4096], [u8; 65536]): shmproc_channel has no bytes path yet; \
         unix socket: socketpair(AF_UNIX, SOCK_SEQPACKET); ipc-channel: bytes_channel"
    );

    let started = std::time::Instant::now();
    let mut s = Samples::default();
    let mut python_skip = None;
    for rep in 0..sz.reps {
        one_round(&mut s, &sz);
        if python_skip.is_none() {
            match qsupport::python_queue(&sz) {
                Ok(r) => {
                    for (size, p50, p99) in r.latency {
                        s.push(lat_key(PYTHON, size, "p50"), p50);
                        s.push(lat_key(PYTHON, size, "p99"), p99);
                    }
                    for (size, rate) in r.stream {
                        s.push(tput_key(PYTHON, size, 1, 1), rate);
                    }
                }
                Err(why) => python_skip = Some(why),
            }
        }
        eprintln!(
            "  round {}/{} done ({:.0} s)",
            rep + 1,
            sz.reps,
            started.elapsed().as_secs_f64()
        );
    }

    let ours_busy = Who::QueueSpin.name();
    let ours_block = Who::QueueBlock.name();
    let atomic = Who::AtomicFloor.name();
    let futex = Who::FutexFloor.name();
    let ring = Who::SpscRing.name();
    let socket = Who::UnixSocket.name();
    let ipc = Who::IpcChannel.name();

    // ---- latency
    let lat_rows: Vec<&str> = Who::LATENCY
        .iter()
        .map(|w| w.name())
        .chain([PYTHON])
        .collect();
    for size in LAT_SIZES {
        println!();
        println!(
            "One-way latency, {} (medians over rounds of each round's p50/p99; ratios: median of per-round p50 ratios, lower is faster)",
            size_label(size)
        );
        println!(
            "{:<20} {:>10} {:>10} {:>9} {:>9} {:>10} {:>13} {:>10}",
            "case", "p50 ns", "p99 ns", "x atomic", "x futex", "x spsc", "shmproc_spin", "shmproc"
        );
        for name in &lat_rows {
            let p50 = lat_key(name, size, "p50");
            let Some(m50) = s.median(&p50) else {
                continue;
            };
            let m99 = s.median(&lat_key(name, size, "p99")).unwrap_or(f64::NAN);
            let vs = |base: &str| s.ratio(&p50, &lat_key(base, size, "p50"));
            // How many times faster ours is than this row.
            let ours = |o: &str| s.ratio(&p50, &lat_key(o, size, "p50"));
            println!(
                "{:<20} {:>10.0} {:>10.0} {:>9} {:>9} {:>10} {:>13} {:>10}",
                name,
                m50,
                m99,
                fmt_ratio(vs(atomic)),
                fmt_ratio(vs(futex)),
                fmt_ratio(vs(ring)),
                fmt_ratio(ours(ours_busy)),
                fmt_ratio(ours(ours_block)),
            );
        }
    }
    println!(
        "  (\"shmproc_spin\"/\"shmproc\": this row's p50 over shmproc_queue_spin's / shmproc_queue's: how many times faster ours is)"
    );

    // ---- throughput
    let tput_rows: Vec<&str> = Who::STREAM
        .iter()
        .map(|w| w.name())
        .chain([PYTHON])
        .collect();
    for (p, c) in SHAPES {
        println!();
        println!(
            "Throughput {p} -> {c} (medians over rounds; \"x ours\": shmproc_queue over this row, \
             \"x spsc\": this row over spsc_ring, both medians of per-round ratios)"
        );
        println!(
            "{:<20} {:>7} {:>11} {:>9} {:>9} {:>10} {:>11}",
            "case", "size", "M msgs/s", "GB/s", "x spsc", "x ours", "x ours_spin"
        );
        for size in SIZES {
            for name in &tput_rows {
                let key = tput_key(name, size, p, c);
                let Some(rate) = s.median(&key) else {
                    continue;
                };
                println!(
                    "{:<20} {:>7} {:>11.3} {:>9.2} {:>9} {:>10} {:>11}",
                    name,
                    size_label(size),
                    rate / 1e6,
                    rate * size as f64 / 1e9,
                    fmt_ratio(s.ratio(&key, &tput_key(ring, size, p, c))),
                    fmt_ratio(s.ratio(&tput_key(ours_block, size, p, c), &key)),
                    fmt_ratio(s.ratio(&tput_key(ours_busy, size, p, c), &key)),
                );
            }
        }
    }
    if let Some(why) = &python_skip {
        println!();
        println!("{PYTHON}: SKIPPED: {why}");
    } else {
        println!("  ({PYTHON}: 1 -> 1 only)");
    }

    // ---- raw per-round samples of the cases the targets compare
    println!();
    println!("raw per-round samples (8B latency p50 in ns; 64B 1->1 in M msgs/s):");
    for who in [
        atomic,
        ring,
        ours_busy,
        futex,
        Who::QueueWoken.name(),
        ours_block,
    ] {
        print_raw(&s, &lat_key(who, 8, "p50"), 1.0);
    }
    for who in [ring, ours_busy, ours_block, socket, ipc, PYTHON] {
        print_raw(&s, &tput_key(who, 64, 1, 1), 1e6);
    }

    // ---- targets
    println!();
    println!("Targets (issue 4), paired ratios:");
    let line = |ok: Option<bool>, what: String| match ok {
        Some(ok) => println!("  {} {what}", verdict(ok)),
        None => println!("  SKIP {what}"),
    };
    let lat = |who: &str| lat_key(who, 8, "p50");
    let r = s.ratio(&lat(ours_busy), &lat(atomic));
    line(
        r.map(|r| r <= 1.5),
        format!(
            "busy-poll latency 8B within 1.5x the atomic floor: shmproc_queue_spin {}",
            fmt_ratio(r)
        ),
    );
    let r = s.ratio(&lat(Who::QueueWoken.name()), &lat(futex));
    line(
        r.map(|r| r <= 1.2),
        format!(
            "blocking latency 8B within 1.2x a raw futex wake (receiver asleep): shmproc_queue_woken {}",
            fmt_ratio(r)
        ),
    );
    let r = s.ratio(&lat(ours_block), &lat(futex));
    line(
        r.map(|r| r <= 1.2),
        format!(
            "blocking latency 8B within 1.2x a raw futex wake (back to back, get's spin catches it): shmproc_queue {}",
            fmt_ratio(r)
        ),
    );
    let t64 = |who: &str| tput_key(who, 64, 1, 1);
    for ours in [ours_block, ours_busy] {
        let r = s.ratio(&t64(ours), &t64(ring));
        line(
            r.map(|r| r >= 0.8),
            format!(
                "64B 1->1 throughput at least 0.8x the minimal ring: {ours} {}",
                fmt_ratio(r)
            ),
        );
    }
    for (base, factor) in [(ipc, 10.0), (socket, 10.0), (PYTHON, 100.0)] {
        let r = s.ratio(&t64(ours_block), &t64(base));
        line(
            r.map(|r| r >= factor),
            format!(
                "at least {factor:.0}x {base}, 64B 1->1 throughput: shmproc_queue {}",
                fmt_ratio(r)
            ),
        );
        for ours in [ours_busy, ours_block] {
            let r = s.ratio(&lat(base), &lat(ours));
            line(
                r.map(|r| r >= factor),
                format!(
                    "at least {factor:.0}x {base}, 8B latency p50: {ours} {}",
                    fmt_ratio(r)
                ),
            );
        }
    }
    if !support::full_run() {
        println!("  (smoke run: sizes too small for the verdicts to mean anything)");
    }
}
