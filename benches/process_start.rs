//! Issue 6 (processes): start+join of one process, per start method, against
//! raw `fork`+`waitpid`, `posix_spawn` of the same binary, and Python's three
//! start methods, all in the same run. Cases run round-robin so that
//! background load hits them alike; the medians are printed with their
//! ratios and a PASS/MISS per target:
//! - `fork` within 1.5x raw fork+waitpid;
//! - `spawn` within 1.5x posix_spawn of the same binary;
//! - `forkserver` no slower than `fork`;
//! - each at least 10x faster than Python's same method.
//!
//! A last, informational line times `fork` and `forkserver` back to back
//! (blocks of 20 starts), where the fork server has no idle time to fork its
//! next spare between starts.
//!
//! A MISS is reported, never a failure. Without `--bench` (`cargo test
//! --benches`) it runs a few rounds as a smoke test and skips Python.

use std::ffi::CString;
use std::time::Instant;

use shmproc_process::{StartMethod, get_context};
use shmproc_shm::os;

fn noop(_: ()) {}

/// A short idle gap between blocks of back-to-back starts, so that one
/// block's background work (the fork server forking its next spare) is not
/// timed in the next.
#[allow(clippy::disallowed_methods)] // Idle time between cases is the point, not a wait for an event.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(2));
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(unsafe_code)] // The raw fork+waitpid baseline.
fn raw_fork() {
    // SAFETY: the child only calls `_exit`, async-signal-safe.
    match unsafe { os::fork() }.expect("fork") {
        os::Forked::Child => os::exit_now(0),
        os::Forked::Parent(pid) => {
            os::wait(pid).expect("wait");
        }
    }
}

fn python(iterations: usize) -> Option<(f64, f64, f64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/process_start.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(iterations.to_string())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| -> Option<f64> {
        let i = s.find(&format!("\"{k}\": "))? + k.len() + 4;
        s[i..].split([',', '}']).next()?.trim().parse().ok()
    };
    Some((get("fork")?, get("spawn")?, get("forkserver")?))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--exit-now") {
        // The posix_spawn baseline's child.
        std::process::exit(0);
    }
    let full = args.iter().any(|a| a == "--bench");
    let rounds = if full { 200 } else { 5 };

    let env: Vec<CString> = std::env::vars()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    let env_refs: Vec<&std::ffi::CStr> = env.iter().map(CString::as_c_str).collect();
    let argv0 = CString::new(args[0].clone()).expect("argv0");
    let exit_now = c"--exit-now";
    let posix_spawn = || {
        let pid = os::spawn_exe(c"/proc/self/exe", &[&argv0, exit_now], &env_refs, &[])
            .expect("posix_spawn");
        os::wait(pid).expect("wait");
    };
    let fork = get_context(StartMethod::Fork);
    let spawn = get_context(StartMethod::Spawn);
    let server = get_context(StartMethod::ForkServer);
    shmproc_process::start_forkserver().expect("fork server");
    let run = |ctx: shmproc_process::Context| {
        let p = ctx.process(noop, ());
        let p = p;
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), 0);
    };
    // `--only <case> <n>`: one case, n times, then its median (for `perf`,
    // `strace -c`, A/B runs): raw, posix_spawn, fork, spawn or forkserver.
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let case = args.get(i + 1).map_or("fork", String::as_str);
        let n: usize = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        // Alternating with raw fork+waitpid, for a ratio taken side by side.
        let (mut t, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let t0 = Instant::now();
            match case {
                "raw" => raw_fork(),
                "posix_spawn" => posix_spawn(),
                "spawn" => run(spawn),
                "forkserver" => run(server),
                _ => run(fork),
            }
            t.push(t0.elapsed().as_secs_f64() * 1e3);
            let t0 = Instant::now();
            raw_fork();
            r.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if n > 0 {
            let (mt, mr) = (median(&mut t), median(&mut r));
            println!("{case} {mt:.4} raw {mr:.4} ratio {:.3}", mt / mr);
        }
        return;
    }

    let names = [
        "raw fork+waitpid",
        "posix_spawn self",
        "shmproc fork",
        "shmproc spawn",
        "shmproc forkserver",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Warm-up.
    for _ in 0..3 {
        raw_fork();
        posix_spawn();
        run(fork);
        run(spawn);
        run(server);
    }
    for _ in 0..rounds {
        for (i, s) in samples.iter_mut().enumerate() {
            let t = Instant::now();
            match i {
                0 => raw_fork(),
                1 => posix_spawn(),
                2 => run(fork),
                3 => run(spawn),
                _ => run(server),
            }
            s.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let m: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    println!("process start+join, medians of {rounds} rounds (ms):");
    for (n, v) in names.iter().zip(&m) {
        println!("  {n:<22} {v:>9.3}");
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let (raw, ps, f, sp, fs) = (m[0], m[1], m[2], m[3], m[4]);
    println!("targets:");
    println!(
        "  fork / raw fork+waitpid      {:>6.2}x (<= 1.5)  {}",
        f / raw,
        verdict(f / raw <= 1.5)
    );
    println!(
        "  spawn / posix_spawn          {:>6.2}x (<= 1.5)  {}",
        sp / ps,
        verdict(sp / ps <= 1.5)
    );
    println!(
        "  forkserver / fork            {:>6.2}x (<= 1.0)  {}",
        fs / f,
        verdict(fs <= f)
    );
    // Informational, not a target: starts back to back, with no idle time
    // for the fork server to fork its next spare in between (blocks of 20
    // consecutive starts, fork and forkserver alternating).
    let mut tight: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..(rounds / 20).max(1) {
        for (k, ctx) in [fork, server].into_iter().enumerate() {
            settle();
            for _ in 0..20 {
                let t = Instant::now();
                run(ctx);
                tight[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let (tf, ts) = (median(&mut tight[0]), median(&mut tight[1]));
    println!(
        "back to back (no idle between starts): fork {tf:.3}, forkserver {ts:.3} ({:.2}x fork)",
        ts / tf
    );
    if !full {
        return;
    }
    match python(30) {
        Some((pf, psp, pfs)) => {
            println!(
                "python multiprocessing (ms): fork {pf:.3}, spawn {psp:.3}, forkserver {pfs:.3}"
            );
            println!(
                "  python fork / shmproc fork            {:>7.1}x (>= 10)  {}",
                pf / f,
                verdict(pf / f >= 10.0)
            );
            println!(
                "  python spawn / shmproc spawn          {:>7.1}x (>= 10)  {}",
                psp / sp,
                verdict(psp / sp >= 10.0)
            );
            println!(
                "  python forkserver / shmproc forkserver {:>6.1}x (>= 10)  {}",
                pfs / fs,
                verdict(pfs / fs >= 10.0)
            );
        }
        None => println!("python3 not available: Python cases skipped"),
    }
}
