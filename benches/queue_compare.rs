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
//!
//! `--stream64` runs only the 64 B 1 -> 1 streams in the user's pattern
//! (`--stream64k`: the 64 KiB ones)
//! (the minimal ring, `Queue` with `put`/`get`, with `try_put`/`try_get`,
//! in place, `ByteQueue`), all rounds, for the five-run spread of issue 18:
//! `for i in 1 2 3 4 5; do queue_compare --bench --stream64; done`.

use shmproc_benches::compare::{self, Rounds, Samples, Targets, fmt_ratio};
use shmproc_benches::harness::{self, size_label};
use shmproc_benches::pingpong::LAT_SIZES;
use shmproc_benches::queue::{self, Pattern, SHAPES, SIZES, Who};
use shmproc_benches::sizes::LinkSizes;

const PYTHON: &str = "python_mp_queue";

fn lat_key(who: &str, size: usize, q: &str) -> String {
    format!("lat/{size}/{who}/{q}")
}

fn tput_key(who: &str, size: usize, p: usize, c: usize) -> String {
    format!("tput/{p}p{c}c/{size}/{who}")
}

/// The `size` 1 -> 1 streams only (`--stream64`: 64 B, `--stream64k`:
/// 64 KiB).
fn stream_round(s: &mut Samples, sz: &LinkSizes, size: usize) {
    for who in [
        Who::SpscRing,
        Who::QueueSpin,
        Who::QueueBlock,
        Who::QueueInPlace,
        Who::ByteQueue,
    ] {
        let n = sz.messages(false, size);
        if let Some(t) = queue::throughput(who, size, 1, 1, n, sz, Pattern::User) {
            s.push(tput_key(who.name(), size, 1, 1), n as f64 / t.as_secs_f64());
        }
    }
}

fn one_round(s: &mut Samples, sz: &LinkSizes) {
    for size in LAT_SIZES {
        for who in Who::LATENCY {
            let (rtts, batch) = sz.counts(who.is_busy(), who.gap_ns());
            if let Some(l) = queue::latency(who, size, rtts, batch, sz) {
                s.push(lat_key(who.name(), size, "p50"), l.quantile(0.5));
                s.push(lat_key(who.name(), size, "p99"), l.quantile(0.99));
                // Both processes' CPU per one-way message (2 per round trip),
                // waiting included (crossbeam: threads, not measured).
                if who != Who::Crossbeam {
                    let cpu = harness::last_run_cpu_ns() as f64 / (2 * rtts) as f64;
                    s.push(lat_key(who.name(), size, "cpu"), cpu);
                }
            }
        }
    }
    for (p, c) in SHAPES {
        for size in SIZES {
            for who in Who::STREAM {
                let n = sz.messages(who.is_syscall(), size);
                if let Some(t) = queue::throughput(who, size, p, c, n, sz, Pattern::User) {
                    s.push(tput_key(who.name(), size, p, c), n as f64 / t.as_secs_f64());
                }
            }
        }
    }
    // The staged pattern, 64 B 1 -> 1, for comparison with earlier runs.
    for who in [Who::SpscRing, Who::QueueSpin, Who::QueueBlock] {
        let n = sz.messages(false, 64);
        if let Some(t) = queue::throughput(who, 64, 1, 1, n, sz, Pattern::Staged) {
            let name = format!("{}{}", who.name(), Pattern::Staged.suffix());
            s.push(tput_key(&name, 64, 1, 1), n as f64 / t.as_secs_f64());
        }
    }
}

