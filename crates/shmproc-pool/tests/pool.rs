//! Pool: results equal to the sequential loop under every start method,
//! chunksize edge cases, map_slices, panics, closed pools.

use std::time::Duration;

use shmproc_pool::{Pool, PoolError};
use shmproc_process::{Context, StartMethod, get_context};
use shmproc_shm::ShmSlice;
use shmproc_testing::Watchdog;

fn contexts() -> Vec<Context> {
    vec![
        get_context(StartMethod::Fork).allow_fork_with_threads(true),
        get_context(StartMethod::Spawn),
        get_context(StartMethod::ForkServer),
    ]
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

fn is_prime_u8(n: u64) -> u8 {
    u8::from(is_prime(n))
}

fn square(x: u64) -> u64 {
    x * x
}

fn sum_pairs(input: &[u32], out: &mut [u64]) {
    for (x, y) in input.iter().zip(out.iter_mut()) {
        *y = u64::from(*x) + 1_000;
    }
}

fn picky(x: u64) -> u64 {
    assert!(x != 37, "no thirty-seven please");
    x
}

#[test]
fn is_prime_under_every_start_method() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let tutorial = [10_000_019u64, 10_000_033, 10_000_079, 10_000_081];
    let many: Vec<u64> = (10_000_000..12_000_000).collect();
    let expected: Vec<u8> = many.iter().map(|&n| is_prime_u8(n)).collect();
    for ctx in contexts() {
        let method = ctx.start_method();
        let pool = Pool::builder()
            .processes(2)
            .context(ctx)
            .build()
            .expect("pool");
        let got = pool.map_pod(is_prime_u8, &tutorial).expect("map");
        let want: Vec<u8> = tutorial.iter().map(|&n| is_prime_u8(n)).collect();
        assert_eq!(got, want, "{method:?}");
        assert_eq!(
            pool.map_pod(is_prime_u8, &many).expect("map_pod"),
            expected,
            "{method:?}"
        );
        assert_eq!(
            pool.map(is_prime_u8, &many).expect("map"),
            expected,
            "{method:?}"
        );
        pool.close();
        pool.join().expect("join");
    }
}

#[test]
fn chunksize_edge_cases() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(3).expect("pool");
    assert_eq!(pool.map_pod(square, &[]).expect("empty"), Vec::<u64>::new());
    assert_eq!(pool.map_pod(square, &[7]).expect("one"), [49]);
    assert_eq!(pool.map_pod(square, &[1, 2]).expect("fewer"), [1, 4]);
    let v: Vec<u64> = (0..10).collect();
    let want: Vec<u64> = v.iter().map(|&x| x * x).collect();
    assert_eq!(
        pool.map_pod_chunked(square, &v, Some(1000))
            .expect("big chunk"),
        want
    );
    assert_eq!(
        pool.map_pod_chunked(square, &v, Some(1)).expect("chunk 1"),
        want
    );
    assert_eq!(
        pool.map_pod_chunked(square, &v, Some(3)).expect("chunk 3"),
        want
    );
    assert!(matches!(
        pool.map_pod_chunked(square, &v, Some(0)),
        Err(PoolError::InvalidArgument(_))
    ));
    let i = ShmSlice::from_slice(&v).expect("in");
    let o = ShmSlice::new(9, 0u64).expect("out");
    assert!(matches!(
        pool.map_into(square, &i, &o),
        Err(PoolError::InvalidArgument(_))
    ));
}

#[test]
fn zero_processes_is_invalid() {
    assert!(matches!(Pool::new(0), Err(PoolError::InvalidArgument(_))));
}

#[test]
fn map_into_and_map_slices_write_the_shared_output() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(2).expect("pool");
    let v: Vec<u64> = (0..1000).collect();
    let i = ShmSlice::from_slice(&v).expect("in");
    let o = ShmSlice::new(v.len(), 0u64).expect("out");
    pool.map_into(square, &i, &o).expect("map_into");
    assert_eq!(o.to_vec(), v.iter().map(|x| x * x).collect::<Vec<_>>());

    let v: Vec<u32> = (0..777).collect();
    let i = ShmSlice::from_slice(&v).expect("in");
    let o = ShmSlice::new(v.len(), 0u64).expect("out");
    pool.map_slices_chunked(sum_pairs, &i, &o, Some(50))
        .expect("map_slices");
    assert_eq!(
        o.to_vec(),
        v.iter().map(|&x| u64::from(x) + 1000).collect::<Vec<_>>()
    );
    pool.map_slices(sum_pairs, &i, &o)
        .expect("map_slices default");
}

