//! The tutorial's scenarios, each a function of its options that writes its
//! report to `out` and returns what it found (for the tests).
//!
//! Every wait has a bound: a child that dies or hangs makes the scenario
//! fail with a message, never hang.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressIterator, ProgressState, ProgressStyle};
use shmproc::{GetObjError, GetTimeoutError, Pool, Process, ShmSlice};

use crate::ExampleResult;
use crate::tasks::{
    AXPB_A, AXPB_B, BLOCK, BLOCK_BASE, LogQueue, SquareQueue, axpb, is_prime, is_prime_flag,
    log_worker, log_writer, parse_log_line, primes_in_block, square_worker, worker,
};

/// How long a scenario waits for a child or a message, beyond the work it
/// expects, before it reports a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The number of pool workers the examples use by default: one per CPU
/// this process may run on (Python's `Pool()` takes `cpu_count()`).
pub fn default_workers() -> usize {
    shmproc::available_cpu_count().max(1)
}

/// Joins every process by `deadline`. On a failure (a non-zero exit code,
/// a timeout) it kills those still running and reports the first failure.
///
/// # Errors
/// The first process that failed or outlived the deadline.
pub fn join_all(procs: &[Process], deadline: Instant) -> ExampleResult {
    let mut failure = None;
    for p in procs {
        match p.join_deadline(deadline) {
            Ok(0) => {}
            Ok(code) => {
                let why = p
                    .panic_message()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                failure = Some(format!("{} exited with code {code}{why}", p.name()));
                break;
            }
            Err(e) => {
                failure = Some(format!("{}: {e}", p.name()));
                break;
            }
        }
    }
    let Some(failure) = failure else {
        return Ok(());
    };
    for p in procs {
        if p.is_alive() {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
        }
    }
    Err(failure.into())
}

// ---------------------------------------------------------------- Process

/// What [`process_basic`] measured.
#[derive(Debug, Clone)]
pub struct ProcessBasicReport {
    /// From the first start to the last join.
    pub elapsed: Duration,
    /// The two workers' sleeps.
    pub delays: [Duration; 2],
}

/// The tutorial's `Process` program: two workers that sleep 2 s and 3 s
/// (times `scale`), started in parallel and joined, then "All processes
/// completed". The workers print their own lines (to this process's
/// stdout), each starting with `indent`.
///
/// # Errors
/// A `scale` that is negative or not finite; a worker that fails to start
/// or exit.
pub fn process_basic(
    out: &mut dyn Write,
    scale: f64,
    indent: &str,
) -> ExampleResult<ProcessBasicReport> {
    if !(scale.is_finite() && (0.0..=1000.0).contains(&scale)) {
        return Err(format!("the scale must be between 0 and 1000, not {scale}").into());
    }
    // Whole milliseconds: at most 3,000,000 (the scale is checked above).
    let ms = |secs: f64| (secs * scale * 1000.0).round() as u64;
    let delays = [ms(2.0), ms(3.0)].map(Duration::from_millis);
    let start = Instant::now();
    let p1 = Process::new(worker, ("Process-1", ms(2.0), indent));
    let p2 = Process::new(worker, ("Process-2", ms(3.0), indent));
    p1.start()?; // run in parallel
    p2.start()?;
    // p.join() in the tutorial; here with a deadline, like every wait.
    join_all(&[p1, p2], start + delays[1] + PATIENCE)?;
    let elapsed = start.elapsed();
    writeln!(
        out,
        "All processes completed in {elapsed:.2?} (one after the other they would take {:.2?})",
        delays[0] + delays[1]
    )?;
    Ok(ProcessBasicReport { elapsed, delays })
}

// ---------------------------------------------------------------- Pool.map

/// The tutorial's numbers for `is_prime`.
pub const TUTORIAL_NUMBERS: [u64; 4] = [10_000_019, 10_000_033, 10_000_079, 10_000_081];

/// What [`pool_primes`] found.
#[derive(Debug, Clone)]
pub struct PrimesReport {
    /// `cpu_count()`.
    pub cpu_count: usize,
    /// Each number and whether it is prime, in the input order.
    pub verdicts: Vec<(u64, bool)>,
    /// Starting the pool, the map, and ending the pool (Python's `with`
    /// block).
    pub elapsed: Duration,
}

