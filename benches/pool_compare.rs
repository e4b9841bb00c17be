//! Issue 16 (pools): the comparison table. Every contestant runs once per
//! round (round-robin, so that background load hits all alike), and the
//! medians are printed with paired ratios (the median over rounds of the
//! per-round ratio) and a PASS/MISS per target of the issue:
//! 1. `is_prime` (trial division, `u64 -> u8`) over 2M numbers from 10M:
//!    `Pool::map` (the `Pod` path) within 1.05x the ideal static split over
//!    two forked processes and within 1.05x rayon, and at least 25x faster
//!    than Python's `multiprocessing.Pool.map`;
//! 2. `y = a*x + b` over 64M `f32`s in shared arrays: `map_slices` at least
//!    0.9x rayon's speed;
//! 3. pool start (no target: pool against raw processes and Python);
//! 4. `imap(identity, 0..1M, chunksize 1)`: at least 100x Python's items/s;
//! 5. `apply_async` round trip to an idle pool: within 1.3x two raw futex
//!    wake-ups, at least 5x faster than Python and procspawn.
//!
//! Row 1 runs both `map_pod` (Pod items through shared arrays) and the serde
//! `map`; row 5 both `apply_async(..).get()` (through the result-handler
//! thread) and `apply` (served in the caller's thread).
//!
//! A MISS is reported, never a failure. `cargo test --benches` runs one tiny
//! round as a smoke test.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use shmproc_benches::compare::{self, Rounds, Samples, Targets, fmt_ratio};
use shmproc_benches::harness;
use shmproc_benches::pool::{
    AXPY_A, AXPY_B, WORKERS, axpy_slice, fork_exit_wait, identity, is_prime, round_trips,
    static_split,
};
use shmproc_benches::python::{self, PoolRun};
use shmproc_benches::queue::{self, Who};
use shmproc_benches::sizes::{LinkSizes, PoolSizes};
use shmproc_pool::{Pool, PoolError};
use shmproc_process::Process;
use shmproc_shm::{Pod, ShmSlice};

// ---- rows and contestants (sample keys are `<row>/<contestant>`) ------------------------

/// Row 1: milliseconds per call over the whole range.
const PRIME: &str = "prime";
const SEQ: &str = "sequential";
const SPLIT_START: &str = "static_split_start";
const SPLIT_WARM: &str = "static_split_warm";
const RAYON: &str = "rayon";
const POOL_MAP: &str = "shmproc_pool_map_pod";
const POOL_MAP_SERDE: &str = "shmproc_pool_map_serde";
const MAP_INTO: &str = "shmproc_map_into";
const POOL_E2E: &str = "shmproc_pool_e2e";
const PY_MAP: &str = "python_pool_map";
const PY_E2E: &str = "python_pool_e2e";

/// Row 2: milliseconds per pass.
const AXPY: &str = "axpy";
const SLICES: &str = "shmproc_map_slices";
const SLICES_64K: &str = "shmproc_map_slices_64k";
const SLICES_AGAIN: &str = "shmproc_map_slices_again";
/// The tuned chunk of `SLICES_64K` and rayon's pieces: 64 Ki `f32`s, so a
/// chunk's private input and output copies (512 KiB) stay in a 1 MiB L2.
const CHUNK_64K: usize = 64 << 10;

/// Row 3: milliseconds per start (the round's median).
const START: &str = "start";
const POOL_FIRST_MAP: &str = "shmproc_pool_first_map";
const POOL_BUILD: &str = "shmproc_pool_build";
const FORK: &str = "fork_exit_waitpid";
const PROCESS: &str = "shmproc_process";
const PY_START: &str = "python_pool_first_map";

/// Row 4: items per second.
const IMAP: &str = "imap";
const IMAP_SHMPROC: &str = "shmproc_imap";
const PY_IMAP: &str = "python_imap";

/// Row 5: round-trip microseconds, p50 (`apply`) and p99 (`apply_p99`).
const APPLY: &str = "apply";
const APPLY_P99: &str = "apply_p99";
const FLOOR: &str = "futex_floor";
const APPLY_SHMPROC: &str = "shmproc_apply_async";
const APPLY_SYNC: &str = "shmproc_apply";
const PROCSPAWN: &str = "procspawn_pool";
const PY_APPLY: &str = "python_apply_async";

