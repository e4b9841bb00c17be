//! The examples, two ways: each scenario function in this process (its
//! report checked), and each example's binary as a child process (its
//! output checked). `cargo test` builds the examples into
//! `target/<profile>/examples/`, beside this binary's `deps/`; a binary
//! that is not there (`cargo test --test examples` builds none) is skipped
//! with a note.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmproc_examples::scenarios::{self, TUTORIAL_NUMBERS};
use shmproc_examples::tasks::{self, log_line, parse_log_line, primes_in_block};
use shmproc_examples::{Indent, Options};
use shmproc_testing::{Watchdog, leftovers_with_prefix, wait_until};

/// The bound on any one test (debug builds on 2 busy cores included).
const LIMIT: Duration = Duration::from_secs(240);

/// The tutorial's verdicts: 10000033 = 397 · 25189 and 10000081 = 7 · 13 ·
/// 109891.
const VERDICTS: [(u64, bool); 4] = [
    (10_000_019, true),
    (10_000_033, false),
    (10_000_079, true),
    (10_000_081, false),
];

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("the reports are UTF-8")
}

/// A log path of its own for each test, in the temporary directory.
fn temp_log(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "shmproc-examples-test-{}-{n}-{tag}.log",
        std::process::id()
    ))
}

/// Checks a log file independently of the scenario: `workers × lines`
/// lines, each whole and each once.
fn check_log_file(path: &Path, workers: u64, lines: u64) {
    let text = std::fs::read_to_string(path).expect("the log file exists");
    assert!(text.ends_with('\n'), "the last line is whole");
    let mut seen = BTreeSet::new();
    for (k, line) in text.lines().enumerate() {
        let (w, i) = parse_log_line(line)
            .unwrap_or_else(|| panic!("line {} cut or interleaved: {line:?}", k + 1));
        assert!(w < workers && i < lines, "line {}: {line:?}", k + 1);
        assert!(seen.insert((w, i)), "line {} repeated: {line:?}", k + 1);
    }
    assert_eq!(seen.len() as u64, workers * lines, "every line present");
}

// ------------------------------------------------------------ in process

#[test]
fn options_parse_values_flags_and_reject_unknown_names() {
    let o = Options::parse(
        [
            "--size",
            "1_000",
            "--fast",
            "--log=/tmp/a_b.log",
            "--workers",
            "3",
        ],
        &["size", "fast", "log", "workers"],
    )
    .expect("valid");
    assert_eq!(o.get("size", 0usize), Ok(1000));
    assert!(o.flag("fast"));
    assert_eq!(o.value("log"), Some("/tmp/a_b.log"));
    assert_eq!(o.get("log", String::new()).as_deref(), Ok("/tmp/a_b.log"));
    assert_eq!(o.get("workers", 0usize), Ok(3));
    assert_eq!(o.get("absent", 7u32), Ok(7));
    assert!(o.get::<u32>("fast", 0).is_err(), "a flag has no value");
    assert!(Options::parse(["--bogus"], &["size"]).is_err());
    assert!(Options::parse(["size"], &["size"]).is_err());
    assert!(
        Options::parse(["--size", "x"], &["size"])
            .expect("parses")
            .get::<u32>("size", 0)
            .is_err()
    );
}

#[test]
fn indent_prefixes_every_non_empty_line() {
    let mut out = Indent::new(Vec::new(), "  ");
    write!(out, "a\n\nb").expect("vec");
    writeln!(out, "c").expect("vec");
    writeln!(out, "d").expect("vec");
    assert_eq!(text(out.into_inner()), "  a\n\n  bc\n  d\n");
}

#[test]
fn log_lines_round_trip_and_damaged_ones_are_caught() {
    let a = log_line(3, 1234, 17, 100);
    let b = log_line(4, 1235, 18, 100);
    assert_eq!(parse_log_line(&a), Some((3, 17)));
    assert_eq!(parse_log_line(&b), Some((4, 18)));
    let (a1, a2) = a.split_at(a.len() / 2);
    let (b1, b2) = b.split_at(b.len() / 2);
    for bad in [
        a1.to_owned(),
        format!("{a1}{b2}"),
        format!("{b1}{a2}"),
        format!("{a1}{b}{a2}"),
        format!("{a}{b}"),
        a.replace("17", "18"),
        String::new(),
    ] {
        assert_eq!(parse_log_line(&bad), None, "{bad:?}");
    }
}

