//! A/B harness for the `Queue` hot path: one process, no contention, a
//! fixed number of operations, meant to run under callgrind for
//! deterministic instruction counts (`Ir` per operation = the difference of
//! two runs with different counts, divided by the difference of the counts).
//!
//! ```text
//! cargo bench -p shmproc-benches --bench queue_hotpath --no-run
//! valgrind --tool=callgrind target/release/deps/queue_hotpath-<hash> <mode> <n>
//! ```
//!
//! Modes: `try` (`try_put` + `try_get` of a `u64`), `block` (`put` + `get`),
//! `empty` (`try_get` on an empty queue, the busy-poll miss), `try64`
//! (`try_put` + `try_get` of a `[u8; 64]`). Without arguments it prints
//! wall-clock nanoseconds per operation for each mode (a sanity check, not
//! a measurement: use `queue_compare` for those).
//!
//! Three quick cross-process modes (a forked child pinned to CPU 1, the
//! parent to CPU 0), for alternating A/B runs of two builds on a noisy
//! machine: `pingpong <n>` (one-way p50 in ns of a `try_put`/`try_get`
//! busy-poll ping-pong of `u64`s, timed 10 round trips at a time), `stream
//! <n>` (M msgs/s of `[u8; 64]`, blocking `put`/`get`, 1 -> 1; `stream1000`:
//! the same through a queue of maxsize 1000, 1024 slots, so producers also
//! check the consumer index) and `woken
//! <n>` (one-way p50 of a blocking ping-pong with a 20 us pause before each
//! ping, so the receiver sleeps, and the heavy fences each side issued).
//! `spsc <n>` streams 64 B messages through the minimal SPSC ring, the floor
//! for `stream` in the same placement. `trickle <n>`, `trickle_pipe <n>`
//! and `trickle_futex <n>`: a consumer (`Queue::get`,
//! `Connection::recv_bytes_into`, a raw futex waiter) fed a message every
//! 100 us, its CPU as a share of a core and per message.

use std::hint::black_box;
use std::time::Instant;

use shmproc_benches::harness::{SharedMap, pin_to};
use shmproc_channel::{Queue, TryGetError, TryPutError};
use shmproc_shm::sync::{AtomicU64, Ordering};

fn run(mode: &str, n: u64) {
    match mode {
        "try" => {
            let q = Queue::<u64>::new(64).expect("queue");
            for i in 0..n {
                q.try_put(black_box(i)).expect("try_put");
                black_box(q.try_get().expect("try_get"));
            }
        }
        "block" => {
            let q = Queue::<u64>::new(64).expect("queue");
            for i in 0..n {
                q.put(black_box(i)).expect("put");
                black_box(q.get().expect("get"));
            }
        }
        "empty" => {
            let q = Queue::<u64>::new(64).expect("queue");
            for _ in 0..n {
                assert!(matches!(black_box(&q).try_get(), Err(TryGetError::Empty)));
            }
        }
        "try64" => {
            let q = Queue::<[u8; 64]>::new(64).expect("queue");
            for i in 0..n {
                q.try_put(black_box([i as u8; 64])).expect("try_put");
                black_box(q.try_get().expect("try_get"));
            }
        }
        "pingpong" => pingpong(n),
        "stream" => stream(n, 1024),
        "stream1000" => stream(n, 1000),
        "spsc" => spsc(n),
        "ustream" => ustream(n, false),
        "uspin" => ustream(n, true),
        "uinto" => ustream_into(n),
        "uspsc" => uspsc(n),
        "trickle" => trickle(n, Waiter::Queue),
        "trickle_futex" => trickle(n, Waiter::Futex),
        "trickle_pipe" => trickle(n, Waiter::Pipe),
        "woken" => woken(n),
        other => {
            panic!(
                "unknown mode {other} (try, block, empty, try64, pingpong, stream, stream1000, woken, spsc)"
            )
        }
    }
}