fn key(row: &str, who: &str) -> String {
    format!("{row}/{who}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `Pool::map_pod`: `Pod` items through the pool's shared arrays.
fn pool_map_pod<T: Pod + Send + Sync, R: Pod + Send + Sync>(
    pool: &Pool,
    f: fn(T) -> R,
    items: &[T],
) -> Result<Vec<R>, PoolError> {
    pool.map_pod(f, items)
}

/// A short idle gap between pool starts, so that one start's background
/// work (the fork server forking its next spare, the last pool's workers
/// being reaped) is not timed in the next.
#[allow(clippy::disallowed_methods)] // Idle time between cases is the point, not a wait for an event.
fn settle() {
    std::thread::sleep(Duration::from_millis(5));
}

/// The target of `shmproc_process::Process` starts.
fn noop(_: ()) {}

/// What every round uses, made once.
struct Ctx {
    sz: PoolSizes,
    /// The pool of rows 1, 2, 4 and 5, started before the rounds.
    pool: Pool,
    /// Row 1's input, in the user's `Vec`.
    numbers: Vec<u64>,
    /// Row 1's answer (a sequential run before the rounds).
    expected: Vec<u8>,
    /// Row 1's input and output as shared arrays, for `map_into`.
    prime_in: ShmSlice<u64>,
    prime_out: ShmSlice<u8>,
    /// Row 2's arrays.
    ax: ShmSlice<f32>,
    ay: ShmSlice<f32>,
    /// Row 2's checked indices, with the input there.
    probes: Vec<(usize, f32)>,
    /// procspawn's pool (row 5), or why it could not start.
    procspawn: Result<procspawn::Pool, String>,
}

impl Ctx {
    fn check_primes(&self, who: &str, got: &[u8]) {
        assert!(got == self.expected, "{who}: wrong is_prime results");
    }

    /// Poisons row 2's checked outputs, so a contestant must write them.
    fn arm_axpy(&self) {
        for &(i, _) in &self.probes {
            self.ay.set(i, f32::NAN).expect("probe in bounds");
        }
    }

    fn check_axpy(&self, who: &str) {
        for &(i, x) in &self.probes {
            let y = self.ay.get(i).expect("probe in bounds");
            assert!(
                y == AXPY_A * x + AXPY_B,
                "{who}: y[{i}] = {y}, want {}",
                AXPY_A * x + AXPY_B
            );
        }
    }
}

// ---- row 1: is_prime --------------------------------------------------------------------

fn prime_row(c: &Ctx, s: &mut Samples) {
    let n = c.numbers.len();

    let t = Instant::now();
    let v: Vec<u8> = c.numbers.iter().map(|&x| is_prime(x)).collect();
    s.push(key(PRIME, SEQ), ms(t.elapsed()));
    c.check_primes(SEQ, &v);

    for (who, prestarted) in [(SPLIT_START, false), (SPLIT_WARM, true)] {
        let mut out = vec![0u8; n];
        let d = static_split(&c.numbers, &mut out, is_prime, prestarted);
        s.push(key(PRIME, who), ms(d));
        c.check_primes(who, &out);
    }

    let t = Instant::now();
    let v: Vec<u8> = c.numbers.par_iter().map(|&x| is_prime(x)).collect();
    s.push(key(PRIME, RAYON), ms(t.elapsed()));
    c.check_primes(RAYON, &v);

    let t = Instant::now();
    let v = pool_map_pod(&c.pool, is_prime, &c.numbers).expect("Pool::map");
    s.push(key(PRIME, POOL_MAP), ms(t.elapsed()));
    c.check_primes(POOL_MAP, &v);

    let t = Instant::now();
    let v = c.pool.map(is_prime, &c.numbers).expect("Pool::map");
    s.push(key(PRIME, POOL_MAP_SERDE), ms(t.elapsed()));
    c.check_primes(POOL_MAP_SERDE, &v);

    c.prime_out
        .write_from(0, &vec![2u8; n])
        .expect("same length");
    let t = Instant::now();
    c.pool
        .map_into(is_prime, &c.prime_in, &c.prime_out)
        .expect("Pool::map_into");
    s.push(key(PRIME, MAP_INTO), ms(t.elapsed()));
    c.check_primes(MAP_INTO, &c.prime_out.to_vec());

    let t = Instant::now();
    let pool = Pool::new(WORKERS).expect("Pool::new");
    let v = pool_map_pod(&pool, is_prime, &c.numbers).expect("Pool::map");
    drop(pool);
    s.push(key(PRIME, POOL_E2E), ms(t.elapsed()));
    c.check_primes(POOL_E2E, &v);
}

/// Python's row 1: its map over the range's first `python_prime_n` numbers,
/// scaled to the whole range; end to end: its start and exit plus that.
fn prime_python(c: &Ctx, s: &mut Samples, py: &PoolRun) {
    let found: u64 = c.expected[..c.sz.python_prime_n]
        .iter()
        .map(|&b| u64::from(b))
        .sum();
    assert_eq!(py.prime_count, found, "python's is_prime disagrees");
    let scale = c.sz.prime_n as f64 / c.sz.python_prime_n as f64;
    s.push(key(PRIME, PY_MAP), py.prime_map_s * scale * 1e3);
    s.push(
        key(PRIME, PY_E2E),
        (py.prime_start_s + py.prime_map_s * scale + py.prime_exit_s) * 1e3,
    );
}

// ---- row 2: y = a*x + b over shared arrays -----------------------------------------------

/// The in-place baselines: `axpy_slice` over the shared arrays themselves
/// (zero-copy, as the pool's workers would ideally run), sequential or with
/// rayon over 64 Ki-element pieces.
#[allow(
    unsafe_code,
    reason = "the baselines borrow the shared arrays in place (ShmSlice::as_slice / as_mut_slice)"
)]
fn axpy_in_place(x: &ShmSlice<f32>, y: &ShmSlice<f32>, parallel: bool) {
    // SAFETY: `as_slice` asks that no process writes any element meanwhile:
    // nothing writes `x` after it was filled; the pool's workers only read it, and only
    // during a pool call, which is not running (calls return when done).
    let xs = unsafe { x.as_slice() };
    // SAFETY: `as_mut_slice` asks for no other accessor and no other borrow of
    // this handle: no pool call is running, so its workers touch neither array;
    // this is the only borrow of `y`'s handle (`xs` borrows `x`'s), and the
    // checks read `y` only after this returns.
    let ys = unsafe { y.as_mut_slice() };
    if parallel {
        xs.par_chunks(CHUNK_64K)
            .zip(ys.par_chunks_mut(CHUNK_64K))
            .for_each(|(x, y)| axpy_slice(x, y));
    } else {
        axpy_slice(xs, ys);
    }
}

