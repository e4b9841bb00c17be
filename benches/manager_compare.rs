//! Issue 19 (Manager): dict set and get round trips through shmproc's
//! Manager, locally (a shared-memory pipe per client) and over TCP loopback,
//! connect + handshake, against Python's `Manager().dict()` in the same run,
//! and against the floor of this design: a Pipe round trip with a child
//! process. Cases run round-robin; medians, ratios and a PASS/MISS per
//! target are printed:
//! - local dict set/get at least 10x Python's;
//! - TCP dict set/get at least 3x Python's remote manager;
//! - connect + handshake at least 5x Python's (Python's `connect()` also
//!   makes one request: the `+1 call` row is the like-for-like one).
//!
//! Floors: a Pipe round trip with a child (local) and TCP loopback echoes
//! (tcp), blocking and polling without a bound: no design over these
//! transports beats them. Every row prints the CPU both processes used per
//! operation (the Manager's waits poll briefly before they sleep).
//!
//! A MISS is reported, never a failure. Without `--bench` (`cargo test
//! --benches`) it runs a few operations as a smoke test and skips Python.

use shmproc_benches::manager::Setup;
use shmproc_benches::python;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let (ops, rounds, connects) = if full { (2000, 7, 40) } else { (20, 2, 2) };

    let mut s = Setup::new().expect("set up");
    let names = [
        "pipe round trip (floor)",
        "dict set, local",
        "dict get, local",
        "dict set, tcp",
        "dict get, tcp",
        "connect+handshake, local (no call)",
        "connect+handshake, tcp",
        "Client::connect only (unix)",
        "tcp round trip (floor)",
        "connect+handshake+1 call, local",
        "tcp round trip, polling (floor)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        let mut run = |i: usize, t: f64, s: &shmproc_benches::manager::Setup| {
            samples[i].push(t);
            cpu[i].push(s.last_cpu_us());
        };
        let t = s.pipe_rtt(ops);
        run(0, t, &s);
        run(1, s.set(false, ops), &s);
        run(2, s.get(false, ops), &s);
        run(3, s.set(true, ops), &s);
        run(4, s.get(true, ops), &s);
        run(5, s.connect(false, connects), &s);
        run(6, s.connect(true, connects), &s);
        run(7, s.client_connect(connects), &s);
        let t = s.tcp_rtt(ops);
        run(8, t, &s);
        run(9, s.connect_and_call(false, connects), &s);
        let t = s.tcp_poll_rtt(ops);
        run(10, t, &s);
    }
    drop(s);
    let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let med_cpu: Vec<f64> = cpu.iter_mut().map(|s| median(s)).collect();
    println!(
        "manager_compare: {rounds} rounds of {ops} operations ({connects} connects), medians in µs; \
         cpu: both processes' CPU per operation, µs"
    );
    for ((n, v), c) in names.iter().zip(&med).zip(&med_cpu) {
        println!("  {n:<40} {v:>9.2}   cpu {c:>8.2}");
    }
    println!(
        "  dict set, local / pipe round trip     {:>9.2}x (the design's floor is 1x)",
        med[1] / med[0]
    );
    println!(
        "  dict set, tcp / tcp round trip       {:>9.2}x (the blocking floor)",
        med[3] / med[8]
    );
    println!(
        "  dict set, tcp / polling tcp round trip {:>7.2}x (the polling floor)",
        med[3] / med[10]
    );

    if !full {
        println!("smoke run (no --bench): Python skipped");
        return;
    }
    let py = match python::manager(ops, rounds.min(5)) {
        Ok(p) => p,
        Err(e) => {
            println!("Python cases skipped: {e}");
            return;
        }
    };
    println!("python Manager().dict() (µs):");
    let rows = [
        ("dict set, local", py.set_local, med[1], 10.0),
        ("dict get, local", py.get_local, med[2], 10.0),
        ("dict set, tcp", py.set_tcp, med[3], 3.0),
        ("dict get, tcp", py.get_tcp, med[4], 3.0),
        ("connect+handshake, local", py.connect_local, med[5], 5.0),
        (
            "connect+handshake+1 call, local",
            py.connect_local,
            med[9],
            5.0,
        ),
        ("connect+handshake, tcp", py.connect_tcp, med[6], 5.0),
    ];
    for (what, p, _, _) in rows {
        println!("  {what:<40} {p:>9.2}");
    }
    let verdict = |r: f64, t: f64| if r >= t { "PASS" } else { "MISS" };
    for (what, p, ours, target) in rows {
        let r = p / ours;
        println!(
            "  python / shmproc {what:<28} {r:>8.1}x (>= {target})  {}",
            verdict(r, target)
        );
    }
}