/// Runs `child` in a forked process pinned to CPU 1 and `parent` here on
/// CPU 0, then waits for the child.
#[allow(unsafe_code)] // fork, _exit, waitpid.
fn forked(child: impl FnOnce(), parent: impl FnOnce()) {
    // SAFETY: the bench is single-threaded here; the child only runs queue
    // operations (shared memory and atomics) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        pin_to(1);
        child();
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pin_to(0);
    parent();
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0, "child status");
}

fn spin_put(q: &Queue<u64>, v: u64) {
    while q.try_put(v).is_err() {
        std::hint::spin_loop();
    }
}

fn spin_get(q: &Queue<u64>) -> u64 {
    loop {
        match q.try_get() {
            Ok(v) => return v,
            Err(TryGetError::Empty) => std::hint::spin_loop(),
            Err(e) => panic!("try_get: {e}"),
        }
    }
}

fn pingpong(n: u64) {
    let ping = Queue::<u64>::new(64).expect("queue");
    let pong = Queue::<u64>::new(64).expect("queue");
    let batches = n / 10;
    forked(
        || {
            for i in 0..batches * 10 {
                let v = spin_get(&ping);
                assert_eq!(v, i);
                spin_put(&pong, v);
            }
        },
        || {
            let mut samples = Vec::with_capacity(batches as usize);
            for b in 0..batches {
                let t = Instant::now();
                for i in 0..10 {
                    spin_put(&ping, b * 10 + i);
                    spin_get(&pong);
                }
                samples.push(t.elapsed().as_nanos() as f64 / 20.0);
            }
            samples.sort_by(f64::total_cmp);
            let p50 = samples[samples.len() / 2];
            println!("pingpong one-way p50 {p50:.1} ns");
        },
    );
}

/// Blocking ping-pong with a 20 us untimed pause before each ping, so the
/// receiver sleeps: the p50 one-way time of a woken `get`, and how many
/// heavy fences (membarrier) each side issued.
fn woken(n: u64) {
    let ping = Queue::<u64>::new(64).expect("queue");
    let pong = Queue::<u64>::new(64).expect("queue");
    forked(
        || {
            for i in 0..n {
                let v = ping.get().expect("get");
                assert_eq!(v, i);
                pong.put(v).expect("put");
            }
            eprintln!(
                "woken: ponger heavy fences {}",
                shmproc_sync::asym::heavy_calls()
            );
        },
        || {
            let mut samples = Vec::with_capacity(n as usize);
            for i in 0..n {
                let until = Instant::now() + std::time::Duration::from_micros(20);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                ping.put(i).expect("put");
                pong.get().expect("get");
                samples.push(t.elapsed().as_nanos() as f64 / 2.0);
            }
            samples.sort_by(f64::total_cmp);
            let p50 = samples[samples.len() / 2];
            println!(
                "woken one-way p50 {p50:.1} ns, pinger heavy fences {}",
                shmproc_sync::asym::heavy_calls()
            );
        },
    );
}

fn stream(n: u64, maxsize: usize) {
    let q = Queue::<[u8; 64]>::new(maxsize).expect("queue");
    forked(
        || {
            // Staged, as in the queue streams (`stage_len` in src/queue.rs): built whole long
            // before the send, so the send's loads need not wait for the
            // store buffer.
            let msgs: Vec<[u8; 64]> = (0..64u8).map(|i| [i; 64]).collect();
            for i in 0..n {
                q.put(msgs[(i & 63) as usize]).expect("put");
            }
        },
        || {
            let t = Instant::now();
            for _ in 0..n {
                black_box(q.get().expect("get"));
            }
            let mps = n as f64 / t.elapsed().as_secs_f64() / 1e6;
            println!("stream 64B 1->1 maxsize {maxsize} {mps:.2} M msgs/s");
        },
    );
}