/// The tutorial's `Pool.map(is_prime, numbers)` over its four large
/// numbers, with `workers` processes: the CPU count, each verdict and the
/// time taken.
///
/// # Errors
/// The pool's errors; verdicts that differ from a sequential check.
pub fn pool_primes(out: &mut dyn Write, workers: usize) -> ExampleResult<PrimesReport> {
    let cpu_count = shmproc::cpu_count();
    writeln!(out, "CPU cores available: {cpu_count}")?;
    let start = Instant::now();
    // Use a Pool to distribute work across processes (`with Pool() as
    // pool:` ends where the pool is dropped).
    let results = {
        let pool = Pool::new(workers)?;
        pool.map(is_prime, TUTORIAL_NUMBERS)?
    };
    let elapsed = start.elapsed();
    let verdicts: Vec<(u64, bool)> = TUTORIAL_NUMBERS.into_iter().zip(results).collect();
    for &(n, r) in &verdicts {
        writeln!(out, "{n} prime? {r}")?;
    }
    writeln!(
        out,
        "Completed in {:.3} seconds using shmproc ({workers} worker processes)",
        elapsed.as_secs_f64()
    )?;
    if verdicts.iter().any(|&(n, r)| r != is_prime(n)) {
        return Err("the pool's verdicts differ from a sequential check".into());
    }
    Ok(PrimesReport {
        cpu_count,
        verdicts,
        elapsed,
    })
}

// ---------------------------------------------------------------- Queue

