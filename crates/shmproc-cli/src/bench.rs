//! `shmproc bench`: the comparison run (`shmproc_benches::suite`): shmproc's
//! Queue, Pipe, Value, Process start, Pool and Manager against their baselines in one
//! run of interleaved rounds, with a progress bar, a table of ratios, the
//! raw figures as JSON and a chart as SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use shmproc_benches::suite::{self, Better, Group, Options, Report};

/// A group of the comparison run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GroupArg {
    /// Queue against the atomic and futex floors, a minimal SPSC ring, a
    /// Unix socket, ipc-channel, crossbeam-channel and Python.
    Queue,
    /// Pipe against the floors, pipe(2), a Unix stream socket, ipc-channel,
    /// memcpy and Python.
    Pipe,
    /// Lock and Value under contention against pthread, raw_sync, the
    /// atomic floor and Python.
    Value,
    /// Process start + join per start method against fork + waitpid.
    Process,
    /// Pool against sequential code, a static split, the futex floor and
    /// Python.
    Pool,
    /// Manager dict set/get round trips and connect + handshake, local and
    /// over TCP, against a Pipe round trip, a TCP echo and Python.
    Manager,
}

impl GroupArg {
    fn group(self) -> Group {
        match self {
            GroupArg::Queue => Group::Queue,
            GroupArg::Pipe => Group::Pipe,
            GroupArg::Value => Group::Value,
            GroupArg::Process => Group::Process,
            GroupArg::Pool => Group::Pool,
            GroupArg::Manager => Group::Manager,
        }
    }
}

/// What `shmproc bench` was asked.
#[derive(Debug)]
pub(crate) struct BenchArgs {
    pub(crate) list: bool,
    pub(crate) quick: bool,
    pub(crate) json: Option<PathBuf>,
    pub(crate) plot: Option<PathBuf>,
    pub(crate) no_python: bool,
    pub(crate) groups: Vec<GroupArg>,
}