#[test]
fn a_panicking_task_fails_the_call_and_the_pool_serves_on() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(2).expect("pool");
    let v: Vec<u64> = (0..100).collect();
    match pool.map_pod(picky, &v) {
        Err(PoolError::TaskPanicked { message, index }) => {
            assert_eq!(index, 37);
            assert!(message.contains("no thirty-seven"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(pool.map_pod(square, &[3, 4]).expect("after panic"), [9, 16]);
}

#[test]
fn calls_after_close_are_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(1).expect("pool");
    pool.close();
    assert!(matches!(pool.map_pod(square, &[1]), Err(PoolError::Closed)));
    pool.join().expect("join");
    let pool = Pool::new(2).expect("pool");
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    pool.terminate();
    assert!(matches!(pool.map_pod(square, &[1]), Err(PoolError::Closed)));
}

fn slow(x: u64) -> u64 {
    let mut h = x;
    for i in 0..200_000u64 {
        h = std::hint::black_box(h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    std::hint::black_box(h);
    x + 1
}

#[test]
fn sigkill_of_a_worker_mid_map_is_retried() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let pool = Pool::new(2).expect("pool");
    kill_rounds(&pool, 8, Path::Pod);
    kill_rounds(&pool, 8, Path::Serde);
}

#[test]
fn sigkill_mid_map_under_fork_and_spawn() {
    let _w = Watchdog::new(Duration::from_secs(240));
    for ctx in contexts().into_iter().take(2) {
        let pool = Pool::builder()
            .processes(2)
            .context(ctx)
            .build()
            .expect("pool");
        kill_rounds(&pool, 3, Path::Pod);
        kill_rounds(&pool, 3, Path::Serde);
    }
}

/// Which of the pool's two paths a test drives.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `map_pod`: shared arrays, chunks claimed from the cursor.
    Pod,
    /// `map`: serde, batches sent by the result handler.
    Serde,
}

fn map_on(
    pool: &Pool,
    path: Path,
    f: fn(u64) -> u64,
    v: &[u64],
    chunksize: Option<usize>,
) -> Result<Vec<u64>, PoolError> {
    match path {
        Path::Pod => pool.map_pod_chunked(f, v, chunksize),
        Path::Serde => pool.map_chunked(f, v, chunksize),
    }
}

#[test]
fn drop_ends_every_worker() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(3).expect("pool");
    assert_eq!(pool.map_pod(square, &[2]).expect("map"), [4]);
    let pids = pool.pids();
    assert_eq!(pids.len(), 3);
    drop(pool);
    for pid in pids {
        assert!(!shmproc_shm::os::pid_alive(pid), "{pid} still alive");
    }
}

/// `rounds` calls, each with one busy worker SIGKILLed mid-chunk: every call
/// returns complete results, each kill replaces a worker and retries a chunk.
fn kill_rounds(pool: &Pool, rounds: usize, path: Path) {
    let v: Vec<u64> = (0..400).collect();
    let want: Vec<u64> = v.iter().map(|x| x + 1).collect();
    let mut replaced = 0;
    let retried_before = pool.chunks_retried();
    for round in 0..rounds {
        let mut victim = None;
        let got = std::thread::scope(|s| {
            let call = s.spawn(|| map_on(pool, path, slow, &v, None));
            shmproc_testing::wait_until(Duration::from_secs(10), || {
                let busy = pool.busy_pids();
                victim = busy.get(round % busy.len().max(1)).copied();
                victim.is_some() || call.is_finished()
            });
            let victim = victim.expect("a worker held a chunk");
            let _ = shmproc_shm::os::kill(victim, shmproc_shm::os::SIGKILL);
            call.join().expect("map thread")
        });
        let victim = victim.expect("victim");
        assert_eq!(
            got.expect("map after a kill"),
            want,
            "{path:?} round {round}"
        );
        if !pool.pids().contains(&victim) {
            replaced += 1;
        }
    }
    assert_eq!(replaced, rounds, "only {replaced} workers replaced");
    let retried = pool.chunks_retried() - retried_before;
    eprintln!("{replaced} workers replaced, {retried} chunks retried");
    assert!(
        retried as usize >= rounds * 3 / 4,
        "only {retried} chunks retried"
    );
    assert_eq!(pool.map_pod(square, &[5]).expect("still serving"), [25]);
}

#[test]
fn sigkill_with_no_retries_names_pid_signal_and_chunk() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::builder()
        .processes(1)
        .max_retries(0)
        .build()
        .expect("pool");
    let v: Vec<u64> = (0..400).collect();
    for path in [Path::Pod, Path::Serde] {
        let victim = pool.pids()[0];
        let got = std::thread::scope(|s| {
            let call = s.spawn(|| map_on(&pool, path, slow, &v, Some(400)));
            shmproc_testing::wait_until(Duration::from_secs(10), || {
                pool.busy_pids().contains(&victim) || call.is_finished()
            });
            let _ = shmproc_shm::os::kill(victim, shmproc_shm::os::SIGKILL);
            call.join().expect("map thread")
        });
        match got {
            Err(e @ PoolError::WorkerDied { .. }) => {
                assert_eq!(e.signal(), Some(shmproc_shm::os::SIGKILL));
                let PoolError::WorkerDied { pid, chunk, .. } = e else {
                    unreachable!()
                };
                assert_eq!(pid, victim, "{path:?}");
                assert_eq!(chunk, 0..400, "{path:?}");
            }
            other => panic!("{path:?}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(pool.map_pod(square, &[6]).expect("still serving"), [36]);
        assert_ne!(pool.pids()[0], victim, "{path:?}: the worker was replaced");
    }
}

fn medium(x: u64) -> u64 {
    let mut h = x;
    for i in 0..5_000u64 {
        h = std::hint::black_box(h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    std::hint::black_box(h);
    x * 3
}

/// Kills at random moments of a map with one-item chunks, so that kills
/// also land while a worker claims a chunk, counts one done, or sends its
/// results: every call still returns complete, correct results (50 rounds,
/// alternating the `Pod` and the serde path).
#[test]
fn sigkill_at_random_moments_with_small_chunks() {
    let _w = Watchdog::new(Duration::from_secs(300));
    let pool = Pool::new(2).expect("pool");
    let v: Vec<u64> = (0..600).collect();
    let want: Vec<u64> = v.iter().map(|x| x * 3).collect();
    for round in 0..50 {
        let path = if round % 2 == 0 {
            Path::Pod
        } else {
            Path::Serde
        };
        let pids = pool.pids();
        let victim = pids[round % pids.len()];
        // Fault injection at a random point of the call (not synchronisation:
        // the results must be right wherever the kill lands).
        let delay = Duration::from_micros(shmproc_shm::os::random_u64() % 20_000);
        let got = std::thread::scope(|s| {
            let call = s.spawn(|| map_on(&pool, path, medium, &v, Some(1)));
            let t0 = std::time::Instant::now();
            while t0.elapsed() < delay && !call.is_finished() {
                std::hint::spin_loop();
            }
            let _ = shmproc_shm::os::kill(victim, shmproc_shm::os::SIGKILL);
            call.join().expect("map thread")
        });
        assert_eq!(
            got.expect("map after a kill"),
            want,
            "{path:?} round {round}"
        );
    }
    assert_eq!(pool.map_pod(square, &[7]).expect("still serving"), [49]);
}

fn plus_one(input: &[u32], out: &mut [u32]) {
    for (x, y) in input.iter().zip(out.iter_mut()) {
        *y = x + 1;
    }
}

/// Workers keep recent arrays mapped for a repeated call, and let them go
/// once the caller has dropped them: no memory the caller freed stays held.
#[test]
fn workers_release_arrays_the_caller_dropped() {
    use std::os::unix::fs::MetadataExt;
    let _w = Watchdog::new(Duration::from_secs(60));
    let pool = Pool::new(2).expect("pool");
    let i = ShmSlice::from_slice(&(0..1u32 << 20).collect::<Vec<_>>()).expect("in");
    let o = ShmSlice::new(1 << 20, 0u32).expect("out");
    let id = |s: &ShmSlice<u32>| {
        let f = std::fs::File::from(s.segment().fd().try_clone_to_owned().expect("dup"));
        let m = f.metadata().expect("stat");
        (m.dev(), m.ino())
    };
    let (dev, ino) = id(&i);
    for _ in 0..3 {
        pool.map_slices(plus_one, &i, &o).expect("map_slices");
    }
    assert_eq!(o.get(7), Some(8));
    let mapped_by_a_worker = || {
        pool.pids()
            .iter()
            .any(|&p| shmproc_shm::os::maps_file(p, dev, ino) == Some(true))
    };
    assert!(mapped_by_a_worker(), "kept for the next call");
    drop((i, o));
    assert!(
        shmproc_testing::wait_until(Duration::from_secs(20), || !mapped_by_a_worker()),
        "a worker still maps the dropped input"
    );
}