#[test]
fn process_basic_joins_both_workers() {
    let _w = Watchdog::named(LIMIT, "process_basic");
    let mut out = Vec::new();
    let report = scenarios::process_basic(&mut out, 0.02, "").expect("runs");
    let text = text(out);
    assert!(text.starts_with("All processes completed"), "{text}");
    assert_eq!(report.delays, [40, 60].map(Duration::from_millis));
    // A lower bound only: the longer sleep.
    assert!(report.elapsed >= report.delays[1], "{report:?}");
    let mut out = Vec::new();
    assert!(scenarios::process_basic(&mut out, -1.0, "").is_err());
    assert!(scenarios::process_basic(&mut out, f64::NAN, "").is_err());
}

#[test]
fn pool_primes_gives_the_tutorials_verdicts() {
    let _w = Watchdog::named(LIMIT, "pool_primes");
    let mut out = Vec::new();
    let report = scenarios::pool_primes(&mut out, 2).expect("runs");
    assert_eq!(report.verdicts, VERDICTS);
    assert_eq!(report.cpu_count, shmproc::cpu_count());
    let text = text(out);
    assert!(
        text.starts_with(&format!("CPU cores available: {}\n", report.cpu_count)),
        "{text}"
    );
    for (n, p) in VERDICTS {
        assert!(text.contains(&format!("\n{n} prime? {p}\n")), "{text}");
    }
    assert!(text.contains("Completed in "), "{text}");
    assert_eq!(
        TUTORIAL_NUMBERS.map(tasks::is_prime),
        VERDICTS.map(|(_, p)| p)
    );
}

#[test]
fn queue_squares_reads_every_pair_until_the_sentinel() {
    let _w = Watchdog::named(LIMIT, "queue_squares");
    let mut out = Vec::new();
    let pairs = scenarios::queue_squares(&mut out, &[1, 2, 3, 4, 5]).expect("runs");
    assert_eq!(pairs, [(1, 1), (2, 4), (3, 9), (4, 16), (5, 25)]);
    assert_eq!(
        text(out),
        "1 squared is 1\n2 squared is 4\n3 squared is 9\n4 squared is 16\n5 squared is 25\n\
         Done reading from queue\n"
    );
    // 0 is a number like any other (the sentinel is None), and far more
    // numbers than the queue holds at once.
    let numbers: Vec<u64> = (0..1000).chain([1 << 31]).collect();
    let pairs = scenarios::queue_squares(&mut Vec::new(), &numbers).expect("runs");
    let expected: Vec<(u64, u64)> = numbers.iter().map(|&n| (n, n * n)).collect();
    assert_eq!(pairs, expected);
    assert_eq!(
        scenarios::queue_squares(&mut Vec::new(), &[]).expect("runs"),
        []
    );
}

#[test]
fn compare_sequential_pool_agrees_with_the_loop() {
    let _w = Watchdog::named(LIMIT, "compare_sequential_pool");
    let start = 1_000_000_000_000;
    let mut out = Vec::new();
    let report = scenarios::compare_sequential_pool(&mut out, start, 300, 2).expect("runs");
    let primes = (start..start + 300).filter(|&n| tasks::is_prime(n)).count();
    assert_eq!(report.primes, primes);
    let text = text(out);
    for row in ["sequential (a for loop):", "Pool::map:", "Pool::map_into"] {
        assert!(text.contains(row), "{row:?} missing: {text}");
    }
    assert_eq!(
        text.matches(&format!(" {primes} primes in ")).count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches("speed-up").count(), 2, "{text}");
    assert!(scenarios::compare_sequential_pool(&mut Vec::new(), u64::MAX - 5, 10, 2).is_err());
}

#[test]
fn queue_logging_writes_every_line_whole() {
    let _w = Watchdog::named(LIMIT, "queue_logging");
    let path = temp_log("inproc");
    let mut out = Vec::new();
    let result = scenarios::queue_logging(&mut out, &path, 3, 400);
    let checked = std::panic::catch_unwind(|| check_log_file(&path, 3, 400));
    let _ = std::fs::remove_file(&path);
    let report = result.expect("runs");
    checked.expect("the log file holds every line, whole");
    assert_eq!(report.lines, 1200);
    assert_eq!(report.path, path);
    let text = text(out);
    assert!(
        text.contains("1200 lines from 3 worker processes"),
        "{text}"
    );
    assert!(text.contains("none cut or interleaved"), "{text}");
}

#[test]
fn imap_progress_yields_every_result_in_order() {
    let _w = Watchdog::named(LIMIT, "imap_progress");
    let mut out = Vec::new();
    let report = scenarios::imap_progress(&mut out, 40, 2, false).expect("runs");
    assert_eq!(report.items, 40);
    assert!(report.bar_hidden);
    let primes: u64 = (0..40).map(|b| u64::from(primes_in_block(b).1)).sum();
    assert_eq!(report.primes, primes);
    let text = text(out);
    assert!(
        text.starts_with(&format!("imap: 40 of 40 results in order, {primes} primes")),
        "{text}"
    );
}