/// Runs the comparison and reports it.
pub(crate) fn run(args: BenchArgs) -> ExitCode {
    if args.list {
        let mut out = String::new();
        for g in GroupArg::value_variants() {
            let v = g.to_possible_value();
            let name = v.as_ref().map(|v| v.get_name()).unwrap_or_default();
            let help = v
                .as_ref()
                .and_then(|v| v.get_help().map(ToString::to_string))
                .unwrap_or_default();
            let _ = writeln!(out, "{name:<8} {help}");
        }
        crate::emit(&out);
        return ExitCode::SUCCESS;
    }
    let groups: Vec<Group> = if args.groups.is_empty() {
        Group::ALL.to_vec()
    } else {
        let mut g: Vec<Group> = args.groups.iter().map(|g| g.group()).collect();
        g.sort();
        g.dedup();
        g
    };
    let opts = Options {
        quick: args.quick,
        groups,
        python: !args.no_python,
    };
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = suite::run(&opts, &mut |done, total, what| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.to_owned());
    });
    bar.finish_and_clear();
    crate::emit(&table(&report));
    let mut ok = true;
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, json(&report)) {
            eprintln!("shmproc bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot(&report, path) {
            eprintln!("shmproc bench: cannot draw {}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The terminal report: the machine, each case's medians, and the ratios.
fn table(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "shmproc bench ({}, {} rounds, {:.0} s): {} CPUs, kernel {}, loadavg {} -> {}; {}",
        if r.quick { "quick" } else { "full" },
        r.rounds,
        r.elapsed.as_secs_f64(),
        m.cpus,
        m.kernel,
        m.loadavg_before,
        m.loadavg_after,
        m.pinning
    );
    let probes: Vec<String> = m.placement_ns.iter().map(|p| format!("{p:.0}")).collect();
    let shared = m
        .placement_ns
        .iter()
        .filter(|&&p| p <= shmproc_benches::compare::SHARED_L3_MAX_NS)
        .count();
    let _ = writeln!(
        out,
        "Placement probe before each round (atomic ping-pong, one way, ns): {} ({shared} of {} rounds with the two CPUs on a shared L3)",
        probes.join(" "),
        m.placement_ns.len()
    );
    let _ = writeln!(
        out,
        "Medians over the rounds; a ratio is the median of per-round ratios, \"x better\" \
         (above 1: shmproc is faster). Compare ratios, not absolute figures, between machines."
    );
    let mut last = (String::new(), String::new());
    for x in &r.measurements {
        if (x.group.to_owned(), x.case.clone()) != last {
            let _ = writeln!(
                out,
                "\n{} / {} ({}, {} is better)",
                x.group,
                x.case,
                x.unit,
                if x.better == Better::Lower {
                    "lower"
                } else {
                    "higher"
                }
            );
            last = (x.group.to_owned(), x.case.clone());
        }
        let _ = writeln!(
            out,
            "  {} {:<34} {:>12}",
            if x.ours { "*" } else { " " },
            x.contestant,
            fmt_value(x.median())
        );
    }
    let _ = writeln!(out, "\nratios (x better, shmproc against the baseline):");
    for q in &r.ratios {
        let _ = writeln!(
            out,
            "  {:>8.2}x  {} / {}: {} vs {}",
            q.advantage, q.group, q.case, q.ours, q.baseline
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    out
}

/// Every sample, median and ratio, and the machine, as JSON.
fn json(r: &Report) -> String {
    let m = &r.machine;
    let v = serde_json::json!({
        "quick": r.quick,
        "rounds": r.rounds,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "machine": {
            "cpus": m.cpus,
            "kernel": m.kernel,
            "loadavg_before": m.loadavg_before,
            "loadavg_after": m.loadavg_after,
            "pinning": m.pinning,
            "placement_probe_ns": m.placement_ns,
            "shared_l3_max_ns": shmproc_benches::compare::SHARED_L3_MAX_NS,
        },
        "measurements": r.measurements.iter().map(|x| serde_json::json!({
            "group": x.group,
            "case": x.case,
            "contestant": x.contestant,
            "ours": x.ours,
            "unit": x.unit,
            "better": if x.better == Better::Lower { "lower" } else { "higher" },
            "median": x.median(),
            "samples": x.samples,
        })).collect::<Vec<_>>(),
        "ratios": r.ratios.iter().map(|q| serde_json::json!({
            "group": q.group,
            "case": q.case,
            "ours": q.ours,
            "baseline": q.baseline,
            "advantage": q.advantage,
        })).collect::<Vec<_>>(),
        "skipped": r.skipped,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// A chart per case: each contestant's median as a horizontal bar, shmproc
/// in one colour, the baselines in another.
fn plot(r: &Report, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;

    // (title, unit, which is better, (contestant, median, ours))
    type Bars = Vec<(String, f64, bool)>;
    let mut cases: Vec<(String, String, Better, Bars)> = Vec::new();
    for x in &r.measurements {
        let title = format!("{} / {}", x.group, x.case);
        match cases.last_mut() {
            Some(c) if c.0 == title => c.3.push((x.contestant.clone(), x.median(), x.ours)),
            _ => cases.push((
                title,
                x.unit.to_owned(),
                x.better,
                vec![(x.contestant.clone(), x.median(), x.ours)],
            )),
        }
    }
    if cases.is_empty() {
        return Err("nothing was measured".into());
    }
    let rows_px: u32 = cases
        .iter()
        .map(|c| 60 + 26 * c.3.len() as u32)
        .sum::<u32>()
        .max(200);
    let root = SVGBackend::new(path, (1000, rows_px)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let heights: Vec<u32> = cases.iter().map(|c| 60 + 26 * c.3.len() as u32).collect();
    let mut area = root.clone();
    for (c, h) in cases.iter().zip(&heights) {
        let (top, rest) = area.split_vertically(*h);
        area = rest;
        let max = c.3.iter().map(|x| x.1).fold(0.0f64, f64::max).max(1e-12);
        let names: Vec<String> = c.3.iter().map(|x| x.0.clone()).collect();
        let caption = format!(
            "{} ({}, {} is better)",
            c.0,
            c.1,
            if c.2 == Better::Lower {
                "lower"
            } else {
                "higher"
            }
        );
        let min = c.3.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        let bars: Vec<(f64, bool)> = c.3.iter().map(|x| (x.1, x.2)).collect();
        // Latencies span floors of tens of ns and sockets of tens of µs: a
        // log scale when the bars span more than 50x.
        if min > 0.0 && max / min > 50.0 {
            let x = (min / 2.0..max * 2.0).log_scale();
            bar_chart(&top, &caption, x, min / 2.0, &names, &bars)?;
        } else {
            bar_chart(&top, &caption, 0.0..max * 1.15, 0.0, &names, &bars)?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One case's horizontal bars on `x` (linear or logarithmic), from `base`.
fn bar_chart<X>(
    area: &plotters::drawing::DrawingArea<
        plotters::prelude::SVGBackend<'_>,
        plotters::coord::Shift,
    >,
    caption: &str,
    x: X,
    base: f64,
    names: &[String],
    bars: &[(f64, bool)],
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    use plotters::prelude::*;
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(260)
        .build_cartesian_2d(x, (0..n).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_label_formatter(&|v| fmt_value(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (v, ours))| {
            let color = if *ours {
                RGBColor(0x1f, 0x77, 0xb4)
            } else {
                RGBColor(0xaa, 0xaa, 0xaa)
            };
            let mut bar = Rectangle::new(
                [
                    (base, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            bar
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
