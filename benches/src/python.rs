//! Python's `multiprocessing`, measured in the same run as ours: the
//! scripts in `benches/python/` (`value_lock.py`, `queue.py`, `pipe.py`,
//! `pool.py`, `manager.py`),
//! each run as `python3` with a deadline, its pinning matching the Rust
//! cases', and its one-line JSON result read back.
//!
//! A Python case is skipped, with the reason, when `python3` is not on
//! `PATH` or its script fails.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::contended_cpus;
use crate::pingpong::LAT_SIZES;
use crate::sizes::{LinkSizes, PoolSizes};
use crate::{pipe, queue};

/// `pin` when the two processes of a run can have a CPU each (as the Rust
/// cases'), else `nopin`.
fn pin_arg() -> &'static str {
    if contended_cpus().is_some() {
        "pin"
    } else {
        "nopin"
    }
}

/// Runs `python/value_lock.py` (two processes incrementing a
/// `multiprocessing.Value` under `get_lock()`), returning increments/s, or why
/// it could not run (python3 missing, script failed).
pub fn value_lock(per_proc: u64) -> Result<f64, String> {
    let out = run("value_lock.py", &[&per_proc.to_string(), pin_arg()])?;
    json_number(&out, "incr_per_s")
        .ok_or_else(|| format!("no incr_per_s in python output: {out:?}"))
}

/// What `python/queue.py` and `python/pipe.py` measure: one-way latency
/// p50/p99 for 8 B and 4 KiB, 1 -> 1 msgs/s for every stream size.
#[derive(Debug, Clone, Default)]
pub struct PythonRun {
    /// (size, p50 ns, p99 ns)
    pub latency: Vec<(usize, f64, f64)>,
    /// (size, msgs/s)
    pub stream: Vec<(usize, f64)>,
}

/// Runs `python/queue.py` (`multiprocessing.Queue`, streams of every
/// [`queue::SIZES`]), or says why it could not.
pub fn queue(sz: &LinkSizes) -> Result<PythonRun, String> {
    links_run("queue.py", sz, &queue::SIZES)
}

/// Runs `python/pipe.py` (`multiprocessing.Pipe`, streams of every
/// [`pipe::STREAM_SIZES`]), or says why it could not.
pub fn pipe(sz: &LinkSizes) -> Result<PythonRun, String> {
    links_run("pipe.py", sz, &pipe::STREAM_SIZES)
}

/// Runs a latency-and-stream script with `sz`'s round trips and byte
/// budget, and reads its `lat<size>_p50_ns`, `lat<size>_p99_ns` and
/// `tput<size>_msgs_per_s`.
fn links_run(script: &str, sz: &LinkSizes, stream_sizes: &[usize]) -> Result<PythonRun, String> {
    let out = run(
        script,
        &[
            &sz.python_rtts.to_string(),
            &sz.python_bytes.to_string(),
            pin_arg(),
        ],
    )?;
    let num = |key: String| {
        json_number(&out, &key).ok_or_else(|| format!("no {key} in python output: {out:?}"))
    };
    let mut r = PythonRun::default();
    for size in LAT_SIZES {
        r.latency.push((
            size,
            num(format!("lat{size}_p50_ns"))?,
            num(format!("lat{size}_p99_ns"))?,
        ));
    }
    for &size in stream_sizes {
        r.stream
            .push((size, num(format!("tput{size}_msgs_per_s"))?));
    }
    Ok(r)
}