/// The user's copy-in/copy-out pattern (issue 18): the producer copies each
/// message out of its own buffer (1024 messages, built before) right before
/// the put, the consumer copies each one into its own buffer right after
/// the get and reads it there. `spin`: `try_put`/`try_get` in a spin loop.
fn ustream(n: u64, spin: bool) {
    let q = Queue::<[u8; 64]>::new(1024).expect("queue");
    forked(
        || {
            let src: Vec<[u8; 64]> = (0..1024u32).map(|i| [i as u8; 64]).collect();
            for i in 0..n {
                let mut m = [0u8; 64];
                m.copy_from_slice(black_box(&src[(i & 1023) as usize]));
                if spin {
                    let mut m = m;
                    loop {
                        match q.try_put(m) {
                            Ok(()) => break,
                            Err(TryPutError::Full(v)) => m = v,
                            Err(e) => panic!("try_put: {e}"),
                        }
                        std::hint::spin_loop();
                    }
                } else {
                    q.put(m).expect("put");
                }
            }
        },
        || {
            let mut dst = vec![[0u8; 64]; 1024];
            let mut sum = 0u64;
            let t = Instant::now();
            for i in 0..n {
                let v = if spin {
                    loop {
                        match q.try_get() {
                            Ok(v) => break v,
                            Err(TryGetError::Empty) => std::hint::spin_loop(),
                            Err(e) => panic!("try_get: {e}"),
                        }
                    }
                } else {
                    q.get().expect("get")
                };
                let d = &mut dst[(i & 1023) as usize];
                d.copy_from_slice(&v);
                sum += u64::from(black_box(d)[0]);
            }
            let mps = n as f64 / t.elapsed().as_secs_f64() / 1e6;
            black_box(sum);
            let how = if spin { "try_put/try_get" } else { "put/get" };
            // Which protocol each side ran at the end (a lease held by its
            // thread: the plain-store fast path; shared: the CAS protocol),
            // and the CPU each process was on: evidence for a slow run.
            println!(
                "user stream 64B 1->1 {how} {mps:.2} M msgs/s (leases: put {:?}, get {:?}; consumer on CPU {})",
                q.producer_lease(),
                q.consumer_lease(),
                current_cpu()
            );
        },
    );
}

/// As [`ustream`] with the in-place forms: `put_with` writes the message
/// from the user's buffer into the slot, `get_into` copies it into the
/// user's buffer.
fn ustream_into(n: u64) {
    let q = Queue::<[u8; 64]>::new(1024).expect("queue");
    forked(
        || {
            let src: Vec<[u8; 64]> = (0..1024u32).map(|i| [i as u8; 64]).collect();
            for i in 0..n {
                let s = black_box(&src[(i & 1023) as usize]);
                q.put_with(|slot| slot.copy_from_slice(s))
                    .expect("put_with");
            }
        },
        || {
            let mut dst = vec![[0u8; 64]; 1024];
            let mut sum = 0u64;
            let t = Instant::now();
            for i in 0..n {
                let d = &mut dst[(i & 1023) as usize];
                q.get_into(d).expect("get_into");
                sum += u64::from(black_box(d)[0]);
            }
            let mps = n as f64 / t.elapsed().as_secs_f64() / 1e6;
            black_box(sum);
            println!("user stream 64B 1->1 put_with/get_into {mps:.2} M msgs/s");
        },
    );
}

/// The CPU this thread runs on now.
#[allow(unsafe_code)] // sched_getcpu.
fn current_cpu() -> i32 {
    // SAFETY: no arguments; returns the CPU number or -1.
    unsafe { libc::sched_getcpu() }
}

/// This thread's CPU time (user + system), in ns.
#[allow(unsafe_code)] // getrusage.
fn thread_cpu_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a writable rusage; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: zero-initialised, then filled by the successful getrusage.
    let ru = unsafe { ru.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// What the trickle's consumer waits with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// `Queue::get`.
    Queue,
    /// A raw futex word, always `FUTEX_WAIT`: the futex-only baseline.
    Futex,
    /// `Connection::recv_bytes_into`.
    Pipe,
}

