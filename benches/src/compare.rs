//! What the comparison mains (`sync_compare`, `queue_compare`,
//! `pipe_compare`) share: their banner, paired ratios and PASS/MISS verdict
//! lines, and for the queue and pipe ones per-round samples and the
//! **placement** of the two CPUs the contending processes are pinned to.
//!
//! # Placement
//! Under KVM the host decides where our two vCPUs run, and it moves them: in
//! some stretches they share an L3 (a cross-process atomic ping-pong takes
//! 30-95 ns one way), in others they sit on different L3 complexes (240-390
//! ns), and every cross-CPU figure moves with it (DESIGN.md, "Numbers to
//! beat"). DESIGN.md states the targets for two vCPUs sharing an L3. So each
//! round is bracketed by a short atomic ping-pong probe, a round counts as
//! *shared-L3* only when both probes say so, and the verdicts are taken over
//! those rounds; rounds are added (up to a cap) until enough of them are
//! shared-L3. The all-rounds and cross-L3 figures are printed beside every
//! verdict, so nothing measured is hidden.

use std::collections::BTreeMap;

use crate::harness::median;
use crate::queue::{self, Who};
use crate::sizes::{LinkSizes, full_run};

/// A one-way atomic ping-pong p50 at or below this (ns) means the two CPUs
/// share an L3; above it, they do not (observed: 30-95 ns against 240-390 ns).
pub const SHARED_L3_MAX_NS: f64 = 160.0;

/// Round trips of one placement probe (a few milliseconds).
const PROBE_RTTS: u64 = 20_000;

// ---- banner, ratios, verdicts ---------------------------------------------------------

/// Prints a comparison's first line: `<bench>: <full|smoke> run, <rounds>,
/// <n> CPUs, loadavg <1 5 15 min>`.
pub fn banner(bench: &str, rounds: &str) {
    let mode = if full_run() {
        "full"
    } else {
        "smoke (cargo test --benches)"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{bench}: {mode} run, {rounds}, {} CPUs, loadavg {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The rounds part of the banner of a comparison run by [`Rounds`].
pub fn rounds_note(reps: usize) -> String {
    format!("at least {reps} rounds (more, up to twice as many, until most are shared-L3 rounds)")
}

/// After the verdicts of a smoke run: they mean nothing.
pub fn smoke_note() {
    if !full_run() {
        println!("  (smoke run: sizes too small for the verdicts to mean anything)");
    }
}

/// The median over rounds of `a[r] / b[r]`: each ratio pairs two cases
/// measured in the same round, under the same background load.
pub fn paired(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&ratios)
}

/// `PASS` or `MISS`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// A ratio for the tables: `123x`, `12.3x`, `1.23x`, or `-` when there is none.
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(x) if x >= 100.0 => format!("{x:.0}x"),
        Some(x) if x >= 10.0 => format!("{x:.1}x"),
        Some(x) => format!("{x:.2}x"),
        None => "-".to_owned(),
    }
}

// ---- placement ------------------------------------------------------------------------

/// The one-way p50 (ns) of a short cross-process atomic ping-pong between
/// the two pinned CPUs.
fn probe_floor() -> f64 {
    let sz = LinkSizes::queue();
    let rtts = if full_run() { PROBE_RTTS } else { 200 };
    queue::latency(Who::AtomicFloor, 8, rtts, sz.busy_batch, &sz)
        .map_or(f64::NAN, |l| l.quantile(0.5))
}

/// Where the two CPUs sat during one round: the probes before and after it.
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// The probe before the round (one-way p50, ns).
    before_ns: f64,
    /// The probe after it.
    after_ns: f64,
}

impl Placement {
    /// Both probes found the CPUs sharing an L3.
    fn shared_l3(&self) -> bool {
        self.before_ns <= SHARED_L3_MAX_NS && self.after_ns <= SHARED_L3_MAX_NS
    }
}

/// Per-round samples, by key, with each round's placement.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: BTreeMap<String, Vec<f64>>,
    rounds: Vec<Placement>,
}

impl Samples {
    /// Adds this round's value of `key`.
    pub fn push(&mut self, key: String, v: f64) {
        self.values.entry(key).or_default().push(v);
    }

    /// Every round's value of `key`.
    fn get(&self, key: &str) -> Option<&[f64]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// The median over rounds of `key`.
    pub fn median(&self, key: &str) -> Option<f64> {
        self.get(key).map(median)
    }