fn main() {
    let sz = LinkSizes::queue();
    compare::banner("queue_compare", &compare::rounds_note(sz.reps));
    println!(
        "processes forked and {} (threads for crossbeam); latency: ping-pong, one-way = half a round trip, \
         busy-poll {} round trips timed {} at a time, blocking {} timed one at a time; \
         futex_pingpong and shmproc_queue_woken: {} round trips, each after a {} us pause (untimed) so the receiver sleeps",
        harness::pinning(),
        sz.busy_rtts,
        sz.busy_batch,
        sz.block_rtts,
        sz.woken_rtts,
        Who::FutexFloor.gap_ns() / 1000
    );
    println!(
        "messages: Pod values (u64, [u8; 64], [u8; 4096], [u8; 65536]): the typed Queue<T> (ByteQueue, the bytes path, is not measured here); \
         unix socket: socketpair(AF_UNIX, SOCK_SEQPACKET); ipc-channel: bytes_channel"
    );

    let only = if std::env::args().any(|a| a == "--stream64") {
        Some(64)
    } else if std::env::args().any(|a| a == "--stream64k") {
        Some(65536)
    } else {
        None
    };
    let mut python_skip = only.map(|size| format!("--stream64/--stream64k: {size} B streams only"));
    let all = Rounds::for_this_run(sz.reps).run(|s| {
        if let Some(size) = only {
            stream_round(s, &sz, size);
        } else {
            one_round(s, &sz);
        }
        if python_skip.is_none() {
            match shmproc_benches::python::queue(&sz) {
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
    });
    let (shared, cross) = (all.shared_l3(), all.cross_l3());
    let s = compare::table_samples(&all, &shared);

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
            "{:<20} {:>10} {:>10} {:>9} {:>9} {:>10} {:>13} {:>10} {:>11} {:>11}",
            "case",
            "p50 ns",
            "p99 ns",
            "x atomic",
            "x futex",
            "x spsc",
            "shmproc_spin",
            "shmproc",
            "cpu ns/msg",
            "cpu x futex"
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
            let cpu_key = lat_key(name, size, "cpu");
            let cpu = s
                .median(&cpu_key)
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"));
            let cpu_futex = s.ratio(&cpu_key, &lat_key(futex, 8, "cpu"));
            println!(
                "{:<20} {:>10.0} {:>10.0} {:>9} {:>9} {:>10} {:>13} {:>10} {:>11} {:>11}",
                name,
                m50,
                m99,
                fmt_ratio(vs(atomic)),
                fmt_ratio(vs(futex)),
                fmt_ratio(vs(ring)),
                fmt_ratio(ours(ours_busy)),
                fmt_ratio(ours(ours_block)),
                cpu,
                fmt_ratio(cpu_futex),
            );
        }
    }
    println!(
        "  (\"shmproc_spin\"/\"shmproc\": this row's p50 over shmproc_queue_spin's / shmproc_queue's: how many times faster ours is; \
         \"cpu ns/msg\": user + system CPU of both processes per one-way message, from fork to exit (getrusage of the reaped workers), \
         waiting and the pause before each ping included; \"cpu x futex\": over futex_pingpong's 8B figure)"
    );

    // ---- throughput
    let staged: Vec<String> = [Who::SpscRing, Who::QueueSpin, Who::QueueBlock]
        .iter()
        .map(|w| format!("{}{}", w.name(), Pattern::Staged.suffix()))
        .collect();
    let tput_rows: Vec<&str> = Who::STREAM
        .iter()
        .map(|w| w.name())
        .chain([PYTHON])
        .chain(staged.iter().map(String::as_str))
        .collect();
    for (p, c) in SHAPES {
        println!();
        println!(
            "Throughput {p} -> {c}, the user's pattern: each message sent from the producer's own buffer of messages \
             (up to 4 MiB) and received into the consumer's own buffer, read there; *_staged: the earlier pattern \
             (64 staged messages, one reused local), 64B 1 -> 1 only \
             (medians over rounds; \"x ours\": shmproc_queue over this row, \
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
    println!("raw per-round samples, every round (8B latency p50 in ns; 64B 1->1 in M msgs/s):");
    all.print_placement();
    for who in [
        atomic,
        ring,
        ours_busy,
        futex,
        Who::QueueWoken.name(),
        ours_block,
    ] {
        all.print_raw(&lat_key(who, 8, "p50"), 1.0);
    }
    for who in [
        ring,
        ours_busy,
        ours_block,
        Who::QueueInPlace.name(),
        socket,
        ipc,
        PYTHON,
    ] {
        all.print_raw(&tput_key(who, 64, 1, 1), 1e6);
    }
    for who in &staged {
        all.print_raw(&tput_key(who, 64, 1, 1), 1e6);
    }

    // ---- targets
    println!();
    let t = Targets::new(&all, &shared, &cross);
    t.header(4);
    let lat = |who: &str| lat_key(who, 8, "p50");
    t.line(
        "busy-poll latency 8B within 1.5x the atomic floor: shmproc_queue_spin",
        &lat(ours_busy),
        &lat(atomic),
        |r| r <= 1.5,
    );
    t.line(
        "blocking latency 8B within 1.2x a raw futex wake (receiver asleep): shmproc_queue_woken",
        &lat(Who::QueueWoken.name()),
        &lat(futex),
        |r| r <= 1.2,
    );
    t.line(
        "blocking latency 8B within 1.2x a raw futex wake (back to back, get's spin catches it): shmproc_queue",
        &lat(ours_block),
        &lat(futex),
        |r| r <= 1.2,
    );
    let t64 = |who: &str| tput_key(who, 64, 1, 1);
    for ours in [ours_block, ours_busy] {
        t.line(
            &format!("64B 1->1 throughput at least 0.8x the minimal ring: {ours}"),
            &t64(ours),
            &t64(ring),
            |r| r >= 0.8,
        );
    }
    t.line(
        "64KiB 1->1 throughput in place (put_with/get_into) at least 0.9x the minimal ring: shmproc_queue_inplace",
        &tput_key(Who::QueueInPlace.name(), 65536, 1, 1),
        &tput_key(ring, 65536, 1, 1),
        |r| r >= 0.9,
    );
    let bq = Who::ByteQueue.name();
    t.line(
        "ByteQueue 64B 1->1 throughput within 1.5x the Queue's (at least 0.67x): shmproc_bytequeue",
        &t64(bq),
        &t64(ours_block),
        |r| r >= 1.0 / 1.5,
    );
    t.line(
        "ByteQueue 8B latency within 1.5x the blocking Queue's: shmproc_bytequeue",
        &lat(bq),
        &lat(ours_block),
        |r| r <= 1.5,
    );
    for (base, factor) in [(ipc, 10.0), (socket, 10.0), (PYTHON, 100.0)] {
        t.line(
            &format!("at least {factor:.0}x {base}, 64B 1->1 throughput: shmproc_queue"),
            &t64(ours_block),
            &t64(base),
            |r| r >= factor,
        );
        for ours in [ours_busy, ours_block] {
            t.line(
                &format!("at least {factor:.0}x {base}, 8B latency p50: {ours}"),
                &lat(base),
                &lat(ours),
                |r| r >= factor,
            );
        }
    }
    compare::smoke_note();
}
