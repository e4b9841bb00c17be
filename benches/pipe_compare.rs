//! Issue 5 (Pipe and Connection): the comparison table. Every case is run
//! `reps` times (round-robin: each round runs every contestant once, so that
//! background load hits all alike), and the medians are printed with paired
//! ratios (the median over rounds of the per-round ratio) and a PASS/MISS
//! per target of the issue:
//! - busy-poll one-way latency (8 B) within 1.5x the atomic ping-pong floor;
//! - blocking one-way latency (8 B) within 1.2x a raw futex wake ping-pong;
//! - 1 MiB streaming at least 0.4x memcpy bandwidth with copy-in/copy-out
//!   (`send_bytes` + `recv_bytes_into`) and 0.8x zero-copy (`reserve` /
//!   `commit` + `recv_bytes_ref`);
//! - at least 5x a Unix socket (SOCK_STREAM) at 64 KiB.
//!
//! Baselines in the same run: pipe(2), a Unix socket pair, ipc-channel,
//! Python's `multiprocessing.Pipe` (`python/pipe.py`) and memcpy.
//! A MISS is reported, never a failure. `cargo test --benches` runs one tiny
//! round as a smoke test.

use shmproc_benches::compare::{self, Rounds, Samples, Targets, fmt_ratio};
use shmproc_benches::harness::{self, size_label};
use shmproc_benches::pingpong::LAT_SIZES;
use shmproc_benches::pipe::{self, Lat, STREAM_SIZES, Tput};
use shmproc_benches::sizes::LinkSizes;

const PYTHON: &str = "python_mp_pipe";

fn lat_key(who: &str, size: usize, q: &str) -> String {
    format!("lat/{size}/{who}/{q}")
}

/// Messages per second.
fn tput_key(who: &str, size: usize) -> String {
    format!("tput/{size}/{who}")
}

fn one_round(s: &mut Samples, sz: &LinkSizes) {
    for size in LAT_SIZES {
        for who in Lat::ALL {
            let (rtts, batch) = sz.counts(who.is_busy(), who.gap_ns());
            if let Some(l) = pipe::latency(who, size, rtts, batch, sz) {
                s.push(lat_key(who.name(), size, "p50"), l.quantile(0.5));
                s.push(lat_key(who.name(), size, "p99"), l.quantile(0.99));
                // Both processes' CPU per one-way message (2 per round trip).
                let cpu = harness::last_run_cpu_ns() as f64 / (2 * rtts) as f64;
                s.push(lat_key(who.name(), size, "cpu"), cpu);
            }
        }
    }
    for size in STREAM_SIZES {
        for who in Tput::ALL {
            let n = sz.messages(who.is_syscall(), size);
            let t = pipe::throughput(who, size, n, sz);
            s.push(tput_key(who.name(), size), n as f64 / t.as_secs_f64());
        }
    }
}