#[test]
fn shared_array_kernel_matches_the_sequential_result() {
    let _w = Watchdog::named(LIMIT, "shared_array_kernel");
    let mut out = Vec::new();
    // Not a multiple of any chunk size.
    let report = scenarios::shared_array_kernel(&mut out, 100_003, 2, 2).expect("runs");
    assert_eq!(report.bytes, 800_024);
    assert!(report.best <= report.first);
    assert!(report.best_gib_s() > 0.0);
    let text = text(out);
    assert!(text.contains("bit for bit"), "{text}");
    assert_eq!(text.matches("GiB/s").count(), 3, "{text}");
    assert!(scenarios::shared_array_kernel(&mut Vec::new(), 0, 2, 1).is_err());
}

#[test]
fn manager_results_every_key_once_no_update_lost() {
    let _w = Watchdog::named(LIMIT, "manager_results");
    let mut out = Vec::new();
    let report = scenarios::manager_results(&mut out, 3, 90).expect("runs");
    assert_eq!(report.keys, 90);
    assert_eq!(report.total, 300);
    // 10,000,019 is the first prime from 10,000,000; 90 numbers hold a few.
    assert!(report.primes > 0 && report.primes < 90, "{report:?}");
    let text = text(out);
    assert!(
        text.contains("every key present exactly once: true"),
        "{text}"
    );
    assert!(text.contains("nothing is left behind"), "{text}");
}

// ------------------------------------------------------------ the binaries

/// An example's binary as `cargo test` built it, or `None` (with a note)
/// when it is not there.
fn example_exe(name: &str) -> Option<PathBuf> {
    let me = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/NAME
    let profile_dir = me.parent().and_then(Path::parent)?;
    let exe = profile_dir.join("examples").join(name);
    if exe.is_file() {
        Some(exe)
    } else {
        eprintln!(
            "note: {} not built (cargo test builds it; --test examples alone does not): skipped",
            exe.display()
        );
        None
    }
}

/// What an example printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs example `name` with `args` as a child process, at most [`LIMIT`]
/// (killed and failed after that), and checks it left nothing in
/// `/dev/shm`. `None` when the binary is not built.
fn run_example(name: &str, args: &[&str]) -> Option<Run> {
    let exe = example_exe(name)?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let pid = child.id();
    // Drain both pipes while the child runs, so it never blocks on a full one.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).expect("UTF-8 output");
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let mut status = None;
    let ended = wait_until(LIMIT, || {
        status = child.try_wait().expect("wait for the example");
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{name} {args:?} still running after {LIMIT:?}: killed");
    }
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    let left = leftovers_with_prefix(&format!("shmproc-{pid:x}-"));
    assert!(
        left.is_empty(),
        "{name} left segments in /dev/shm: {left:?}"
    );
    Some(run)
}

/// As [`run_example`], asserting exit code 0.
fn run_ok(name: &str, args: &[&str]) -> Option<String> {
    let run = run_example(name, args)?;
    assert_eq!(run.code, Some(0), "{name} {args:?} failed: {run:?}");
    Some(run.stdout)
}

#[test]
fn process_basic_binary() {
    let _w = Watchdog::named(LIMIT, "process_basic binary");
    let Some(out) = run_ok("process_basic", &["--fast"]) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    for line in [
        "[Process-1] starting work",
        "[Process-2] starting work",
        "[Process-1] finished after 0.02 seconds",
        "[Process-2] finished after 0.03 seconds",
    ] {
        assert!(lines.contains(&line), "{line:?} missing: {out}");
    }
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[4].starts_with("All processes completed"),
        "the last line: {out}"
    );
    let Some(out) = run_ok("process_basic", &["--scale", "0.005"]) else {
        return;
    };
    assert!(
        out.contains("[Process-2] finished after 0.015 seconds"),
        "{out}"
    );
}

#[test]
fn pool_primes_binary() {
    let _w = Watchdog::named(LIMIT, "pool_primes binary");
    let Some(out) = run_ok("pool_primes", &["--workers", "2"]) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("CPU cores available: {}", shmproc::cpu_count())
    );
    for (k, (n, p)) in VERDICTS.into_iter().enumerate() {
        assert_eq!(lines[k + 1], format!("{n} prime? {p}"), "{out}");
    }
    assert!(lines[5].starts_with("Completed in "), "{out}");
}

#[test]
fn queue_squares_binary() {
    let _w = Watchdog::named(LIMIT, "queue_squares binary");
    let Some(out) = run_ok("queue_squares", &[]) else {
        return;
    };
    assert_eq!(
        out,
        "1 squared is 1\n2 squared is 4\n3 squared is 9\n4 squared is 16\n5 squared is 25\n\
         Done reading from queue\n"
    );
    let Some(out) = run_ok("queue_squares", &["--count", "100"]) else {
        return;
    };
    let expected: String = (1..=100u64)
        .map(|n| format!("{n} squared is {}\n", n * n))
        .collect();
    assert_eq!(out, expected + "Done reading from queue\n");
}