    /// Paired ratio `a / b`, when both were measured in every round.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.get(a)?, self.get(b)?);
        (!a.is_empty() && a.len() == b.len()).then(|| paired(a, b))
    }

    /// Each round's placement.
    fn rounds(&self) -> &[Placement] {
        &self.rounds
    }

    /// The rounds (by their placement) that `keep` accepts, every key
    /// restricted to them. Keys not measured in every round (Python, when
    /// it was skipped after a failure) are dropped.
    fn only(&self, keep: impl Fn(&Placement) -> bool) -> Self {
        let n = self.rounds.len();
        let mask: Vec<bool> = self.rounds.iter().map(keep).collect();
        let values = self
            .values
            .iter()
            .filter(|(_, v)| v.len() == n)
            .map(|(k, v)| {
                let kept = v
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m)
                    .map(|(x, _)| *x)
                    .collect();
                (k.clone(), kept)
            })
            .collect();
        let rounds = self
            .rounds
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(p, _)| *p)
            .collect();
        Self { values, rounds }
    }

    /// The shared-L3 rounds (what the targets are judged on).
    pub fn shared_l3(&self) -> Self {
        self.only(Placement::shared_l3)
    }

    /// The other rounds.
    pub fn cross_l3(&self) -> Self {
        self.only(|p| !p.shared_l3())
    }

    /// Prints the raw samples of `key` (divided by `scale`), one round after another.
    pub fn print_raw(&self, key: &str, scale: f64) {
        if let Some(v) = self.get(key) {
            let v: Vec<String> = v.iter().map(|x| format!("{:.3}", x / scale)).collect();
            println!("  {key:<40} {}", v.join(" "));
        }
    }

    /// The placement rows of the raw samples: each round's probes and its
    /// class (`S`: shared L3, `X`: not).
    pub fn print_placement(&self) {
        let row = |f: fn(&Placement) -> String| -> String {
            self.rounds.iter().map(f).collect::<Vec<_>>().join(" ")
        };
        println!(
            "  {:<40} {}",
            "placement probe before (ns)",
            row(|p| format!("{:.1}", p.before_ns))
        );
        println!(
            "  {:<40} {}",
            "placement probe after (ns)",
            row(|p| format!("{:.1}", p.after_ns))
        );
        println!(
            "  {:<40} {}",
            "placement (S shared L3, X not)",
            row(|p| if p.shared_l3() { "S" } else { "X" }.to_owned())
        );
    }
}

/// The samples the tables use: the shared-L3 rounds when there were any
/// (the placement the targets are stated for), else every round. Says
/// which, and how many rounds were shared-L3.
pub fn table_samples<'a>(all: &'a Samples, shared: &'a Samples) -> &'a Samples {
    let none = shared.rounds().is_empty();
    println!();
    println!(
        "{} of {} rounds had the two CPUs on a shared L3 (placement probes: a one-way atomic ping-pong p50 \
         at most {SHARED_L3_MAX_NS} ns before and after the round); the tables below are over {}",
        shared.rounds().len(),
        all.rounds().len(),
        if none { "every round" } else { "those rounds" }
    );
    if none { all } else { shared }
}

/// How many rounds to run: at least `min`, then more until `min_shared` of
/// them were shared-L3 rounds, never more than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// The fewest rounds.
    min: usize,
    /// The fewest shared-L3 rounds (while under `max`).
    min_shared: usize,
    /// The most rounds.
    max: usize,
}

impl Rounds {
    /// The plan of a full run with `reps` rounds at least, or of the smoke run.
    pub fn for_this_run(reps: usize) -> Self {
        if full_run() {
            Self {
                min: reps,
                min_shared: reps.div_ceil(2) + 1,
                max: 2 * reps,
            }
        } else {
            Self {
                min: reps,
                min_shared: 0,
                max: reps,
            }
        }
    }

    /// Runs `round` (which pushes one value per key) as planned, each
    /// bracketed by placement probes, and returns the samples.
    pub fn run(&self, mut round: impl FnMut(&mut Samples)) -> Samples {
        let started = std::time::Instant::now();
        let mut s = Samples::default();
        loop {
            let shared = s.rounds.iter().filter(|p| p.shared_l3()).count();
            let n = s.rounds.len();
            if n >= self.max || (n >= self.min && shared >= self.min_shared) {
                return s;
            }
            let before_ns = probe_floor();
            round(&mut s);
            let after_ns = probe_floor();
            let p = Placement {
                before_ns,
                after_ns,
            };
            s.rounds.push(p);
            eprintln!(
                "  round {} done ({:.0} s): placement probes {before_ns:.0} / {after_ns:.0} ns, {}",
                n + 1,
                started.elapsed().as_secs_f64(),
                if p.shared_l3() {
                    "shared L3"
                } else {
                    "not a shared L3"
                }
            );
        }
    }
}

/// The verdict lines of the targets: judged on `shared` (the shared-L3
/// rounds), with the all-rounds and cross-L3 figures beside.
#[derive(Debug)]
pub struct Targets<'a> {
    all: &'a Samples,
    shared: &'a Samples,
    cross: &'a Samples,
}

impl<'a> Targets<'a> {
    /// Targets judged on `shared`, with `all` and `cross` beside.
    pub fn new(all: &'a Samples, shared: &'a Samples, cross: &'a Samples) -> Self {
        Self { all, shared, cross }
    }

    /// Prints one target line: `ratio(a, b)` against `ok`.
    pub fn line(&self, what: &str, a: &str, b: &str, ok: impl Fn(f64) -> bool) {
        let on_shared = self.shared.ratio(a, b);
        let tag = match on_shared {
            Some(r) => verdict(ok(r)),
            None if self.all.ratio(a, b).is_none() => "SKIP",
            None => "n/a ",
        };
        println!(
            "  {tag} {what} {} (all {} rounds: {}; cross-L3 rounds: {})",
            fmt_ratio(on_shared),
            self.all.rounds().len(),
            fmt_ratio(self.all.ratio(a, b)),
            fmt_ratio(self.cross.ratio(a, b)),
        );
    }

    /// The header of the target section.
    pub fn header(&self, issue: u32) {
        println!(
            "Targets (issue {issue}), paired ratios over the {} of {} rounds with the two CPUs on a shared L3 \
             (DESIGN.md states the targets for that placement; \"n/a\": no such round):",
            self.shared.rounds().len(),
            self.all.rounds().len()
        );
    }
}