/// The tutorial's `Queue` program: a child puts `(n, n²)` for each of
/// `numbers` and then the sentinel `None`; the parent reads until the
/// sentinel. Returns the pairs read, in order.
///
/// # Errors
/// The child failing to start, dying before its sentinel, or a wait
/// running out of patience.
pub fn queue_squares(out: &mut dyn Write, numbers: &[u64]) -> ExampleResult<Vec<(u64, u64)>> {
    let q = SquareQueue::new(16)?;
    let p = Process::new(square_worker, (numbers.to_vec(), &q));
    p.start()?;
    let mut pairs = Vec::with_capacity(numbers.len());
    let mut waited_since = Instant::now();
    loop {
        // q.get() in the tutorial; here in bounded waits that notice a
        // child that died before its sentinel.
        match q.get_timeout(Duration::from_millis(200)) {
            Ok(None) => break,
            Ok(Some((n, sq))) => {
                writeln!(out, "{n} squared is {sq}")?;
                pairs.push((n, sq));
                waited_since = Instant::now();
            }
            Err(GetObjError::Get(GetTimeoutError::Timeout)) => {
                if (!p.is_alive() && q.empty()) || waited_since.elapsed() > PATIENCE {
                    join_all(&[p], Instant::now())?;
                    return Err("the child ended without its sentinel".into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    join_all(&[p], Instant::now() + PATIENCE)?;
    writeln!(out, "Done reading from queue")?;
    Ok(pairs)
}

// ------------------------------------------------ sequential versus Pool

/// What [`compare_sequential_pool`] measured.
#[derive(Debug, Clone)]
pub struct CompareReport {
    /// How many of the numbers are prime (all three ways agree).
    pub primes: usize,
    /// The plain loop.
    pub sequential: Duration,
    /// `Pool::map` (items and results encoded, any serde type).
    pub pool_map: Duration,
    /// `Pool::map_into` over shared arrays (nothing copied).
    pub map_into: Duration,
}

/// The tutorial's exercise: `is_prime` over `size` numbers from `start`,
/// in a plain loop and with `Pool::map` (and `Pool::map_into` over shared
/// arrays), with `workers` processes: the times and the speed-ups.
///
/// # Errors
/// The pool's errors; a pool result that differs from the loop's.
pub fn compare_sequential_pool(
    out: &mut dyn Write,
    start: u64,
    size: usize,
    workers: usize,
) -> ExampleResult<CompareReport> {
    let end = start
        .checked_add(size as u64)
        .filter(|&e| e < 1 << 62)
        .ok_or("the numbers must stay below 2^62")?;
    let numbers: Vec<u64> = (start..end).collect();
    let t = Instant::now();
    let pool = Pool::new(workers)?;
    writeln!(
        out,
        "is_prime over {size} numbers from {start}; a pool of {workers} processes started in {:.2?}",
        t.elapsed()
    )?;

    let t = Instant::now();
    let sequential: Vec<bool> = numbers.iter().map(|&n| is_prime(n)).collect();
    let t_seq = t.elapsed();

    let t = Instant::now();
    let mapped = pool.map(is_prime, &numbers)?;
    let t_map = t.elapsed();

    let input = ShmSlice::from_slice(&numbers)?;
    let output = ShmSlice::new(numbers.len(), 0u8)?;
    let t = Instant::now();
    pool.map_into(is_prime_flag, &input, &output)?;
    let t_into = t.elapsed();
    let flags = output.to_vec();

    let primes = sequential.iter().filter(|&&p| p).count();
    let speed_up = |d: Duration| t_seq.as_secs_f64() / d.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "sequential (a for loop):        {primes} primes in {t_seq:.2?}"
    )?;
    writeln!(
        out,
        "Pool::map:                      {} primes in {t_map:.2?} (speed-up {:.2}x)",
        mapped.iter().filter(|&&p| p).count(),
        speed_up(t_map)
    )?;
    writeln!(
        out,
        "Pool::map_into, shared arrays:  {} primes in {t_into:.2?} (speed-up {:.2}x)",
        flags.iter().filter(|&&f| f == 1).count(),
        speed_up(t_into)
    )?;
    let flags_agree = flags.iter().zip(&sequential).all(|(&f, &p)| (f == 1) == p);
    if mapped != sequential || !flags_agree {
        return Err("the pool's results differ from the sequential loop's".into());
    }
    Ok(CompareReport {
        primes,
        sequential: t_seq,
        pool_map: t_map,
        map_into: t_into,
    })
}

// ---------------------------------------------------------------- logging

/// What [`queue_logging`] wrote and checked.
#[derive(Debug, Clone)]
pub struct LoggingReport {
    /// The log file.
    pub path: PathBuf,
    /// Lines in it (all expected ones, each once).
    pub lines: usize,
    /// How often a line of one worker follows a line of another.
    pub switches: u64,
    /// From the first start to the writer's exit.
    pub elapsed: Duration,
}

/// The default log file of `queue_logging`: in the temporary directory,
/// named after this process.
pub fn default_log_path() -> PathBuf {
    std::env::temp_dir().join(format!("shmproc-queue-logging-{}.log", std::process::id()))
}

/// The tutorial's exercise: `workers` processes send `lines` log lines
/// each through one Queue to a single writer process, which writes them to
/// the file at `path` (created or truncated). The file is then read back:
/// every line present once, none cut or interleaved with another.
///
/// # Errors
/// A path that is not UTF-8; a process failing or outliving its deadline;
/// a missing, repeated or damaged line.
pub fn queue_logging(
    out: &mut dyn Write,
    path: &Path,
    workers: u64,
    lines: u64,
) -> ExampleResult<LoggingReport> {
    let path_str = path.to_str().ok_or("the log path must be UTF-8")?;
    let total = usize::try_from(workers.checked_mul(lines).ok_or("too many lines")?)?;
    let queue = LogQueue::new(64)?;
    let start = Instant::now();
    let writer = Process::builder()
        .name("log-writer")
        .target(log_writer, (&queue, path_str))
        .start()?;
    let mut senders = Vec::new();
    for w in 0..workers {
        let p = Process::builder()
            .name(format!("worker-{w}"))
            .target(log_worker, (&queue, w, lines))
            .start();
        match p {
            Ok(p) => senders.push(p),
            Err(e) => {
                senders.push(writer);
                join_all(&senders, Instant::now())?;
                return Err(e.into());
            }
        }
    }
    let deadline = Instant::now() + PATIENCE;
    if let Err(e) = join_all(&senders, deadline) {
        join_all(&[writer], Instant::now())?;
        return Err(e);
    }
    queue.put_timeout(&None, PATIENCE)?; // the sentinel: every worker is done
    join_all(&[writer], Instant::now() + PATIENCE)?;
    let elapsed = start.elapsed();

    let text = std::fs::read_to_string(path)?;
    let mut seen = vec![false; total];
    let mut count = 0;
    let (mut last_worker, mut switches) = (None, 0u64);
    for (k, line) in text.lines().enumerate() {
        let (w, i) = parse_log_line(line)
            .filter(|&(w, i)| w < workers && i < lines)
            .ok_or_else(|| format!("{path_str}:{}: a damaged line: {line:?}", k + 1))?;
        let index = usize::try_from(w * lines + i)?;
        if std::mem::replace(&mut seen[index], true) {
            return Err(format!("{path_str}:{}: a repeated line: {line:?}", k + 1).into());
        }
        if last_worker.is_some_and(|l| l != w) {
            switches += 1;
        }
        last_worker = Some(w);
        count += 1;
    }
    if count != total {
        return Err(format!("{path_str}: {count} lines of {total}").into());
    }
    writeln!(out, "{path_str} begins:")?;
    for line in text.lines().take(3) {
        writeln!(out, "  {line}")?;
    }
    writeln!(
        out,
        "{count} lines from {workers} worker processes through one Queue, written by one writer process, in {elapsed:.2?}"
    )?;
    writeln!(
        out,
        "all present, none cut or interleaved mid-line; one worker's lines follow another's {switches} times"
    )?;
    Ok(LoggingReport {
        path: path.to_owned(),
        lines: count,
        switches,
        elapsed,
    })
}

// ---------------------------------------------------------------- imap

/// What [`imap_progress`] found.
#[derive(Debug, Clone)]
pub struct ImapReport {
    /// Results received, in order.
    pub items: u64,
    /// Primes counted over all blocks.
    pub primes: u64,
    /// The whole `imap`.
    pub elapsed: Duration,
    /// Whether the bar was hidden (not asked for, or stderr is not a
    /// terminal).
    pub bar_hidden: bool,
}

/// A long `Pool::imap` (`len` blocks of [`BLOCK`] numbers, primes counted
/// in each) behind a progress bar, as Python users wrap `imap` in
/// `tqdm`: the iterator is an `ExactSizeIterator`, so indicatif's
/// `ProgressIterator` knows its length. The bar draws on stderr, and only
/// on a terminal (`show_bar` false: never); a summary line follows.
///
/// # Errors
/// The pool's errors; a result out of order.
pub fn imap_progress(
    out: &mut dyn Write,
    len: u64,
    workers: usize,
    show_bar: bool,
) -> ExampleResult<ImapReport> {
    let pool = Pool::new(workers)?;
    let bar = if show_bar {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    // tqdm's look: ` 42%|█████     | 420/1000 [00:01<00:01, 4231 it/s]`.
    let style = ProgressStyle::with_template(
        "{percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed}<{eta}, {rate}]",
    )?
    .with_key("rate", |s: &ProgressState, w: &mut dyn fmt::Write| {
        let _ = write!(w, "{:.0} it/s", s.per_sec());
    });
    bar.set_style(style);
    let bar_hidden = bar.is_hidden();
    let start = Instant::now();
    let mut primes = 0u64;
    let mut items = 0u64;
    for r in pool
        .imap(primes_in_block, 0..len)?
        .progress_with(bar.clone())
    {
        let (block, count) = r?;
        if block != items {
            return Err(format!("imap gave block {block} where {items} was due").into());
        }
        primes += u64::from(count);
        items += 1;
    }
    let elapsed = start.elapsed();
    bar.finish();
    if !bar_hidden {
        // The bar stays, as tqdm's does; end its line.
        eprintln!();
    }
    let last = BLOCK_BASE + len * BLOCK;
    writeln!(
        out,
        "imap: {items} of {len} results in order, {primes} primes in [{BLOCK_BASE}, {last}), in {elapsed:.2?} ({:.0} items/s){}",
        items as f64 / elapsed.as_secs_f64().max(1e-9),
        if bar_hidden {
            "; progress bar hidden (stderr is not a terminal)"
        } else {
            ""
        }
    )?;
    Ok(ImapReport {
        items,
        primes,
        elapsed,
        bar_hidden,
    })
}

// ---------------------------------------------------------------- shared array

/// What [`shared_array_kernel`] measured.
#[derive(Debug, Clone)]
pub struct KernelReport {
    /// The first `map_slices` call (the workers map the arrays' pages).
    pub first: Duration,
    /// The fastest call.
    pub best: Duration,
    /// The fastest sequential run, one core, private memory.
    pub sequential: Duration,
    /// Bytes read and written per call (`8 · len`).
    pub bytes: u64,
}

impl KernelReport {
    /// The best call's bandwidth, GiB/s.
    pub fn best_gib_s(&self) -> f64 {
        gib_s(self.bytes, self.best)
    }
}

fn gib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / f64::from(1u32 << 30) / d.as_secs_f64().max(1e-9)
}

/// `Pool::map_slices` of `y = a·x + b` over a shared `f32` array of `len`
/// elements, `rounds` times, with `workers` processes; checked bit for bit
/// against the sequential result; the bandwidth reached.
///
/// # Errors
/// A `len` or `rounds` of 0; the pool's errors; a result that differs.
pub fn shared_array_kernel(
    out: &mut dyn Write,
    len: usize,
    workers: usize,
    rounds: u32,
) -> ExampleResult<KernelReport> {
    if len == 0 || rounds == 0 {
        return Err("the size and the rounds must be positive".into());
    }
    let xs: Vec<f32> = (0..len).map(|i| (i % 4096) as f32 * 0.125).collect();
    let x = ShmSlice::from_slice(&xs)?;
    let y = ShmSlice::new(len, 0.0f32)?;
    let pool = Pool::new(workers)?;
    let bytes = 8 * len as u64;
    let mib = (4 * len) as f64 / f64::from(1u32 << 20);
    writeln!(
        out,
        "y = {AXPB_A}·x + {AXPB_B} over {len} f32 ({mib:.0} MiB in, {mib:.0} MiB out, shared arrays), map_slices with {workers} processes"
    )?;

    let mut calls = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        pool.map_slices(axpb, &x, &y)?;
        calls.push(t.elapsed());
    }
    let mut expected = vec![0.0f32; len];
    let mut sequential = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        axpb(&xs, &mut expected);
        sequential = sequential.min(t.elapsed());
    }
    let got = y.to_vec();
    let mismatch = got
        .iter()
        .zip(&expected)
        .position(|(a, b)| a.to_bits() != b.to_bits());

    let first = calls[0];
    let best = calls.iter().copied().min().expect("rounds > 0");
    writeln!(
        out,
        "first call:  {first:>9.2?} ({:.2} GiB/s; the workers map the arrays' pages)",
        gib_s(bytes, first)
    )?;
    writeln!(
        out,
        "best of {rounds}:   {best:>9.2?} ({:.2} GiB/s)",
        gib_s(bytes, best)
    )?;
    writeln!(
        out,
        "sequential:  {sequential:>9.2?} ({:.2} GiB/s, one core, private memory)",
        gib_s(bytes, sequential)
    )?;
    if let Some(i) = mismatch {
        return Err(format!(
            "y[{i}] = {} in the shared array, {} sequentially",
            got[i], expected[i]
        )
        .into());
    }
    writeln!(out, "equal to the sequential result, bit for bit")?;
    Ok(KernelReport {
        first,
        best,
        sequential,
        bytes,
    })
}

// ------------------------------------------------------------------ Manager

/// What [`manager_results`] found.
#[derive(Debug, Clone)]
pub struct ManagerReport {
    /// Keys in the shared dict at the end (one per number tested).
    pub keys: usize,
    /// How many of them are prime.
    pub primes: usize,
    /// The shared total updated in place by every worker.
    pub total: u64,
    /// How long the workers took.
    pub elapsed: Duration,
}

/// `Manager().dict()` filled by `workers` processes: each tests its share
/// of `numbers` numbers from 10,000,000 for primality and stores each
/// verdict under its own key; each also adds 100 to a shared total with
/// `update_with`, which never loses an update (Python's `d[k] += 1` on a
/// proxy can).
///
/// # Errors
/// The manager or a worker failing.
pub fn manager_results(
    out: &mut dyn Write,
    workers: u64,
    numbers: u64,
) -> ExampleResult<ManagerReport> {
    use crate::tasks::{manager_counter, manager_worker};
    let m = shmproc::Manager::start()?;
    let results = m.dict::<u64, bool>()?;
    let counts = m.dict::<String, u64>()?;
    let base = 10_000_000;
    let start = Instant::now();
    let mut procs = Vec::new();
    for w in 0..workers {
        let p = Process::new(
            manager_worker,
            (&results, base + w, workers, base + numbers),
        );
        p.start()?;
        procs.push(p);
        let p = Process::new(manager_counter, (&counts, 100u64));
        p.start()?;
        procs.push(p);
    }
    join_all(&procs, Instant::now() + PATIENCE)?;
    let elapsed = start.elapsed();
    let items = results.items()?;
    let primes = items.iter().filter(|(_, p)| *p).count();
    let total = counts.get(&"total".to_owned())?.unwrap_or(0);
    writeln!(
        out,
        "{} results from {workers} workers in {elapsed:.2?} ({primes} primes); every key present exactly once: {}",
        items.len(),
        items.len() as u64 == numbers
    )?;
    writeln!(
        out,
        "shared total updated in place by {workers} processes: {total} of {} (none lost)",
        workers * 100
    )?;
    m.shutdown()?;
    writeln!(out, "the server process has exited; nothing is left behind")?;
    Ok(ManagerReport {
        keys: items.len(),
        primes,
        total,
        elapsed,
    })
}
