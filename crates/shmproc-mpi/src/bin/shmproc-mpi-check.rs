//! The program the tests run under `mpirun` (`tests/mpirun.rs`): one
//! scenario per run, checked on rank 0, which prints `ok ...` lines and
//! exits non-zero on a failed check.
//!
//! `shmproc-mpi-check primes N | api | die | die-driver | build`

use std::process::ExitCode;

use shmproc_mpi::{Pool, PoolError};
use shmproc_shm::ShmSlice;

/// The tutorial's `is_prime` (trial division by odd numbers up to √n).
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

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn panics_on_13(x: u32) -> u32 {
    assert!(x != 13, "thirteen is unlucky");
    x
}

fn scale(input: &[f32], output: &mut [f32]) {
    for (x, y) in input.iter().zip(output) {
        *y = x.mul_add(2.0, 1.0).sqrt();
    }
}

fn halve(x: f32) -> f32 {
    x / 2.0
}

fn die_at_77(x: u64) -> u64 {
    if x == 77 {
        let _ = shmproc_shm::os::kill(shmproc_shm::os::getpid(), 9);
    }
    x
}

/// FNV-1a over the flags: the digest the test compares with the local
/// pool's.
fn digest(flags: &[bool]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in flags {
        h ^= u64::from(f);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check(what: &str, ok: bool) -> Result<(), String> {
    if ok {
        println!("ok {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}"))
    }
}

fn primes(pool: &Pool, n: u64) -> Result<(), String> {
    let flags = pool.map(is_prime, 0..n).map_err(|e| e.to_string())?;
    check("map returns one result per item", flags.len() as u64 == n)?;
    println!(
        "primes n={n} count={} digest={:#x} workers={} local={}",
        flags.iter().filter(|&&f| f).count(),
        digest(&flags),
        pool.processes(),
        pool.local_workers()
    );
    Ok(())
}

fn api(pool: &Pool) -> Result<(), String> {
    let e = |e: PoolError| e.to_string();
    // imap: input order, lazily.
    let it = pool.imap(square, 0..500u64).map_err(e)?;
    check("imap is exact-size", it.len() == 500)?;
    let got: Result<Vec<u64>, _> = it.collect();
    check(
        "imap yields in input order",
        got.map_err(e)? == (0..500u64).map(square).collect::<Vec<_>>(),
    )?;
    // imap_unordered: every result, once.
    let mut got: Vec<u64> = pool
        .imap_unordered_chunked(square, 0..777u64, 5)
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    got.sort_unstable();
    check(
        "imap_unordered yields every result once",
        got == (0..777u64).map(square).collect::<Vec<_>>(),
    )?;
    // apply_async: several out at once, and a map meanwhile.
    let pending: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(add as fn(u64, u64) -> u64, (i, 100)))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let squares = pool.map(square, [3u64, 4]).map_err(e)?;
    let sums: Vec<u64> = pending
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<_, _>>()
        .map_err(e)?;
    check(
        "apply_async results, with a map in between",
        sums == (100..120).collect::<Vec<_>>() && squares == [9, 16],
    )?;
    check(
        "apply and starmap",
        pool.apply(add as fn(u64, u64) -> u64, (2, 3)).map_err(e)? == 5
            && pool
                .starmap(add as fn(u64, u64) -> u64, [(1, 2), (3, 4)])
                .map_err(e)?
                == [3, 7],
    )?;
    // A panicking task: its message and index reach rank 0; the pool serves on.
    match pool.map_chunked(panics_on_13, 0..100u32, Some(7)) {
        Err(PoolError::TaskPanicked { message, index }) => check(
            &format!("a task's panic reaches rank 0 (index {index}: {message})"),
            index == 13 && message.contains("thirteen is unlucky"),
        )?,
        other => return Err(format!("FAILED: expected TaskPanicked, got {other:?}")),
    }
    let mut it = pool.imap(panics_on_13, 10..20u32).map_err(e)?;
    let first3: Vec<_> = it.by_ref().take(3).collect::<Result<_, _>>().map_err(e)?;
    check(
        "imap yields the items before a panic, then the panic",
        first3 == [10, 11, 12]
            && matches!(
                it.next(),
                Some(Err(PoolError::TaskPanicked { index: 3, .. }))
            ),
    )?;
    check(
        "the pool serves on after a panic",
        pool.map(square, [5u64]).map_err(e)? == [25],
    )?;
    // map_slices over a large f32 array, and map_into.
    let n = 3_000_000usize;
    let values: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let input = ShmSlice::from_slice(&values).map_err(|e| e.to_string())?;
    let output = ShmSlice::new(n, 0f32).map_err(|e| e.to_string())?;
    pool.map_slices(scale, &input, &output).map_err(e)?;
    let mut want = vec![0f32; n];
    scale(&values, &mut want);
    check(
        &format!(
            "map_slices over {n} f32 ({} workers map the driver's segments)",
            pool.local_workers()
        ),
        output.to_vec() == want,
    )?;
    pool.map_into(halve, &input, &output).map_err(e)?;
    check(
        "map_into",
        output.to_vec() == values.iter().map(|&x| halve(x)).collect::<Vec<_>>(),
    )?;
    pool.map_slices(scale, &input, &input).map_err(e)?;
    check(
        "map_slices with input and output one array",
        input.to_vec() == want,
    )?;
    match pool.map_into(
        halve,
        &input,
        &ShmSlice::new(3, 0f32).map_err(|e| e.to_string())?,
    ) {
        Err(PoolError::InvalidArgument(_)) => println!("ok lengths checked"),
        other => return Err(format!("FAILED: expected InvalidArgument, got {other:?}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pool = match Pool::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shmproc-mpi-check: {e}");
            return ExitCode::from(3);
        }
    };
    // Only rank 0 gets here.
    let r = match args.first().map(String::as_str) {
        Some("primes") => {
            let n = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(2_000_000);
            primes(&pool, n)
        }
        Some("api") => api(&pool),
        Some("die") => pool
            .map_chunked(die_at_77, 0..1000u64, Some(1))
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Some("die-driver") => {
            // The driver dies with chunks out: the workers must not wait
            // for it forever.
            let pending = pool.map_async(square, 0..100_000u64);
            let _ = shmproc_shm::os::kill(shmproc_shm::os::getpid(), 9);
            pending.map(|_| ()).map_err(|e| e.to_string())
        }
        Some("build") => pool
            .map(square, 0..10u64)
            .map(|v| println!("ok build {}", v.len()))
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown scenario {other:?}")),
    };
    drop(pool);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