fn axpy_row(c: &Ctx, s: &mut Samples) {
    for (who, parallel) in [(SEQ, false), (RAYON, true)] {
        c.arm_axpy();
        let t = Instant::now();
        axpy_in_place(&c.ax, &c.ay, parallel);
        s.push(key(AXPY, who), ms(t.elapsed()));
        c.check_axpy(who);
    }
    // The first call of the round follows other rows' calls; the second is
    // the same call again at once (the workers still map the arrays).
    for (who, chunk) in [
        (SLICES, None),
        (SLICES_AGAIN, None),
        (SLICES_64K, Some(CHUNK_64K)),
    ] {
        c.arm_axpy();
        let t = Instant::now();
        c.pool
            .map_slices_chunked(axpy_slice, &c.ax, &c.ay, chunk)
            .expect("Pool::map_slices");
        s.push(key(AXPY, who), ms(t.elapsed()));
        c.check_axpy(who);
    }
}

// ---- row 3: start ----------------------------------------------------------------------

fn start_row(c: &Ctx, s: &mut Samples) {
    let mut v: [Vec<f64>; 4] = Default::default();
    for _ in 0..c.sz.start_samples {
        settle();
        let t = Instant::now();
        let pool = Pool::new(WORKERS).expect("Pool::new");
        let r = pool_map_pod(&pool, is_prime, &[2u64, 4]).expect("first map");
        v[0].push(ms(t.elapsed()));
        assert_eq!(r, [1, 0]);
        drop(pool);

        settle();
        let t = Instant::now();
        let pool = Pool::builder().build().expect("Pool::builder().build()");
        v[1].push(ms(t.elapsed()));
        drop(pool);

        settle();
        v[2].push(ms(fork_exit_wait(WORKERS)));

        settle();
        let t = Instant::now();
        let procs: Vec<Process> = (0..WORKERS)
            .map(|_| {
                Process::builder()
                    .target(noop, ())
                    .start()
                    .expect("Process start")
            })
            .collect();
        for p in &procs {
            assert_eq!(p.join().expect("Process join"), 0);
        }
        v[3].push(ms(t.elapsed()));
    }
    for (who, v) in [POOL_FIRST_MAP, POOL_BUILD, FORK, PROCESS].iter().zip(&v) {
        s.push(key(START, who), harness::median(v));
    }
}

