//! The scenarios of Python's multiprocessing tutorial, in shmproc.
//!
//! Run it with `cargo run --release --example multiprocessing_demo`.
//! Each section says which Python program it mirrors; it grows as shmproc
//! does.

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmproc::prelude::*;
use shmproc::{ByteQueue, Connection, Pipe, Process, Shareable, current_process};
use shmproc_examples::{Indent, scenarios};

type DemoResult = Result<(), Box<dyn std::error::Error>>;

/// What starts each line under a section's title.
const INDENT: &str = "  ";

/// Sends one message of `len` bytes (a side segment: far larger than a slot)
/// and a short one, written in place with `reserve` / `commit`.
fn big_sender((queue, len): (ByteQueue, usize)) {
    let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    queue.put_bytes(&big).expect("queue open");
    let text = b"and a short one, written in place";
    let mut slot = queue.reserve(text.len()).expect("queue open");
    slot.copy_from_slice(text);
    slot.commit().expect("not taken");
}

/// Receives numbers over its end of a Pipe and answers with their doubles,
/// until a 0 arrives.
fn doubler(mut conn: Connection) {
    while let Ok(n) = conn.recv::<u64>() {
        if n == 0 {
            break;
        }
        conn.send(&(n * 2)).expect("peer open");
    }
    conn.send_bytes(b"bye").expect("peer open");
}

/// Adds 1 to a shared counter `k` times under the Value's lock, and to a
/// `RawValue` without a lock (to show why the lock matters).
fn incrementer((value, raw, k): (Value<u64>, RawValue<u64>, u64)) {
    for _ in 0..k {
        *value.lock().expect("no holder died") += 1;
        // Read, add, write: another process can slip in between.
        raw.store(raw.load() + 1);
    }
}

