//! The scenarios of Python's multiprocessing tutorial, in shmproc.
//!
//! Run it with `cargo run --release --example multiprocessing_demo`.
//! Each section says which Python program it mirrors. It grows as shmproc
//! does: today it shows shared-memory segments shared by name between real
//! processes, zero-copy, and the errors a wrong or corrupt segment gives.
//!
//! Until `shmproc::Process` lands, the demo starts its worker processes by
//! re-running its own binary with `std::process::Command`.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmproc::prelude::*;
use shmproc::{Event, Lock, RawValue, Value};

/// The tutorial's `is_prime`.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut i = 3;
    while i * i <= n {
        if n % i == 0 {
            return false;
        }
        i += 2;
    }
    true
}

/// Worker process: opens the input and output arrays by name and fills its
/// share of the output in place (`--worker <in> <out> <index> <workers>`).
fn worker(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [input, output, index, workers] = args else {
        return Err("usage: --worker <input> <output> <index> <workers>".into());
    };
    let (index, workers): (usize, usize) = (index.parse()?, workers.parse()?);
    let numbers = ShmSlice::<u64>::open(input)?;
    let results = ShmSlice::<u8>::open_with_len(output, numbers.len())?;
    // Interleaved split, so both workers get a fair share of large numbers.
    for i in (index..numbers.len()).step_by(workers) {
        let n = numbers.get(i).ok_or("index in bounds")?;
        results.set(i, u8::from(is_prime(n)))?;
    }
    Ok(())
}

/// Worker process: adds 1 to a shared counter `k` times, under the Value's
/// lock or (to show why it matters) without one (`--incr <value> <raw> <k>`).
fn incrementer(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [value, raw, k] = args else {
        return Err("usage: --incr <value> <raw> <k>".into());
    };
    let k: u64 = k.parse()?;
    let value = Value::<u64>::open(value)?;
    let raw = RawValue::<u64>::open(raw)?;
    for _ in 0..k {
        *value.lock().map_err(|e| format!("{e}"))? += 1;
        // Read, add, write: another process can slip in between.
        raw.store(raw.load() + 1);
    }
    Ok(())
}