fn main() {
    let sz = LinkSizes::pipe();
    compare::banner("pipe_compare", &compare::rounds_note(sz.reps));
    println!(
        "processes forked and {}; latency: ping-pong over one duplex Pipe::new() (1 MiB rings), one-way = half a round trip, \
         busy-poll {} round trips timed {} at a time, blocking {} timed one at a time; \
         futex_pingpong and shmproc_pipe_woken: {} round trips, each after a {} us pause (untimed) so the receiver sleeps",
        harness::pinning(),
        sz.busy_rtts,
        sz.busy_batch,
        sz.block_rtts,
        sz.woken_rtts,
        Lat::FutexFloor.gap_ns() / 1000
    );
    println!(
        "streams, one way: shmproc_pipe_copy (send_bytes + recv_bytes_into) and shmproc_pipe_zerocopy (reserve, \
         copy_from_slice into the reservation, commit + recv_bytes_ref, only the sequence number read) over a \
         simplex pipe with rings of max(4 MiB, 2 messages); shmproc_pipe_default: Pipe::new() (1 MiB rings), copy; \
         os_pipe: pipe(2), unix_stream: socketpair(AF_UNIX, SOCK_STREAM), write_all + read_exact; \
         ipc_channel: bytes_channel (a Vec per message); memcpy: copy_from_slice, one process; \
         page-aligned buffers everywhere; every message checked (count and sequence sum)"
    );

    let mut python_skip = None;
    let all = Rounds::for_this_run(sz.reps).run(|s| {
        one_round(s, &sz);
        if python_skip.is_none() {
            match shmproc_benches::python::pipe(&sz) {
                Ok(r) => {
                    for (size, p50, p99) in r.latency {
                        s.push(lat_key(PYTHON, size, "p50"), p50);
                        s.push(lat_key(PYTHON, size, "p99"), p99);
                    }
                    for (size, rate) in r.stream {
                        s.push(tput_key(PYTHON, size), rate);
                    }
                }
                Err(why) => python_skip = Some(why),
            }
        }
    });
    let (shared, cross) = (all.shared_l3(), all.cross_l3());
    let s = compare::table_samples(&all, &shared);

    let spin = Lat::PipeSpin.name();
    let block = Lat::PipeBlock.name();
    let woken = Lat::PipeWoken.name();
    let atomic = Lat::AtomicFloor.name();
    let futex = Lat::FutexFloor.name();

    // ---- latency
    let lat_rows: Vec<&str> = Lat::ALL.iter().map(|w| w.name()).chain([PYTHON]).collect();
    for size in LAT_SIZES {
        println!();
        println!(
            "One-way latency, {} (medians over rounds of each round's p50/p99; ratios: median of per-round p50 ratios, lower is faster)",
            size_label(size)
        );
        println!(
            "{:<20} {:>10} {:>10} {:>9} {:>9} {:>11} {:>13} {:>11} {:>11}",
            "case",
            "p50 ns",
            "p99 ns",
            "x atomic",
            "x futex",
            "x pipe_spin",
            "x shmproc_pipe",
            "cpu ns/msg",
            "cpu x futex"
        );
        for name in &lat_rows {
            let p50 = lat_key(name, size, "p50");
            let Some(m50) = s.median(&p50) else {
                continue;
            };
            let m99 = s.median(&lat_key(name, size, "p99")).unwrap_or(f64::NAN);
            // Against the 8-byte floors (the floors have no 4 KiB case).
            let vs = |base: &str| s.ratio(&p50, &lat_key(base, 8, "p50"));
            let ours = |o: &str| s.ratio(&p50, &lat_key(o, size, "p50"));
            let cpu_key = lat_key(name, size, "cpu");
            let cpu = s
                .median(&cpu_key)
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"));
            println!(
                "{:<20} {:>10.0} {:>10.0} {:>9} {:>9} {:>11} {:>13} {:>11} {:>11}",
                name,
                m50,
                m99,
                fmt_ratio(vs(atomic)),
                fmt_ratio(vs(futex)),
                fmt_ratio(ours(spin)),
                fmt_ratio(ours(block)),
                cpu,
                fmt_ratio(s.ratio(&cpu_key, &lat_key(futex, 8, "cpu"))),
            );
        }
    }
    println!(
        "  (\"x atomic\"/\"x futex\": this row's p50 over the 8B floor's; \"x pipe_spin\"/\"x shmproc_pipe\": \
         this row's p50 over ours: how many times faster ours is; \"cpu ns/msg\": user + system CPU of both processes per \
         one-way message, from fork to exit (getrusage of the reaped workers), waiting and the pause before each ping included; \
         \"cpu x futex\": over futex_pingpong's 8B figure)"
    );

    // ---- throughput
    let tput_rows: Vec<&str> = Tput::ALL.iter().map(|w| w.name()).chain([PYTHON]).collect();
    let copy = Tput::PipeCopy.name();
    let zc = Tput::PipeZeroCopy.name();
    let memcpy = Tput::Memcpy.name();
    let unix = Tput::UnixStream.name();
    println!();
    println!(
        "Streaming, one way (medians over rounds; ratios are medians of per-round ratios: \"x memcpy\" and \
         \"x unix\": this row over memcpy / unix_stream; \"copy x\": shmproc_pipe_copy over this row)"
    );
    println!(
        "{:<22} {:>7} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "case", "size", "M msgs/s", "GB/s", "x memcpy", "x unix", "copy x"
    );
    for size in STREAM_SIZES {
        for name in &tput_rows {
            let key = tput_key(name, size);
            let Some(rate) = s.median(&key) else {
                continue;
            };
            println!(
                "{:<22} {:>7} {:>11.4} {:>9.2} {:>9} {:>9} {:>9}",
                name,
                size_label(size),
                rate / 1e6,
                rate * size as f64 / 1e9,
                fmt_ratio(s.ratio(&key, &tput_key(memcpy, size))),
                fmt_ratio(s.ratio(&key, &tput_key(unix, size))),
                fmt_ratio(s.ratio(&tput_key(copy, size), &key)),
            );
        }
        println!();
    }
    if let Some(why) = &python_skip {
        println!("{PYTHON}: SKIPPED: {why}");
    }

    // ---- raw per-round samples of the cases the targets compare
    println!();
    println!("raw per-round samples, every round (8B latency p50 in ns; streams in GB/s):");
    all.print_placement();
    for who in [atomic, spin, Lat::PipeReadable.name(), futex, woken, block] {
        all.print_raw(&lat_key(who, 8, "p50"), 1.0);
    }
    for (size, who) in [
        (1 << 20, memcpy),
        (1 << 20, copy),
        (1 << 20, zc),
        (64 << 10, unix),
        (64 << 10, copy),
        (64 << 10, zc),
    ] {
        all.print_raw(&tput_key(who, size), 1e9 / size as f64);
    }

    // ---- targets
    println!();
    let t = Targets::new(&all, &shared, &cross);
    t.header(5);
    let lat = |who: &str| lat_key(who, 8, "p50");
    t.line(
        &format!("busy-poll latency 8B within 1.5x the atomic floor: {spin}"),
        &lat(spin),
        &lat(atomic),
        |r| r <= 1.5,
    );
    let readable = Lat::PipeReadable.name();
    println!(
        "  info busy-poll latency 8B spinning on readable() instead of poll(ZERO): {readable} {} the atomic floor",
        fmt_ratio(shared.ratio(&lat(readable), &lat(atomic)))
    );
    t.line(
        &format!("blocking latency 8B within 1.2x a raw futex wake (receiver asleep): {woken}"),
        &lat(woken),
        &lat(futex),
        |r| r <= 1.2,
    );
    t.line(
        &format!(
            "blocking latency 8B within 1.2x a raw futex wake (back to back, the receive's spin catches it): {block}"
        ),
        &lat(block),
        &lat(futex),
        |r| r <= 1.2,
    );
    let mib = 1 << 20;
    for (ours, factor) in [(copy, 0.4), (zc, 0.8)] {
        t.line(
            &format!("1MiB streaming at least {factor}x memcpy bandwidth: {ours}"),
            &tput_key(ours, mib),
            &tput_key(memcpy, mib),
            |r| r >= factor,
        );
    }
    let k64 = 64 << 10;
    for ours in [copy, zc] {
        t.line(
            &format!("64KiB streaming at least 5x a Unix socket (SOCK_STREAM): {ours}"),
            &tput_key(ours, k64),
            &tput_key(unix, k64),
            |r| r >= 5.0,
        );
    }
    compare::smoke_note();
}