// ---- row 4: imap per-task overhead --------------------------------------------------------

/// Row 4: shmproc's `imap` and Python's,
/// items/s.
fn imap_row(c: &Ctx, s: &mut Samples, py: Option<&PoolRun>) {
    if let Some(rate) = shmproc_imap(&c.pool, c.sz.imap_n) {
        s.push(key(IMAP, IMAP_SHMPROC), rate);
    }
    if let Some(py) = py {
        s.push(key(IMAP, PY_IMAP), py.imap_items_per_s);
    }
}

/// `pool.imap(identity, 0..n)` (chunksize 1, Python's default for `imap`),
/// every result consumed in order and checked: items/s.
fn shmproc_imap(pool: &Pool, n: u64) -> Option<f64> {
    let t = Instant::now();
    let mut count = 0u64;
    for (i, r) in pool.imap(identity, 0..n).expect("imap").enumerate() {
        assert_eq!(r.expect("imap item"), i as u64);
        count += 1;
    }
    assert_eq!(count, n);
    Some(n as f64 / t.elapsed().as_secs_f64())
}

// ---- row 5: apply_async round trip --------------------------------------------------------

/// Row 5: the futex floor (two raw wake-ups: the queue bench's
/// `futex_pingpong`, 20 µs pause before each ping, one round trip = twice its
/// one-way p50), shmproc's `apply_async` and `apply`,
/// procspawn's pool and Python's, round-trip µs.
fn apply_row(c: &Ctx, s: &mut Samples, py: Option<&PoolRun>) {
    let mut push = |who: &str, (p50, p99): (f64, f64)| {
        s.push(key(APPLY, who), p50);
        s.push(key(APPLY_P99, who), p99);
    };
    let floor = queue::latency(Who::FutexFloor, 8, c.sz.apply_rtts, 1, &LinkSizes::queue())
        .expect("the futex floor has an 8-byte ping-pong");
    push(
        FLOOR,
        (
            2.0 * floor.quantile(0.5) / 1e3,
            2.0 * floor.quantile(0.99) / 1e3,
        ),
    );
    if let Some(rt) = shmproc_apply_async(&c.pool, &c.sz) {
        push(APPLY_SHMPROC, rt);
    }
    {
        push(APPLY_SYNC, shmproc_apply(&c.pool, &c.sz));
    }
    if let Ok(pp) = &c.procspawn {
        let rt = round_trips(
            c.sz.apply_rtts,
            c.sz.apply_rtts / 10,
            c.sz.apply_gap_ns,
            |i| {
                let r = pp.spawn(i, identity).join().expect("procspawn round trip");
                assert_eq!(r, i);
            },
        );
        push(PROCSPAWN, rt);
    }
    if let Some(py) = py {
        push(PY_APPLY, (py.apply_p50_us, py.apply_p99_us));
    }
}

/// `pool.apply_async(identity, (i,)).get()` round trips to the idle pool
/// (p50, p99 µs); `round_trips` pauses `apply_gap_ns` before each call,
/// untimed, so the workers are asleep when it comes.
fn shmproc_apply_async(pool: &Pool, sz: &PoolSizes) -> Option<(f64, f64)> {
    let f: fn(u64) -> u64 = identity;
    Some(round_trips(
        sz.apply_rtts,
        sz.apply_rtts / 10,
        sz.apply_gap_ns,
        |i| {
            let r = pool.apply_async(f, (i,)).expect("apply_async");
            assert_eq!(r.get().expect("apply_async result"), i);
        },
    ))
}

/// The same round trips with `pool.apply(identity, (i,))`, which serves the
/// call in the caller's thread when the pool is idle.
fn shmproc_apply(pool: &Pool, sz: &PoolSizes) -> (f64, f64) {
    let f: fn(u64) -> u64 = identity;
    round_trips(sz.apply_rtts, sz.apply_rtts / 10, sz.apply_gap_ns, |i| {
        assert_eq!(pool.apply(f, (i,)).expect("apply"), i)
    })
}

