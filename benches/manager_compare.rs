//! Issue 19 (Manager): dict set and get round trips through shmproc's
//! Manager, locally (a shared-memory pipe per client) and over TCP loopback,
//! connect + handshake, against Python's `Manager().dict()` in the same run,
//! and against the floor of this design: a Pipe round trip with a child
//! process. Cases run round-robin; medians, ratios and a PASS/MISS per
//! target are printed:
//! - local dict set/get at least 10x Python's;
//! - TCP dict set/get at least 3x Python's remote manager;
//! - connect + handshake at least 5x Python's.
//!
//! Floors: a Pipe round trip with a child (local) and a blocking TCP
//! loopback echo (tcp): no design over these transports beats them.
//!
//! A MISS is reported, never a failure. Without `--bench` (`cargo test
//! --benches`) it runs a few operations as a smoke test and skips Python.

use std::time::{Duration, Instant};

use shmproc_channel::{Connection, Pipe};
use shmproc_manager::manager::spin::{SpinBudget, recv_spinning};
use shmproc_manager::{Client, Manager};
use shmproc_process::Process;

const KEY: &[u8] = b"benchmark-key";
const TIMEOUT: Duration = Duration::from_secs(60);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_op_us(ops: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..ops {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / ops as f64
}

/// The Manager's pipe sessions' wait (an adaptive poll, `pause` then
/// yielding, then a sleep), so that the floor and the dict round trip wait
/// alike.
fn recv_spin(c: &mut Connection, budget: &mut SpinBudget) -> Option<Vec<u8>> {
    match recv_spinning(c, budget) {
        Ok(Some(b)) => Some(b),
        Ok(None) => c.recv_bytes_timeout(TIMEOUT).ok(),
        Err(_) => None,
    }
}

fn echo((mut c,): (Connection,)) {
    let mut budget = SpinBudget::default();
    while let Some(b) = recv_spin(&mut c, &mut budget) {
        if c.send_bytes(&b).is_err() {
            break;
        }
    }
}

fn python(ops: usize, rounds: usize) -> Option<Vec<(String, f64)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/manager.py");
    let out = std::process::Command::new("python3")
        .args([script, &ops.to_string(), &rounds.to_string()])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let keys = [
        "set_local",
        "get_local",
        "connect_local",
        "set_tcp",
        "get_tcp",
        "connect_tcp",
    ];
    keys.iter()
        .map(|k| {
            let i = s.find(&format!("\"{k}\": "))? + k.len() + 4;
            let v = s[i..].split([',', '}']).next()?.trim().parse().ok()?;
            Some(((*k).to_owned(), v))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let (ops, rounds, connects) = if full { (2000, 7, 40) } else { (20, 2, 2) };

    let m = Manager::builder()
        .tcp("127.0.0.1:0".parse().expect("addr"))
        .authkey(KEY)
        .start()
        .expect("start manager");
    let local = m.address().clone();
    let tcp = m.tcp_address().expect("tcp").clone();
    let remote = Manager::connect(&tcp, KEY).expect("connect over tcp");
    let d_local = m.dict::<String, u64>().expect("dict");
    let d_tcp = remote.dict::<String, u64>().expect("dict over tcp");
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    d_local.set(&keys[0], &0).expect("set");
    d_tcp.set(&keys[0], &0).expect("set");

    let (mut pipe, theirs) = Pipe::new().expect("pipe");
    let echo_child = Process::new(echo, (theirs,));
    echo_child.start().expect("start echo");
    let msg = [7u8; 24];
    // The TCP floor: a blocking echo of 24 bytes over loopback (a thread;
    // `TCP_NODELAY` both ends), what any TCP request/reply costs here.
    let echo_l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo_a = echo_l.local_addr().expect("addr");
    let tcp_echo = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = echo_l.accept().expect("accept");
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 24];
        while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
    });
    let mut tcp_c = std::net::TcpStream::connect(echo_a).expect("connect");
    let _ = tcp_c.set_nodelay(true);

    let names = [
        "pipe round trip (floor)",
        "dict set, local",
        "dict get, local",
        "dict set, tcp",
        "dict get, tcp",
        "connect+handshake, local (pipe set up)",
        "connect+handshake, tcp",
        "Client::connect only (unix)",
        "tcp round trip (floor)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut budget = SpinBudget::default();
    for _ in 0..rounds {
        samples[0].push(per_op_us(ops, |_| {
            pipe.send_bytes(&msg).expect("send");
            recv_spin(&mut pipe, &mut budget).expect("echo");
        }));
        samples[1].push(per_op_us(ops, |i| {
            d_local.set(&keys[i % 64], &(i as u64)).expect("set");
        }));
        samples[2].push(per_op_us(ops, |i| {
            d_local.get(&keys[i % 64]).expect("get");
        }));
        samples[3].push(per_op_us(ops, |i| {
            d_tcp.set(&keys[i % 64], &(i as u64)).expect("set");
        }));
        samples[4].push(per_op_us(ops, |i| {
            d_tcp.get(&keys[i % 64]).expect("get");
        }));
        samples[5].push(per_op_us(connects, |_| {
            drop(Manager::connect(&local, KEY).expect("connect"));
        }));
        samples[6].push(per_op_us(connects, |_| {
            drop(Manager::connect(&tcp, KEY).expect("connect"));
        }));
        samples[7].push(per_op_us(connects, |_| {
            drop(Client::connect(&local, KEY).expect("connect"));
        }));
        samples[8].push(per_op_us(ops, |_| {
            use std::io::{Read, Write};
            let mut b = msg;
            tcp_c.write_all(&b).expect("send");
            tcp_c.read_exact(&mut b).expect("echo");
        }));
    }
    let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    println!(
        "manager_compare: {rounds} rounds of {ops} operations ({connects} connects), medians in µs"
    );
    for (n, v) in names.iter().zip(&med) {
        println!("  {n:<40} {v:>9.2}");
    }
    println!(
        "  dict set, local / pipe round trip     {:>9.2}x (the design's floor is 1x)",
        med[1] / med[0]
    );
    println!(
        "  dict set, tcp / tcp round trip       {:>9.2}x (the floor is 1x)",
        med[3] / med[8]
    );
    drop(tcp_c);
    let _ = tcp_echo.join();
    pipe.close();
    let _ = echo_child.join_timeout(TIMEOUT);
    drop((d_local, d_tcp, remote));
    m.shutdown().expect("shutdown");

    if !full {
        println!("smoke run (no --bench): Python skipped");
        return;
    }
    let Some(py) = python(ops, rounds.min(5)) else {
        println!("python3 not available: Python cases skipped");
        return;
    };
    let get = |k: &str| {
        py.iter()
            .find(|(n, _)| n == k)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    println!("python Manager().dict() (µs):");
    for (k, v) in &py {
        println!("  {k:<40} {v:>9.2}");
    }
    let verdict = |r: f64, t: f64| if r >= t { "PASS" } else { "MISS" };
    for (what, p, ours, target) in [
        ("dict set, local", get("set_local"), med[1], 10.0),
        ("dict get, local", get("get_local"), med[2], 10.0),
        ("dict set, tcp", get("set_tcp"), med[3], 3.0),
        ("dict get, tcp", get("get_tcp"), med[4], 3.0),
        (
            "connect+handshake, local",
            get("connect_local"),
            med[5],
            5.0,
        ),
        ("connect+handshake, tcp", get("connect_tcp"), med[6], 5.0),
    ] {
        let r = p / ours;
        println!(
            "  python / shmproc {what:<28} {r:>8.1}x (>= {target})  {}",
            verdict(r, target)
        );
    }
}
