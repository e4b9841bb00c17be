//! The functions the examples run in other processes (the tutorial's
//! `worker`, `square_worker`, `is_prime`, ...). Each is a plain `fn`: a
//! child or a pool worker finds it in the same executable, under every
//! start method.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use shmproc::ObjQueue;

/// The tutorial's `worker(name, delay)`: says it starts, "works" (sleeps
/// `delay_ms`), says it finished. `indent` starts each line (the demo
/// indents its sections).
pub fn worker((name, delay_ms, indent): (String, u64, String)) {
    println!("{indent}[{name}] starting work");
    // The tutorial's "work" is a sleep.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(Duration::from_millis(delay_ms));
    println!(
        "{indent}[{name}] finished after {} seconds",
        delay_ms as f64 / 1000.0
    );
}

/// What [`square_worker`] puts: `Some((n, n * n))`, then `None`, the
/// tutorial's sentinel.
pub type SquareQueue = ObjQueue<Option<(u64, u64)>>;

/// The tutorial's `square_worker(numbers, queue)`: `(n, n * n)` pairs, then
/// the sentinel `None`.
pub fn square_worker((numbers, queue): (Vec<u64>, SquareQueue)) {
    for n in numbers {
        queue.put(&Some((n, n * n))).expect("queue open");
    }
    queue.put(&None).expect("queue open"); // sentinel value to mark the end
}

/// The tutorial's `is_prime` (trial division by odd numbers up to √n).
pub fn is_prime(n: u64) -> bool {
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

/// [`is_prime`] as a 0/1 flag, for `Pool::map_into` over shared arrays
/// (a `bool` is not `Pod`: not every byte is a valid `bool`).
pub fn is_prime_flag(n: u64) -> u8 {
    u8::from(is_prime(n))
}

/// Numbers per block of [`primes_in_block`].
pub const BLOCK: u64 = 2_000;

/// Where the blocks of [`primes_in_block`] start.
pub const BLOCK_BASE: u64 = 10_000_000;

/// The imap task: `(block, primes in [BLOCK_BASE + block·BLOCK, + BLOCK))`
/// (the block comes back so the caller can check the order).
pub fn primes_in_block(block: u64) -> (u64, u32) {
    let start = BLOCK_BASE + block * BLOCK;
    let count = (start..start + BLOCK).filter(|&n| is_prime(n)).count();
    (block, u32::try_from(count).expect("at most BLOCK primes"))
}

/// `a` of the shared-array kernel `y = a·x + b`.
pub const AXPB_A: f32 = 2.5;

/// `b` of the shared-array kernel `y = a·x + b`.
pub const AXPB_B: f32 = 1.0;

/// The shared-array kernel, `y[i] = a·x[i] + b` over a whole chunk (what
/// `Pool::map_slices` hands each worker; the sequential check calls it on
/// the whole array).
pub fn axpb(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = AXPB_A * x + AXPB_B;
    }
}

/// What the logging workers put: `Some(line)`, then the parent's `None`
/// once every worker is done.
pub type LogQueue = ObjQueue<Option<String>>;

/// A logging worker: `lines` log lines (see [`log_line`]) through the queue.
pub fn log_worker((queue, worker, lines): (LogQueue, u64, u64)) {
    let pid = std::process::id();
    for i in 0..lines {
        queue
            .put(&Some(log_line(worker, pid, i, lines)))
            .expect("queue open");
    }
}

/// The one writer process: every line from the queue into the file at
/// `path`, each written whole, until the sentinel `None`.
pub fn log_writer((queue, path): (LogQueue, String)) {
    let file = File::create(&path).expect("create the log file");
    let mut file = BufWriter::new(file);
    loop {
        // The parent puts the sentinel once every worker ended; the bound
        // only keeps a writer whose parent vanished from waiting forever.
        match queue.get_timeout(Duration::from_secs(120)) {
            Ok(Some(line)) => writeln!(file, "{line}").expect("write the log file"),
            Ok(None) => break,
            Err(e) => panic!("log writer: {e}"),
        }
    }
    file.flush().expect("flush the log file");
}

/// One log line of worker `worker`: its pid, the message's number, some
/// text, and a checksum of all that, so that a line cut or mixed with
/// another one never passes [`parse_log_line`].
pub fn log_line(worker: u64, pid: u32, i: u64, of: u64) -> String {
    let body = format!(
        "worker-{worker} pid {pid} message {i} of {of}: the quick brown fox jumps over the lazy dog"
    );
    format!("{body} #{:016x}", fnv1a(body.as_bytes()))
}

/// The `(worker, message)` of a line made by [`log_line`], or `None` for
/// anything else (a cut, a mix of two lines, a wrong checksum).
pub fn parse_log_line(line: &str) -> Option<(u64, u64)> {
    let (body, sum) = line.rsplit_once(" #")?;
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != fnv1a(body.as_bytes()) {
        return None;
    }
    let rest = body.strip_prefix("worker-")?;
    let (worker, rest) = rest.split_once(" pid ")?;
    let (_pid, rest) = rest.split_once(" message ")?;
    let (i, _) = rest.split_once(" of ")?;
    Some((worker.parse().ok()?, i.parse().ok()?))
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A Manager worker: tests the numbers `start, start + step, ...` below
/// `end` for primality, puts each verdict in the shared dict under its own
/// key, and counts them in a shared total with an in-place update.
pub fn manager_worker((results, start, step, end): (shmproc::DictProxy<u64, bool>, u64, u64, u64)) {
    let mut n = start;
    while n < end {
        results.set(&n, &is_prime(n)).expect("manager reachable");
        n += step;
    }
}

/// A Manager worker's total: adds its count to the shared `counts["total"]`
/// with `update_with` (a read-modify-write that no other worker can lose).
pub fn manager_counter((counts, k): (shmproc::DictProxy<String, u64>, u64)) {
    for _ in 0..k {
        counts
            .update_with(&"total".to_owned(), |v| v.unwrap_or(0) + 1)
            .expect("manager reachable");
    }
}