#[test]
fn compare_sequential_pool_binary() {
    let _w = Watchdog::named(LIMIT, "compare_sequential_pool binary");
    let Some(out) = run_ok(
        "compare_sequential_pool",
        &["--size", "200", "--workers", "2"],
    ) else {
        return;
    };
    let start = 1_000_000_000_000u64;
    let primes = (start..start + 200).filter(|&n| tasks::is_prime(n)).count();
    assert!(out.contains("is_prime over 200 numbers"), "{out}");
    assert_eq!(
        out.matches(&format!(" {primes} primes in ")).count(),
        3,
        "{out}"
    );
    assert_eq!(out.matches("speed-up").count(), 2, "{out}");
}

#[test]
fn queue_logging_binary() {
    let _w = Watchdog::named(LIMIT, "queue_logging binary");
    let path = temp_log("binary");
    let path_str = path.to_str().expect("UTF-8 temp dir");
    let run = run_example(
        "queue_logging",
        &["--log", path_str, "--workers", "3", "--lines", "500"],
    );
    let checked = run
        .as_ref()
        .map(|_| std::panic::catch_unwind(|| check_log_file(&path, 3, 500)));
    let _ = std::fs::remove_file(&path);
    let Some(run) = run else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run:?}");
    if let Some(checked) = checked {
        checked.expect("the log file holds every line, whole");
    }
    assert!(
        run.stdout.starts_with(&format!("{path_str} begins:\n")),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("1500 lines from 3 worker processes"),
        "{run:?}"
    );
}

#[test]
fn imap_progress_binary_without_a_terminal() {
    let _w = Watchdog::named(LIMIT, "imap_progress binary");
    let Some(run) = run_example("imap_progress", &["--len", "30", "--workers", "2"]) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run:?}");
    let primes: u64 = (0..30).map(|b| u64::from(primes_in_block(b).1)).sum();
    assert!(
        run.stdout
            .starts_with(&format!("imap: 30 of 30 results in order, {primes} primes")),
        "{run:?}"
    );
    assert!(run.stdout.contains("progress bar hidden"), "{run:?}");
    // stderr is a pipe, not a terminal: indicatif draws nothing there.
    assert_eq!(run.stderr, "", "{run:?}");
}

#[test]
fn shared_array_kernel_binary() {
    let _w = Watchdog::named(LIMIT, "shared_array_kernel binary");
    let Some(out) = run_ok(
        "shared_array_kernel",
        &["--size", "300000", "--rounds", "2", "--workers", "2"],
    ) else {
        return;
    };
    assert!(out.contains("over 300000 f32"), "{out}");
    assert!(
        out.contains("equal to the sequential result, bit for bit"),
        "{out}"
    );
    assert_eq!(out.matches("GiB/s").count(), 3, "{out}");
}

#[test]
fn multiprocessing_demo_binary_runs_every_scenario() {
    let _w = Watchdog::named(LIMIT, "multiprocessing_demo binary");
    let Some(out) = run_ok("multiprocessing_demo", &[]) else {
        return;
    };
    for expected in [
        "  [Process-1] starting work",
        "  [Process-2] finished after 0.3 seconds",
        "  All processes completed",
        "  5 squared is 25\n  Done reading from queue",
        "intact: true",
        "sent 21, received 42",
        "  10000019 prime? true\n  10000033 prime? false\n  10000079 prime? true\n  10000081 prime? false",
        "Pool::map_into, shared arrays:",
        "  imap: 300 of 300 results in order",
        "equal to the sequential result, bit for bit",
        "1000 lines from 4 worker processes",
        "none cut or interleaved",
        "Value (under its lock): 200000 of 200000",
        "400 results from 4 workers",
        "every key present exactly once: true",
        "shared total updated in place by 4 processes: 400 of 400",
        "the lock works normally",
        "the segment is gone: true",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    assert!(out.ends_with("\nDone.\n"), "{out}");
}

#[test]
fn examples_reject_unknown_options_and_print_usage() {
    let _w = Watchdog::named(LIMIT, "usage");
    let Some(run) = run_example("pool_primes", &["--bogus"]) else {
        return;
    };
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown option --bogus"), "{run:?}");
    assert!(run.stderr.contains("usage: pool_primes"), "{run:?}");
    let Some(run) = run_example("process_basic", &["--help"]) else {
        return;
    };
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("usage: process_basic"), "{run:?}");
}