// ---- tables -----------------------------------------------------------------------------

/// Prints one row's table: each contestant's median (in `unit`), `extra`
/// of it (in `extra_unit`), and its paired ratios against `refs` (this
/// row's value over the reference's).
fn table(
    s: &Samples,
    row: &str,
    (unit, extra_unit): (&str, &str),
    whos: &[&str],
    refs: &[&str],
    extra: impl Fn(&str, f64) -> String,
) {
    print!("{:<24} {:>11} {:>12}", "case", unit, extra_unit);
    for r in refs {
        print!(" {:>22}", format!("x {r}"));
    }
    println!();
    for who in whos {
        let k = key(row, who);
        let Some(m) = s.median(&k) else {
            println!("{who:<24} {:>11}", "-");
            continue;
        };
        print!("{who:<24} {m:>11.3} {:>12}", extra(who, m));
        for r in refs {
            print!(" {:>22}", fmt_ratio(s.ratio(&k, &key(row, r))));
        }
        println!();
    }
}

fn main() {
    // procspawn's workers re-run this binary: they start serving here.
    procspawn::init();
    let sz = PoolSizes::for_this_run();
    compare::banner("pool_compare", &compare::rounds_note(sz.reps));

    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build_global()
        .expect("rayon's global pool");
    let pool = Pool::new(WORKERS).expect("Pool::new");
    let default_workers = Pool::builder()
        .build()
        .expect("Pool::builder().build()")
        .processes();
    let numbers: Vec<u64> = (sz.prime_start..).take(sz.prime_n).collect();
    let expected: Vec<u8> = numbers.iter().map(|&x| is_prime(x)).collect();
    let x: Vec<f32> = (0..sz.axpy_len).map(|i| (i % 1000) as f32 * 0.5).collect();
    let stride = 4099;
    let probes: Vec<(usize, f32)> = (0..sz.axpy_len)
        .step_by(stride)
        .chain([sz.axpy_len - 1])
        .map(|i| (i, x[i]))
        .collect();
    let c = Ctx {
        prime_in: ShmSlice::from_slice(&numbers).expect("shared input"),
        prime_out: ShmSlice::new(sz.prime_n, 0u8).expect("shared output"),
        ax: ShmSlice::from_slice(&x).expect("shared x"),
        ay: ShmSlice::new(sz.axpy_len, 0f32).expect("shared y"),
        procspawn: procspawn::Pool::new(WORKERS).map_err(|e| e.to_string()),
        sz,
        pool,
        numbers,
        expected,
        probes,
    };
    drop(x);

    println!(
        "{WORKERS} workers everywhere (Pool::new({WORKERS}), rayon's global pool of {WORKERS} threads, Python's Pool({WORKERS}), \
         procspawn::Pool::new({WORKERS})), not pinned; the static split's two forked processes pinned one per CPU ({}); \
         Pool::builder().build() starts {default_workers} workers here; the pools' start method: shmproc's default (forkserver), Python's default (fork)",
        harness::pinning()
    );
    // Warm-up: page in the arrays in this process and the workers, start the
    // fork server, rayon's threads, procspawn's workers.
    let _ = pool_map_pod(&c.pool, is_prime, &c.numbers[..c.numbers.len().min(1000)]);
    axpy_in_place(&c.ax, &c.ay, true);
    c.pool
        .map_slices(axpy_slice, &c.ax, &c.ay)
        .expect("Pool::map_slices");
    if let Ok(pp) = &c.procspawn {
        for i in 0..4 {
            let _ = pp.spawn(i, identity).join();
        }
    }

    let mut python_skip: Option<String> = None;
    let all = Rounds::for_this_run(c.sz.reps).run(|s| {
        prime_row(&c, s);
        axpy_row(&c, s);
        start_row(&c, s);
        let py = if python_skip.is_none() {
            match python::pool(&c.sz) {
                Ok(r) => Some(r),
                Err(why) => {
                    python_skip = Some(why);
                    None
                }
            }
        } else {
            None
        };
        if let Some(py) = &py {
            prime_python(&c, s, py);
            s.push(key(START, PY_START), py.start_ms);
        }
        imap_row(&c, s, py.as_ref());
        apply_row(&c, s, py.as_ref());
    });
    let (shared, cross) = (all.shared_l3(), all.cross_l3());
    let s = compare::table_samples(&all, &shared);

    // ---- the tables
    let n = c.sz.prime_n;
    println!();
    println!(
        "1. is_prime (trial division, u64 -> u8) over {n} numbers from {}: ms per call, medians over rounds; \
         \"x <case>\": this row's time over that case's, the median of per-round ratios (lower is faster). \
         {PY_MAP}: its map of the first {} numbers, scaled to {n}; {PY_E2E}: Pool({WORKERS}) + a first tiny map + that + the with-block's exit",
        c.sz.prime_start, c.sz.python_prime_n
    );
    table(
        s,
        PRIME,
        ("ms", "M items/s"),
        &[
            SEQ,
            SPLIT_START,
            SPLIT_WARM,
            RAYON,
            POOL_MAP,
            POOL_MAP_SERDE,
            MAP_INTO,
            POOL_E2E,
            PY_MAP,
            PY_E2E,
        ],
        &[SEQ, SPLIT_WARM, RAYON, POOL_MAP],
        |_, m| format!("{:.2}", n as f64 / m / 1e3),
    );

    let bytes = 2.0 * c.sz.axpy_len as f64 * 4.0;
    println!();
    println!(
        "2. y = {AXPY_A}*x + {AXPY_B} over {} f32 in shared arrays ({} in, as much out): ms per pass, GB/s = (in + out bytes) / time; \
         \"x <case>\": time ratio as above; {SEQ} and {RAYON} run in place on the shared arrays (as_slice / as_mut_slice), \
         {RAYON} over {CHUNK_64K}-element pieces; {SLICES}: default chunks (len / {}), the round's first call on the arrays after other rows' calls (the workers map pages afresh), \
         {SLICES_AGAIN}: the same call again at once (the workers keep the arrays mapped), {SLICES_64K}: chunks of {CHUNK_64K}, right after",
        c.sz.axpy_len,
        harness::size_label(c.sz.axpy_len * 4),
        4 * WORKERS
    );
    table(
        s,
        AXPY,
        ("ms", "GB/s"),
        &[SEQ, RAYON, SLICES, SLICES_AGAIN, SLICES_64K],
        &[SEQ, RAYON],
        |_, m| format!("{:.2}", bytes / m / 1e6),
    );

    println!();
    println!(
        "3. start of {WORKERS} processes, ms (each round's median of {} starts, 5 ms idle before each): \
         {POOL_FIRST_MAP}: Pool::new({WORKERS}) + a first map of 2 items; {POOL_BUILD}: Pool::builder().build() alone; \
         {FORK}: fork + _exit + waitpid x{WORKERS}; {PROCESS}: Process start + join x{WORKERS} (forkserver); \
         {PY_START}: Pool({WORKERS}) + map(identity, range(2))",
        c.sz.start_samples
    );
    table(
        s,
        START,
        ("ms", ""),
        &[POOL_FIRST_MAP, POOL_BUILD, FORK, PROCESS, PY_START],
        &[FORK, POOL_FIRST_MAP],
        |_, _| String::new(),
    );

    println!();
    println!(
        "4. imap(identity, range(n), chunksize=1): items/s (shmproc: n = {}; Python: n = {}); \
         \"x <case>\": this row's rate over that case's",
        c.sz.imap_n, c.sz.python_imap_n
    );
    table(
        s,
        IMAP,
        ("items/s", ""),
        &[IMAP_SHMPROC, PY_IMAP],
        &[PY_IMAP],
        |_, _| String::new(),
    );

    println!();
    println!(
        "5. round trip to an idle pool, µs (p50; {} round trips, each after a {} µs busy pause, untimed): \
         {FLOOR}: two raw futex wake-ups between two pinned processes (futex_pingpong, 2x its one-way p50); \
         {APPLY_SHMPROC}: apply_async(identity, (i,)).get() (through the pool's result-handler thread); \
         {APPLY_SYNC}: apply(identity, (i,)) (served in the caller's thread); \
         {PROCSPAWN}: procspawn::Pool::spawn(i, identity).join(); {PY_APPLY}: apply_async(identity, (i,)).get()",
        c.sz.apply_rtts,
        c.sz.apply_gap_ns / 1000
    );
    table(
        s,
        APPLY,
        ("p50 us", "p99 us"),
        &[FLOOR, APPLY_SHMPROC, APPLY_SYNC, PROCSPAWN, PY_APPLY],
        &[FLOOR, APPLY_SHMPROC],
        |who, _| {
            s.median(&key(APPLY_P99, who))
                .map_or_else(String::new, |p99| format!("{p99:.3}"))
        },
    );
    if let Err(why) = &c.procspawn {
        println!("{PROCSPAWN}: SKIPPED: {why}");
    }
    if let Some(why) = &python_skip {
        println!();
        println!("python: SKIPPED: {why}");
    }

    // ---- raw per-round samples
    println!();
    println!("raw per-round samples, every round (ms; items/s; us):");
    all.print_placement();
    for who in [
        SPLIT_WARM,
        RAYON,
        POOL_MAP,
        POOL_MAP_SERDE,
        MAP_INTO,
        PY_MAP,
    ] {
        all.print_raw(&key(PRIME, who), 1.0);
    }
    for who in [RAYON, SLICES, SLICES_AGAIN, SLICES_64K] {
        all.print_raw(&key(AXPY, who), 1.0);
    }
    for who in [POOL_FIRST_MAP, FORK, PY_START] {
        all.print_raw(&key(START, who), 1.0);
    }
    all.print_raw(&key(IMAP, IMAP_SHMPROC), 1.0);
    all.print_raw(&key(IMAP, PY_IMAP), 1.0);
    for who in [FLOOR, APPLY_SHMPROC, APPLY_SYNC, PROCSPAWN, PY_APPLY] {
        all.print_raw(&key(APPLY, who), 1.0);
    }

    // ---- targets
    println!();
    let t = Targets::new(&all, &shared, &cross);
    t.header(16);
    let p = |who: &str| key(PRIME, who);
    for ours in [POOL_MAP, POOL_MAP_SERDE, MAP_INTO] {
        t.line(
            &format!("is_prime within 1.05x the static split, workers started first: {ours}"),
            &p(ours),
            &p(SPLIT_WARM),
            |r| r <= 1.05,
        );
        t.line(
            &format!("is_prime within 1.05x the static split, its forks timed: {ours}"),
            &p(ours),
            &p(SPLIT_START),
            |r| r <= 1.05,
        );
        t.line(
            &format!("is_prime within 1.05x rayon: {ours}"),
            &p(ours),
            &p(RAYON),
            |r| r <= 1.05,
        );
    }
    t.line(
        "is_prime at least 25x faster than Python's Pool.map (pools started): shmproc_pool_map_pod",
        &p(PY_MAP),
        &p(POOL_MAP),
        |r| r >= 25.0,
    );
    t.line(
        "is_prime at least 25x faster than Python's Pool.map (pools started): shmproc_pool_map_serde",
        &p(PY_MAP),
        &p(POOL_MAP_SERDE),
        |r| r >= 25.0,
    );
    t.line(
        "is_prime at least 25x faster than Python's Pool.map, end to end (pool start + map + exit)",
        &p(PY_E2E),
        &p(POOL_E2E),
        |r| r >= 25.0,
    );
    for ours in [SLICES, SLICES_AGAIN, SLICES_64K] {
        t.line(
            &format!("y = a*x + b at least 0.9x rayon's speed: {ours}"),
            &key(AXPY, RAYON),
            &key(AXPY, ours),
            |r| r >= 0.9,
        );
    }
    t.line(
        "imap chunksize 1 at least 100x Python's items/s: shmproc_imap",
        &key(IMAP, IMAP_SHMPROC),
        &key(IMAP, PY_IMAP),
        |r| r >= 100.0,
    );
    for ours in [APPLY_SHMPROC, APPLY_SYNC] {
        t.line(
            &format!("round trip within 1.3x two raw futex wake-ups: {ours}"),
            &key(APPLY, ours),
            &key(APPLY, FLOOR),
            |r| r <= 1.3,
        );
        for base in [PY_APPLY, PROCSPAWN] {
            t.line(
                &format!("round trip at least 5x faster than {base}: {ours}"),
                &key(APPLY, base),
                &key(APPLY, ours),
                |r| r >= 5.0,
            );
        }
    }
    compare::smoke_note();
}