/// A consumer waiting on a producer that sends every 100 us (issue 18's
/// adaptive spin): the consumer's CPU, as a share of a core and per
/// message, for a blocking `get` or `recv_bytes_into`, against a raw futex
/// waiter. The producer paces itself with `clock_nanosleep`-style sleeps
/// (pacing, not synchronisation).
#[allow(unsafe_code)] // the futex word in the shared map.
fn trickle(n: u64, waiter: Waiter) {
    let futex = waiter == Waiter::Futex;
    let q = Queue::<u64>::new(64).expect("queue");
    let (mut rx, mut tx) = shmproc_channel::Pipe::new().expect("pipe");
    let map = SharedMap::new(4096);
    // SAFETY: `at` checked bounds and alignment; the zero-filled word is a
    // valid AtomicU32 living as long as `map`, which outlives both processes' use.
    let word = unsafe { &*map.at::<shmproc_shm::sync::AtomicU32>(0) };
    forked(
        || {
            for i in 1..=n {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "pacing the producer (the case is a slow sender), not synchronisation"
                )]
                std::thread::sleep(std::time::Duration::from_micros(100));
                match waiter {
                    Waiter::Futex => {
                        // Release: pairs with the consumer's Acquire load.
                        word.store(i as u32, Ordering::Release);
                        shmproc_shm::os::futex_wake(word, 1);
                    }
                    Waiter::Queue => q.put(i).expect("put"),
                    Waiter::Pipe => tx.send_bytes(&i.to_le_bytes()).expect("send"),
                }
            }
        },
        || {
            let (t, c) = (Instant::now(), thread_cpu_ns());
            for i in 1..=n {
                if futex {
                    loop {
                        // Acquire: pairs with the producer's Release store.
                        let seen = word.load(Ordering::Acquire);
                        if seen >= i as u32 {
                            break;
                        }
                        shmproc_shm::os::futex_wait(
                            word,
                            seen,
                            Some(std::time::Duration::from_secs(1)),
                        );
                    }
                } else if waiter == Waiter::Pipe {
                    let mut b = [0u8; 8];
                    assert_eq!(rx.recv_bytes_into(&mut b).expect("recv"), 8);
                    assert_eq!(u64::from_le_bytes(b), i);
                } else {
                    assert_eq!(q.get().expect("get"), i);
                }
            }
            let (wall, cpu) = (t.elapsed().as_nanos() as f64, (thread_cpu_ns() - c) as f64);
            let what = match waiter {
                Waiter::Futex => "futex_wait",
                Waiter::Queue => "Queue::get",
                Waiter::Pipe => "Connection::recv_bytes_into",
            };
            println!(
                "trickle (a message every 100 us), consumer {what}: {:.1}% of a core, {:.0} ns CPU per message",
                100.0 * cpu / wall,
                cpu / n as f64
            );
        },
    );
}

/// The minimal ring in the user's pattern (as [`ustream`]).
#[allow(unsafe_code)] // the slot copies.
fn uspsc(n: u64) {
    const CAP: u64 = 1024;
    const SLOTS: usize = 256;
    let map = SharedMap::new(SLOTS + CAP as usize * 64);
    // SAFETY: `at` checked bounds and alignment; the zero-filled word is a
    // valid AtomicU64 living as long as `map`, which outlives both processes' use.
    let tail = unsafe { &*map.at::<AtomicU64>(0) };
    // SAFETY: as above, at offset 128.
    let head = unsafe { &*map.at::<AtomicU64>(128) };
    // In bounds: `at` checks slot i < CAP at SLOTS + 64 i.
    let slot = |pos: u64| {
        map.at::<[u8; 64]>(SLOTS + (pos & (CAP - 1)) as usize * 64)
            .cast::<u8>()
    };
    forked(
        || {
            let src: Vec<[u8; 64]> = (0..1024u32).map(|i| [i as u8; 64]).collect();
            let mut head_seen = 0;
            for t in 0..n {
                let mut m = [0u8; 64];
                m.copy_from_slice(black_box(&src[(t & 1023) as usize]));
                while t - head_seen == CAP {
                    // Acquire: pairs with the consumer's Release store of head.
                    head_seen = head.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
                // SAFETY: the slot's 64 bytes are in the mapping; the consumer
                // is done with it (head passed it) and does not read it before
                // the Release store of tail below.
                unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), slot(t), 64) };
                // Release: publishes the slot to the consumer's Acquire load.
                tail.store(t + 1, Ordering::Release);
            }
        },
        || {
            let mut dst = vec![[0u8; 64]; 1024];
            let mut sum = 0u64;
            let t0 = Instant::now();
            let mut tail_seen = 0;
            for h in 0..n {
                while h == tail_seen {
                    // Acquire: pairs with the producer's Release store of tail.
                    tail_seen = tail.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
                let mut m = [0u8; 64];
                // SAFETY: the slot is in the mapping and published (tail passed
                // it); the producer does not write it before our Release below.
                unsafe { std::ptr::copy_nonoverlapping(slot(h), m.as_mut_ptr(), 64) };
                // Release: hands the slot back to the producer.
                head.store(h + 1, Ordering::Release);
                let d = &mut dst[(h & 1023) as usize];
                d.copy_from_slice(&m);
                sum += u64::from(black_box(d)[0]);
            }
            let mps = n as f64 / t0.elapsed().as_secs_f64() / 1e6;
            black_box(sum);
            println!("user spsc 64B 1->1 {mps:.2} M msgs/s");
        },
    );
}