/// What `python/pool.py` measures (`multiprocessing.Pool(2)`, its default
/// start method), in one run: see the script's docs.
#[derive(Debug, Clone, Copy)]
pub struct PoolRun {
    /// `Pool(2)` creation and a first `map(is_prime, range(2))` (s).
    pub prime_start_s: f64,
    /// `pool.map(is_prime, ...)` over the range's first
    /// [`PoolSizes::python_prime_n`] numbers, on the started pool (s).
    pub prime_map_s: f64,
    /// Leaving the `with` block: terminate and join (s).
    pub prime_exit_s: f64,
    /// The primes that map found (checked against ours).
    pub prime_count: u64,
    /// Median of `Pool(2)` + a first `map(identity, range(2))` (ms).
    pub start_ms: f64,
    /// `pool.imap(identity, range(n), chunksize=1)`, items/s.
    pub imap_items_per_s: f64,
    /// `pool.apply_async(identity, (i,)).get()` round trip, p50 (µs).
    pub apply_p50_us: f64,
    /// The same, p99 (µs).
    pub apply_p99_us: f64,
}

/// Runs `python/pool.py` with `sz`'s sizes (Python's own item counts), or
/// says why it could not.
pub fn pool(sz: &PoolSizes) -> Result<PoolRun, String> {
    let out = run(
        "pool.py",
        &[
            &sz.prime_start.to_string(),
            &sz.python_prime_n.to_string(),
            &sz.start_samples.to_string(),
            &sz.python_imap_n.to_string(),
            &sz.apply_rtts.to_string(),
            &(sz.apply_gap_ns / 1000).to_string(),
        ],
    )?;
    let num = |key: &str| {
        json_number(&out, key).ok_or_else(|| format!("no {key} in python output: {out:?}"))
    };
    Ok(PoolRun {
        prime_start_s: num("prime_start_s")?,
        prime_map_s: num("prime_map_s")?,
        prime_exit_s: num("prime_exit_s")?,
        prime_count: num("prime_count")? as u64,
        start_ms: num("start_ms")?,
        imap_items_per_s: num("imap_items_per_s")?,
        apply_p50_us: num("apply_p50_us")?,
        apply_p99_us: num("apply_p99_us")?,
    })
}

/// What `python/manager.py` measures (`Manager().dict()`), medians in µs.
#[derive(Debug, Clone, Copy)]
pub struct ManagerRun {
    /// `d[k] = v` over the default Unix socket.
    pub set_local: f64,
    /// `d[k]` over the Unix socket.
    pub get_local: f64,
    /// Connect + handshake of a second client over the Unix socket.
    pub connect_local: f64,
    /// `d[k] = v` over TCP loopback with an authkey.
    pub set_tcp: f64,
    /// `d[k]` over TCP.
    pub get_tcp: f64,
    /// Connect + handshake over TCP.
    pub connect_tcp: f64,
}

/// Runs `python/manager.py` (`ops` calls per sample, `rounds` samples), or
/// says why it could not.
pub fn manager(ops: usize, rounds: usize) -> Result<ManagerRun, String> {
    let out = run("manager.py", &[&ops.to_string(), &rounds.to_string()])?;
    let num = |key: &str| {
        json_number(&out, key).ok_or_else(|| format!("no {key} in python output: {out:?}"))
    };
    Ok(ManagerRun {
        set_local: num("set_local")?,
        get_local: num("get_local")?,
        connect_local: num("connect_local")?,
        set_tcp: num("set_tcp")?,
        get_tcp: num("get_tcp")?,
        connect_tcp: num("connect_tcp")?,
    })
}

/// Runs `python3 python/<script> <args>` with a deadline of 120 s (killed and
/// reaped after that), returning its stdout, or why it could not run
/// (python3 missing, script failed, deadline passed).
fn run(script: &str, args: &[&str]) -> Result<String, String> {
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = match Command::new("python3")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 not found on PATH: Python case skipped".to_owned());
        }
        Err(e) => return Err(format!("could not start python3: {e}")),
    };
    // Drained while it runs: a full pipe would stall the script.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("python3 ran for more than 120 s: killed".to_owned());
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "polling a subprocess with a deadline"
        )]
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "python3 {script} failed ({status}): {}",
            err.trim()
        ));
    }
    Ok(out)
}

/// The number after `"key":` in a flat JSON object.
fn json_number(json: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}