/// Worker process: takes the lock, says so, and waits to be killed while
/// holding it (`--hold <lock> <held-event> <never-event>`).
fn holder(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [lock, held, never] = args else {
        return Err("usage: --hold <lock> <held> <never>".into());
    };
    let lock = Lock::open(lock)?;
    let (held, never) = (Event::open(held)?, Event::open(never)?);
    let _guard = lock.lock().map_err(|e| format!("{e}"))?;
    held.set();
    // Nobody sets this event: the parent kills us first.
    never.wait_timeout(Duration::from_secs(60));
    Err("was not killed".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.split_first().map(|(a, r)| (a.as_str(), r));
    let run_role = match role {
        Some(("--worker", rest)) => Some(worker(rest)),
        Some(("--incr", rest)) => Some(incrementer(rest)),
        Some(("--hold", rest)) => Some(holder(rest)),
        _ => None,
    };
    if let Some(result) = run_role {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), Box<dyn std::error::Error>> {
    println!("shmproc demo: Python's multiprocessing, over shared memory\n");
    println!("CPU cores available: {}", shmproc::cpu_count());

    section(
        "Pool.map(is_prime, numbers), zero-copy: workers read and write shared arrays in place",
    );
    let numbers: Vec<u64> = (0..200_000u64).map(|i| 10_000_000 + i).collect();
    let in_name = SegmentName::unique("demo-in");
    let out_name = SegmentName::unique("demo-out");
    let input = ShmSlice::from_slice(in_name.as_str(), &numbers)?;
    let output = ShmSlice::create(out_name.as_str(), numbers.len(), 0u8)?;
    println!(
        "  input  {} ({} x u64, written once)\n  output {} ({} x u8)",
        in_name,
        input.len(),
        out_name,
        output.len()
    );

    let start = Instant::now();
    let sequential = numbers.iter().filter(|&&n| is_prime(n)).count();
    let t_seq = start.elapsed();

    let workers = shmproc::available_cpu_count().clamp(2, 8);
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..workers)
        .map(|i| {
            Command::new(&exe)
                .args(["--worker", in_name.as_str(), out_name.as_str()])
                .args([i.to_string(), workers.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("worker exited with {status}").into());
        }
    }
    let t_par = start.elapsed();
    let flags = output.to_vec();
    let parallel = flags.iter().filter(|&&f| f == 1).count();
    println!("  sequential: {sequential} primes in {t_seq:.2?}");
    println!("  {workers} processes: {parallel} primes in {t_par:.2?} (results read in place)");
    if parallel != sequential {
        return Err("the workers disagree with the sequential count".into());
    }
    for (n, f) in numbers.iter().zip(&flags).filter(|&(_, &f)| f == 1).take(4) {
        println!("  {n} prime? {}", *f == 1);
    }

    section(
        "Any process can open a segment by name; the wrong type is an error, not a reinterpretation",
    );
    match ShmSlice::<f64>::open(in_name.as_str()) {
        Ok(_) => return Err("opening u64s as f64s must fail".into()),
        Err(e) => println!("  ShmSlice::<f64>::open -> {e}"),
    }
    match ShmSlice::<u64>::open("shmproc-demo-does-not-exist") {
        Ok(_) => return Err("a missing segment must not open".into()),
        Err(e) => println!("  ShmSlice::<u64>::open -> {e}"),
    }
    match ShmBox::create("bad/name", 0u32) {
        Ok(_) => return Err("a name with '/' must be rejected".into()),
        Err(e) => println!("  ShmBox::create      -> {e}"),
    }

    drop(input);
    drop(output);
    value_and_lock(&exe)?;
    owner_died(&exe)?;

    section("Cleanup: the creator unlinks its segments when its handles drop");
    let left = [&in_name, &out_name]
        .iter()
        .filter(|n| Segment::exists(n.as_str()))
        .count();
    println!("  segments of this demo left in /dev/shm: {left}");
    if left != 0 {
        return Err("segments leaked".into());
    }
    println!("\nDone.");
    Ok(())
}

/// `Value('Q', 0)` incremented by 4 processes under `get_lock()`, beside a
/// `RawValue` incremented without a lock.
fn value_and_lock(exe: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    section("Value + its lock: 4 processes add 1 to a shared counter 50,000 times each");
    let (k, procs) = (50_000u64, 4);
    let value_name = SegmentName::unique("demo-value");
    let raw_name = SegmentName::unique("demo-raw");
    let value = Value::create(value_name.as_str(), 0u64)?;
    let raw = RawValue::create(raw_name.as_str(), 0u64)?;
    let start = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(exe)
                .args(["--incr", value_name.as_str(), raw_name.as_str()])
                .arg(k.to_string())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut c in children {
        if !c.wait()?.success() {
            return Err("an incrementing worker failed".into());
        }
    }
    let elapsed = start.elapsed();
    let total = value.load().map_err(|e| format!("{e}"))?;
    println!(
        "  Value (under its lock): {total} of {} in {elapsed:.2?} ({:.1} M locked increments/s)",
        k * procs,
        (k * procs) as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "  RawValue (no lock):     {} of {}  (lost updates: read-add-write races)",
        raw.load(),
        k * procs
    );
    if total != k * procs {
        return Err("the lock failed to serialise the increments".into());
    }
    Ok(())
}

/// A process killed while holding a lock: the next acquirer gets the lock
/// and an `OwnerDied` report, never a hang.
fn owner_died(exe: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    section("Beyond Python: a process SIGKILLed while holding a Lock is reported, not a hang");
    let lock_name = SegmentName::unique("demo-lock");
    let held_name = SegmentName::unique("demo-held");
    let never_name = SegmentName::unique("demo-never");
    let lock = Lock::create(lock_name.as_str())?;
    let held = Event::create(held_name.as_str())?;
    let _never = Event::create(never_name.as_str())?;
    let mut child = Command::new(exe)
        .args([
            "--hold",
            lock_name.as_str(),
            held_name.as_str(),
            never_name.as_str(),
        ])
        .spawn()?;
    if !held.wait_timeout(Duration::from_secs(30)) {
        let _ = child.kill();
        return Err("the holder never took the lock".into());
    }
    println!(
        "  child {} holds the lock; killing it with SIGKILL",
        child.id()
    );
    child.kill()?;
    let start = Instant::now();
    match lock.lock() {
        Ok(_) => return Err("the dead holder went unnoticed".into()),
        Err(died) => {
            let dead = died.dead_owner();
            drop(died.into_inner());
            println!(
                "  lock() -> OwnerDied (holder pid {dead} died); lock taken over after {:.0?}",
                start.elapsed()
            );
        }
    }
    child.wait()?;
    let _again = lock.lock().map_err(|e| format!("{e}"))?;
    println!("  the lock works normally afterwards");
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title}");
}