/// The minimal SPSC ring of `queue_compare` (`spsc_ring`), reduced to its
/// loop: one producer, one consumer, 1024 slots of 64 bytes, an index per
/// side on its own 128-byte line, each side caching the other's index. The
/// floor for `stream`, in the same placement.
#[allow(unsafe_code)] // the slot copies.
fn spsc(n: u64) {
    const CAP: u64 = 1024;
    const SLOTS: usize = 256;
    let map = SharedMap::new(SLOTS + CAP as usize * 64);
    // SAFETY: `at` checked bounds and alignment; the zero-filled word is a
    // valid AtomicU64 living as long as `map`, which outlives both processes' use.
    let tail = unsafe { &*map.at::<AtomicU64>(0) };
    // SAFETY: as above, at offset 128.
    let head = unsafe { &*map.at::<AtomicU64>(128) };
    // In bounds: `at` checks slot i < CAP at SLOTS + 64 i.
    let slot = |pos: u64| {
        map.at::<[u8; 64]>(SLOTS + (pos & (CAP - 1)) as usize * 64)
            .cast::<u8>()
    };
    forked(
        || {
            let mut head_seen = 0;
            for t in 0..n {
                while t - head_seen == CAP {
                    // Acquire: pairs with the consumer's Release store of head.
                    head_seen = head.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
                // Built whole (the copy loads what full-width stores wrote, so it
                // need not wait for the store buffer: see `stage_len` in
                // src/queue.rs).
                let m = black_box([t as u8; 64]);
                // SAFETY: the slot's 64 bytes are in the mapping; the consumer
                // is done with it (head passed it) and does not read it before
                // the Release store of tail below.
                unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), slot(t), 64) };
                // Release: publishes the slot to the consumer's Acquire load.
                tail.store(t + 1, Ordering::Release);
            }
        },
        || {
            let t0 = Instant::now();
            let mut tail_seen = 0;
            for h in 0..n {
                while h == tail_seen {
                    // Acquire: pairs with the producer's Release store of tail.
                    tail_seen = tail.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
                let mut m = [0u8; 64];
                // SAFETY: the slot is in the mapping and published (tail passed
                // it); the producer does not write it before our Release below.
                unsafe { std::ptr::copy_nonoverlapping(slot(h), m.as_mut_ptr(), 64) };
                black_box(m);
                // Release: hands the slot back to the producer.
                head.store(h + 1, Ordering::Release);
            }
            let mps = n as f64 / t0.elapsed().as_secs_f64() / 1e6;
            println!("spsc 64B 1->1 {mps:.2} M msgs/s");
        },
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`: treat it as "no arguments".
    match args.iter().find(|a| !a.starts_with('-')) {
        Some(mode) => {
            let n = args
                .iter()
                .filter(|a| !a.starts_with('-'))
                .nth(1)
                .map_or(1_000_000, |s| s.parse().expect("a count"));
            run(mode, n);
        }
        None => {
            for mode in ["try", "block", "empty", "try64"] {
                let n = 2_000_000;
                let t = Instant::now();
                run(mode, n);
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                println!("queue_hotpath {mode}: {ns:.1} ns per iteration");
            }
        }
    }
}