/// Takes the lock, says so, and waits to be killed while holding it.
fn holder((lock, held, never): (Lock, Event, Event)) {
    let _guard = lock.lock().expect("first holder");
    held.set();
    // Nobody sets this event: the parent kills us first.
    let _ = never.wait_timeout(Duration::from_secs(60));
    std::process::exit(3);
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> DemoResult {
    println!("shmproc demo: Python's multiprocessing, over shared memory\n");
    println!(
        "This is {} (pid {}). A section marked [--example NAME] is that example, short:\n\
         cargo run --release --example NAME runs it in full.",
        current_process().name,
        std::process::id()
    );
    processes()?;
    queue_squares()?;
    queue_any_size()?;
    pipe_conversation()?;
    pool_map_is_prime()?;
    imap_progress()?;
    shared_array_kernel()?;
    queue_logging()?;
    value_and_lock()?;
    manager_dict()?;
    owner_died()?;
    errors()?;
    Ok(())
}

/// `Process(target=worker, args=("Process-1", 2))`, start, join (the
/// `process_basic` example, its sleeps scaled by 0.1).
fn processes() -> DemoResult {
    example_section(
        "Process: two workers run in parallel (the tutorial's 2 s and 3 s, scaled to 0.2 s and 0.3 s)",
        "process_basic",
    );
    scenarios::process_basic(&mut out(), 0.1, INDENT)?;
    Ok(())
}

/// `Queue()`: a child puts `(n, n * n)` pairs and the sentinel `None`, the
/// parent gets them (the `queue_squares` example).
fn queue_squares() -> DemoResult {
    example_section(
        "Queue: a child puts (n, n*n) pairs, the parent reads until the sentinel",
        "queue_squares",
    );
    scenarios::queue_squares(&mut out(), &[1, 2, 3, 4, 5])?;
    Ok(())
}

/// Python's Queue takes objects of any size; so does `ByteQueue`.
fn queue_any_size() -> DemoResult {
    section("Queue of bytes, any size: a 16 MiB message through 4 KiB slots, read in place");
    let q = ByteQueue::new(8, 4096)?;
    let len = 16 << 20;
    let p = Process::new(big_sender, (q.try_clone()?, len));
    p.start()?;
    let big = q.get_bytes_ref_timeout(Duration::from_secs(30))?;
    let intact = big.len() == len && big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
    println!("  received {} bytes in place, intact: {intact}", big.len());
    drop(big);
    let small = q.get_bytes_timeout(Duration::from_secs(30))?;
    println!("  then {:?}", String::from_utf8_lossy(&small));
    p.join()?;
    if !intact {
        return Err("the large message arrived damaged".into());
    }
    Ok(())
}

/// `Pipe()`: a two-way conversation with a child, then EOF when it exits.
fn pipe_conversation() -> DemoResult {
    section("Pipe: a two-way conversation with a child, then EOF after it exits");
    let (mut here, there) = Pipe::new()?;
    let p = Process::new(doubler, there);
    p.start()?;
    for n in [3u64, 7, 21] {
        here.send(&n)?;
        if !here.poll(Some(Duration::from_secs(30)))? {
            return Err("the child did not answer".into());
        }
        println!("  sent {n}, received {}", here.recv::<u64>()?);
    }
    here.send(&0u64)?;
    println!(
        "  child says {:?}",
        String::from_utf8_lossy(&here.recv_bytes_timeout(Duration::from_secs(30))?)
    );
    p.join()?;
    match here.recv_bytes_timeout(Duration::from_secs(30)) {
        Err(e) => println!("  after the child exited: {e}"),
        Ok(_) => return Err("a message after the child's last one".into()),
    }
    Ok(())
}

/// `Pool().map(is_prime, numbers)` as the tutorial writes it (the
/// `pool_primes` example), then the tutorial's sequential-versus-pool
/// exercise (`compare_sequential_pool`, on a shorter list): `Pool::map`
/// (any serde type) and `Pool::map_into` (zero-copy: workers read a shared
/// input array and write their flags into a shared output array in place).
fn pool_map_is_prime() -> DemoResult {
    example_section(
        "Pool.map(is_prime, numbers), as the tutorial writes it",
        "pool_primes",
    );
    scenarios::pool_primes(&mut out(), workers())?;
    example_section(
        "Sequential versus the pool: is_prime on 13-digit numbers",
        "compare_sequential_pool",
    );
    scenarios::compare_sequential_pool(&mut out(), 1_000_000_000_000, 5_000, workers())?;
    Ok(())
}

/// `pool.imap` behind a progress bar, as `tqdm(pool.imap(...))` (the
/// `imap_progress` example, shorter).
fn imap_progress() -> DemoResult {
    example_section(
        "Pool.imap with a progress bar (indicatif on stderr, like tqdm)",
        "imap_progress",
    );
    scenarios::imap_progress(&mut out(), 300, workers(), true)?;
    Ok(())
}

/// `map_slices` of a vectorised kernel over shared `f32` arrays (the
/// `shared_array_kernel` example, 16 MiB arrays).
fn shared_array_kernel() -> DemoResult {
    example_section(
        "Beyond Python: Pool.map_slices, a kernel over shared f32 arrays in place",
        "shared_array_kernel",
    );
    scenarios::shared_array_kernel(&mut out(), 1 << 22, workers(), 3)?;
    Ok(())
}

/// Worker processes log through one Queue to one writer process (the
/// `queue_logging` example, shorter; the log file is removed afterwards).
fn queue_logging() -> DemoResult {
    example_section(
        "Queue logging: 4 workers, one writer process, one log file",
        "queue_logging",
    );
    let path = scenarios::default_log_path();
    let result = scenarios::queue_logging(&mut out(), &path, 4, 250);
    let _ = std::fs::remove_file(&path);
    result?;
    println!("{INDENT}(the demo removes its log file; the example keeps it)");
    Ok(())
}

/// `Value('Q', 0)` incremented by 4 processes under `get_lock()`, beside a
/// `RawValue` incremented without a lock.
fn value_and_lock() -> DemoResult {
    section("Value + its lock: 4 processes add 1 to a shared counter 50,000 times each");
    let (k, procs) = (50_000u64, 4);
    let value = Value::new(0u64)?;
    let raw = RawValue::new(0u64)?;
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 0..procs {
        let args = (value.try_clone()?, raw.try_clone()?, k);
        children.push(Process::builder().target(incrementer, args).start()?);
    }
    for c in &children {
        if c.join()? != 0 {
            return Err("an incrementing worker failed".into());
        }
    }
    let elapsed = start.elapsed();
    let total = value.load().map_err(|e| e.to_string())?;
    println!(
        "  Value (under its lock): {total} of {} in {elapsed:.2?}",
        k * procs
    );
    let raw_total = raw.load();
    println!(
        "  RawValue (no lock):     {raw_total} of {}  ({} updates lost to read-add-write races)",
        k * procs,
        k * procs - raw_total.min(k * procs)
    );
    if total != k * procs {
        return Err("the lock failed to serialise the increments".into());
    }
    Ok(())
}

/// `Manager().dict()` filled by worker processes, with an in-place update
/// of a shared total that loses nothing.
fn manager_dict() -> DemoResult {
    section(
        "Manager: 4 worker processes fill a shared dict of results (a server process, proxies over shared memory)",
    );
    let report = scenarios::manager_results(&mut out(), 4, 400)?;
    if report.keys != 400 || report.total != 400 {
        return Err("the Manager lost a result or an update".into());
    }
    Ok(())
}

/// A process killed while holding a lock: the next acquirer gets an
/// `OwnerDied` report, never a hang; the lock stays poisoned until the state
/// is repaired and the poison cleared.
fn owner_died() -> DemoResult {
    section("Beyond Python: a process SIGKILLed while holding a Lock is reported, not a hang");
    let lock = Lock::new()?;
    let held = Event::new()?;
    let never = Event::new()?;
    let args = (lock.try_clone()?, held.try_clone()?, never.try_clone()?);
    let child = Process::builder()
        .name("holder")
        .target(holder, args)
        .start()?;
    if held.wait_timeout(Duration::from_secs(30)).is_err() {
        child.kill()?;
        return Err("the holder never took the lock".into());
    }
    let pid = child.pid().ok_or("a started process has a pid")?;
    println!("  {} (pid {pid}) holds the lock; kill()", child.name());
    child.kill()?;
    let start = Instant::now();
    match lock.lock() {
        Ok(_) => return Err("the dead holder went unnoticed".into()),
        Err(died) => {
            let dead = died.dead_owner().unwrap_or_default();
            println!(
                "  lock() -> OwnerDied (holder pid {dead} died), after {:.0?}; the lock is poisoned",
                start.elapsed()
            );
        }
    }
    println!(
        "  holder exit code: {} (-9: killed by SIGKILL)",
        child.join()?
    );
    let repair = lock.lock_ignoring_poison();
    lock.clear_poison();
    drop(repair);
    let _again = lock.lock()?;
    println!("  repaired under lock_ignoring_poison, poison cleared: the lock works normally");
    Ok(())
}

/// Shared memory is untrusted input: wrong or missing segments are errors.
fn errors() -> DemoResult {
    section(
        "Any process can open a segment by name; the wrong type is an error, not a reinterpretation",
    );
    let name = SegmentName::unique("demo-typed");
    let numbers = ShmSlice::create(name.as_str(), 4, 7u64)?;
    match ShmSlice::<f64>::open(name.as_str()) {
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
    drop(numbers);
    let left = Segment::exists(name.as_str());
    println!(
        "  after the creator's handle drops, the segment is gone: {}",
        !left
    );
    if left {
        return Err("segment leaked".into());
    }
    println!("\nDone.");
    Ok(())
}

/// The pool size of the demo's pool sections.
fn workers() -> usize {
    scenarios::default_workers().clamp(2, 8)
}

/// Stdout, each line indented under its section's title.
fn out() -> Indent<io::Stdout> {
    Indent::new(io::stdout(), INDENT)
}

fn example_section(title: &str, example: &str) {
    println!("\n== {title}   [--example {example}]");
}

fn section(title: &str) {
    println!("\n== {title}");
}
