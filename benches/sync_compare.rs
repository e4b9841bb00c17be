//! Issue 3 (locks): the comparison table. Every case of `sync_lock` is run
//! `reps` times (11 under `cargo bench`, round-robin so that background load
//! hits all cases alike), and the medians are printed with their ratios and a
//! PASS/MISS per target of the issue:
//! - uncontended acquire+release within 1.2x a process-shared pthread mutex;
//! - two processes contending: at least as fast as the pthread mutex;
//! - at least 50x Python's `multiprocessing.Value` under `get_lock()`.
//!
//! A MISS is reported, never a failure. `cargo test --benches` runs one small
//! round (10k increments) as a smoke test.

use std::collections::BTreeMap;

use shmproc_benches::compare::{self, paired, verdict};
use shmproc_benches::harness::{self, median};
use shmproc_benches::sizes::SyncSizes;
use shmproc_benches::sync::{self, Case, CaseVisitor, names};

struct Samples {
    /// Uncontended ns per acquire+release, per case.
    uncontended: BTreeMap<&'static str, Vec<f64>>,
    /// Contended increments per second, per case.
    contended: BTreeMap<&'static str, Vec<f64>>,
    /// Contended: CPU (user + system, both processes) per increment, in ns.
    cpu: BTreeMap<&'static str, Vec<f64>>,
    sizes: SyncSizes,
}

impl CaseVisitor for Samples {
    fn visit<C: Case>(&mut self, case: &C) {
        let sizes = self.sizes;
        let ns = sync::uncontended_ns(case, sizes.uncontended_ops);
        self.uncontended.entry(case.name()).or_default().push(ns);
        let t = sync::run_contended(case, sizes.contended_per_proc);
        let rate = (2 * sizes.contended_per_proc) as f64 / t.as_secs_f64();
        self.contended.entry(case.name()).or_default().push(rate);
        let cpu = harness::last_run_cpu_ns() as f64 / (2 * sizes.contended_per_proc) as f64;
        self.cpu.entry(case.name()).or_default().push(cpu);
    }
}

const ORDER: [&str; 6] = [
    names::ATOMIC,
    names::PTHREAD,
    names::PTHREAD_ROBUST,
    names::RAW_SYNC,
    names::OURS,
    names::OURS_VALUE,
];

fn main() {
    let sizes = SyncSizes::for_this_run();
    compare::banner("sync_compare", &format!("{} reps", sizes.reps));
    println!(
        "contended: 2 processes x {} increments of a shared non-atomic u64 under the lock, {}; \
         uncontended: {} acquire+release pairs",
        sizes.contended_per_proc,
        harness::pinning(),
        sizes.uncontended_ops
    );

    let mut s = Samples {
        uncontended: BTreeMap::new(),
        contended: BTreeMap::new(),
        cpu: BTreeMap::new(),
        sizes,
    };
    let mut python = Vec::new();
    let mut python_skip = None;
    for rep in 0..sizes.reps {
        sync::each_case(&mut s);
        if python_skip.is_none() {
            match shmproc_benches::python::value_lock(sizes.python_per_proc) {
                Ok(rate) => python.push(rate),
                Err(why) => python_skip = Some(why),
            }
        }
        eprintln!("  round {}/{} done", rep + 1, sizes.reps);
    }

    let unc: BTreeMap<_, _> = s.uncontended.iter().map(|(k, v)| (*k, median(v))).collect();
    let con: BTreeMap<_, _> = s.contended.iter().map(|(k, v)| (*k, median(v))).collect();
    let py = if python.is_empty() {
        None
    } else {
        Some(median(&python))
    };
    let unc_ratio = |a: &str, b: &str| paired(&s.uncontended[a], &s.uncontended[b]);
    let con_ratio = |a: &str, b: &str| paired(&s.contended[a], &s.contended[b]);
    // Python ran once per round too (unless skipped), after the Rust cases.
    let py_ratio = |a: &str| (!python.is_empty()).then(|| paired(&s.contended[a], &python));

    println!();
    println!(
        "Uncontended acquire+release, single process (medians of {} rounds; ratio: median of per-round ratios, lower is faster)",
        sizes.reps
    );
    println!("{:<24} {:>9} {:>12}", "case", "ns/op", "vs pthread");
    for name in ORDER {
        println!(
            "{:<24} {:>9.2} {:>11.2}x",
            name,
            unc[name],
            unc_ratio(name, names::PTHREAD)
        );
    }

    println!();
    println!(
        "Contended, 2 processes x {} increments (medians of {} rounds; ratios: median of per-round ratios case / baseline, higher is faster; \
         cpu ns/incr: user + system CPU of both processes per increment, fork to exit, waiting included; \
         the pthread mutex is the futex-only waiter)",
        sizes.contended_per_proc, sizes.reps
    );
    println!(
        "{:<24} {:>10} {:>11} {:>12} {:>12} {:>10} {:>13} {:>11}",
        "case",
        "M incr/s",
        "vs pthread",
        "vs raw_sync",
        "vs atomic",
        "vs Python",
        "cpu ns/incr",
        "vs pthread"
    );
    for name in ORDER {
        let cpu = median(&s.cpu[name]);
        println!(
            "{:<24} {:>10.2} {:>10.2}x {:>11.2}x {:>11.2}x {:>10} {:>13.1} {:>10.2}x",
            name,
            con[name] / 1e6,
            con_ratio(name, names::PTHREAD),
            con_ratio(name, names::RAW_SYNC),
            con_ratio(name, names::ATOMIC),
            py_ratio(name).map_or("-".to_owned(), |x| format!("{x:.0}x")),
            cpu,
            paired(&s.cpu[name], &s.cpu[names::PTHREAD])
        );
    }
    match (py, &python_skip) {
        (Some(p), _) => println!(
            "{:<24} {:>10.3} {:>10.4}x {:>11.4}x {:>11.4}x {:>10}",
            "python_value_lock",
            p / 1e6,
            paired(&python, &s.contended[names::PTHREAD]),
            paired(&python, &s.contended[names::RAW_SYNC]),
            paired(&python, &s.contended[names::ATOMIC]),
            "1x"
        ),
        (None, Some(why)) => println!("python_value_lock: SKIPPED: {why}"),
        (None, None) => {}
    }
    let samples = |v: &[f64], scale: f64| {
        v.iter()
            .map(|x| format!("{:.1}", x / scale))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!();
    println!("raw samples (M incr/s): ");
    for name in ORDER {
        println!("  {:<22} {}", name, samples(&s.contended[name], 1e6));
    }
    if !python.is_empty() {
        println!("  {:<22} {}", "python_value_lock", samples(&python, 1e3));
        println!(
            "  (python in k incr/s, {} per process)",
            sizes.python_per_proc
        );
    }

    println!();
    println!("Targets (issue 3), for shmproc_lock:");
    let u = unc_ratio(names::OURS, names::PTHREAD);
    println!(
        "  {} uncontended within 1.2x pthread mutex: {u:.2}x",
        verdict(u <= 1.2)
    );
    let c = con_ratio(names::OURS, names::PTHREAD);
    println!(
        "  {} contended at least as fast as pthread mutex: {c:.2}x",
        verdict(c >= 1.0)
    );
    match py_ratio(names::OURS) {
        Some(x) => {
            println!(
                "  {} at least 50x Python Value+get_lock(): {x:.0}x",
                verdict(x >= 50.0)
            );
        }
        None => println!(
            "  SKIP at least 50x Python: {}",
            python_skip.unwrap_or_default()
        ),
    }
    compare::smoke_note();
}
