//! The comparison run behind `shmproc bench`: shmproc's Queue, Pipe, Value,
//! Process start, Pool and Manager against the baselines their benches name, in one
//! run of interleaved rounds, each case's median and the median of its
//! per-round ratios against its baselines, with the machine's state. It
//! calls the same contestants as the `*_compare` benches (this library's
//! `queue`, `pipe`, `sync`, `pool`, `manager`, `python` modules), with sizes for a quick
//! (under a minute on 2 CPUs) or a full run.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use shmproc_pool::Pool;
use shmproc_process::{Process, StartMethod, get_context};

use crate::compare::paired;
use crate::harness::{median, pinning};
use crate::pool::{fork_exit_wait, identity, is_prime, round_trips, static_split};
use crate::queue::Who;
use crate::sizes::{LinkSizes, PoolSizes};
use crate::sync::{Case, CaseVisitor};
use crate::{manager, pipe, python, queue, sync};

/// Which transports a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// `Queue` against the atomic and futex floors, a minimal SPSC ring, a
    /// Unix socket, ipc-channel and crossbeam between threads.
    Queue,
    /// `Pipe` against the floors, `pipe(2)`, a Unix stream socket,
    /// ipc-channel and memcpy.
    Pipe,
    /// `Value`/`Lock` under contention against a process-shared pthread
    /// mutex, raw_sync and the atomic floor.
    Value,
    /// `Process` start + join per start method against fork + waitpid.
    Process,
    /// `Pool` against sequential code and an ideal static split.
    Pool,
    /// `Manager`: dict set and get round trips and connect + handshake,
    /// locally and over TCP loopback, against a Pipe round trip and a TCP
    /// echo (the floors) and Python's `Manager().dict()`.
    Manager,
}

impl Group {
    /// Every group, in run order.
    pub const ALL: [Group; 6] = [
        Group::Queue,
        Group::Pipe,
        Group::Value,
        Group::Process,
        Group::Pool,
        Group::Manager,
    ];

    /// The group's name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Group::Queue => "queue",
            Group::Pipe => "pipe",
            Group::Value => "value",
            Group::Process => "process",
            Group::Pool => "pool",
            Group::Manager => "manager",
        }
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small sizes and 3 rounds: under a minute on 2 CPUs.
    pub quick: bool,
    /// The groups to run.
    pub groups: Vec<Group>,
    /// Run Python's `multiprocessing` beside (when `python3` is present).
    pub python: bool,
}

/// Whether lower or higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times.
    Lower,
    /// Rates.
    Higher,
}

/// One contestant of one case: its samples (one per round) and median.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The group.
    pub group: &'static str,
    /// The case (e.g. "latency 8 B, one way, p50").
    pub case: String,
    /// Who was measured.
    pub contestant: String,
    /// The unit of the samples.
    pub unit: &'static str,
    /// Whether lower or higher is better.
    pub better: Better,
    /// Whether it is shmproc (as opposed to a baseline).
    pub ours: bool,
    /// One sample per round.
    pub samples: Vec<f64>,
}

impl Measurement {
    /// The median of the samples.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// One of ours against one baseline in the same case: the median of the
/// per-round ratios, oriented so that above 1 means ours is better.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// The group.
    pub group: &'static str,
    /// The case.
    pub case: String,
    /// Ours.
    pub ours: String,
    /// The baseline.
    pub baseline: String,
    /// How many times better ours is (below 1: worse).
    pub advantage: f64,
}

/// The machine while the run went.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `/proc/loadavg`'s three averages, before the run.
    pub loadavg_before: String,
    /// After the run.
    pub loadavg_after: String,
    /// How the contending processes are pinned.
    pub pinning: String,
    /// The kernel release.
    pub kernel: String,
    /// Before each round: a short atomic ping-pong's one-way p50 (ns)
    /// between the two CPUs, the placement probe of the `*_compare`
    /// benches (at most
    /// [`SHARED_L3_MAX_NS`](crate::compare::SHARED_L3_MAX_NS): the CPUs share an L3).
    pub placement_ns: Vec<f64>,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Quick or full.
    pub quick: bool,
    /// Rounds run.
    pub rounds: usize,
    /// Every contestant of every case.
    pub measurements: Vec<Measurement>,
    /// Ours against the baselines.
    pub ratios: Vec<Ratio>,
    /// What did not run, and why.
    pub skipped: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// A case's contestants: (name, ours, a run giving one sample).
type Runner<'a> = Box<dyn FnMut() -> Option<f64> + 'a>;

struct Case_<'a> {
    group: Group,
    case: String,
    unit: &'static str,
    better: Better,
    contestants: Vec<(String, bool, Runner<'a>)>,
    /// Ratios to report: (ours, baseline).
    pairs: Vec<(String, String)>,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the comparison; `progress(done, total, what)` after each step.
///
/// # Panics
/// When a contestant cannot set up (shared memory, fork): the run cannot
/// say anything then.
pub fn run(opts: &Options, progress: &mut dyn FnMut(usize, usize, &str)) -> Report {
    let t0 = Instant::now();
    let machine_before = load();
    let rounds = if opts.quick { 3 } else { 7 };
    let link = if opts.quick {
        LinkSizes {
            busy_rtts: 20_000,
            block_rtts: 2_000,
            woken_rtts: 500,
            fast_bytes: 16 << 20,
            fast_cap: 200_000,
            slow_bytes: 8 << 20,
            slow_cap: 10_000,
            python_rtts: 200,
            python_bytes: 1 << 20,
            ..LinkSizes::QUEUE_FULL
        }
    } else {
        LinkSizes::QUEUE_FULL
    };
    let pipe_link = LinkSizes {
        min_msgs: 4,
        warm: true,
        ..link
    };
    let pool_sz = if opts.quick {
        PoolSizes {
            prime_n: 200_000,
            python_prime_n: 20_000,
            imap_n: 100_000,
            python_imap_n: 10_000,
            apply_rtts: 300,
            ..PoolSizes::FULL
        }
    } else {
        PoolSizes::FULL
    };
    let contended = if opts.quick { 100_000 } else { 1_000_000 };
    let mut skipped = Vec::new();

    // Shared state of the pool cases, made once.
    let numbers: Vec<u64> =
        (pool_sz.prime_start..pool_sz.prime_start + pool_sz.prime_n as u64).collect();
    let want: Vec<u8> = numbers.iter().map(|&n| is_prime(n)).collect();
    let pool = if opts.groups.contains(&Group::Pool) {
        Some(Pool::new(2).expect("Pool::new"))
    } else {
        None
    };
    // The manager cases' server, dicts and floors, made once.
    let (mgr_ops, mgr_connects) = if opts.quick { (300, 10) } else { (2000, 40) };
    let mgr = if opts.groups.contains(&Group::Manager) {
        match manager::Setup::new() {
            Ok(s) => Some(RefCell::new(s)),
            Err(e) => {
                skipped.push(format!("manager: {e}"));
                None
            }
        }
    } else {
        None
    };
    let prime_in = shmproc_shm::ShmSlice::from_slice(&numbers).expect("shared input");
    let prime_out = shmproc_shm::ShmSlice::new(numbers.len(), 0u8).expect("shared output");

    let mut cases: Vec<Case_<'_>> = Vec::new();
    for &g in &opts.groups {
        match g {
            Group::Queue => {
                let mut c = Case_ {
                    group: g,
                    case: "latency 8 B, one way, p50".into(),
                    unit: "ns",
                    better: Better::Lower,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_queue_spin".into(), Who::AtomicFloor.name().into()),
                        ("shmproc_queue_spin".into(), "spsc_ring".into()),
                        ("shmproc_queue_woken".into(), Who::FutexFloor.name().into()),
                        ("shmproc_queue".into(), "unix_seqpacket".into()),
                        ("shmproc_queue".into(), "ipc_channel".into()),
                    ],
                };
                for who in Who::LATENCY {
                    if !who.has_latency(8) {
                        continue;
                    }
                    let ours = matches!(who, Who::QueueSpin | Who::QueueBlock | Who::QueueWoken);
                    let (rtts, batch) = match who {
                        Who::AtomicFloor | Who::SpscRing | Who::QueueSpin => {
                            (link.busy_rtts, link.busy_batch)
                        }
                        Who::FutexFloor | Who::QueueWoken => (link.woken_rtts, 1),
                        _ => (link.block_rtts, 1),
                    };
                    c.contestants.push((
                        who.name().to_owned(),
                        ours,
                        Box::new(move || {
                            queue::latency(who, 8, rtts, batch, &link).map(|l| l.quantile(0.5))
                        }),
                    ));
                }
                cases.push(c);
                let mut c = Case_ {
                    group: g,
                    case: "stream 64 B, 1 -> 1 (copied in and out of user buffers)".into(),
                    unit: "msgs/s",
                    better: Better::Higher,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_queue".into(), "spsc_ring".into()),
                        ("shmproc_queue".into(), "unix_seqpacket".into()),
                        ("shmproc_queue".into(), "ipc_channel".into()),
                        ("shmproc_queue".into(), "crossbeam_threads".into()),
                    ],
                };
                for who in Who::STREAM {
                    if !who.has_stream(1, 1) {
                        continue;
                    }
                    let ours = matches!(who, Who::QueueSpin | Who::QueueBlock);
                    let total = match who {
                        Who::UnixSocket | Who::IpcChannel => {
                            (link.slow_bytes / 64).clamp(link.min_msgs, link.slow_cap)
                        }
                        _ => (link.fast_bytes / 64).clamp(link.min_msgs, link.fast_cap),
                    };
                    c.contestants.push((
                        who.name().to_owned(),
                        ours,
                        Box::new(move || {
                            queue::throughput(who, 64, 1, 1, total, &link, queue::Pattern::User)
                                .map(|d| total as f64 / d.as_secs_f64())
                        }),
                    ));
                }
                cases.push(c);
            }
            Group::Pipe => {
                let mut c = Case_ {
                    group: g,
                    case: "latency 8 B, one way, p50".into(),
                    unit: "ns",
                    better: Better::Lower,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_pipe_spin".into(), Who::AtomicFloor.name().into()),
                        ("shmproc_pipe_woken".into(), Who::FutexFloor.name().into()),
                        ("shmproc_pipe".into(), "os_pipe".into()),
                        ("shmproc_pipe".into(), "unix_stream".into()),
                    ],
                };
                for who in [
                    pipe::Lat::AtomicFloor,
                    pipe::Lat::PipeSpin,
                    pipe::Lat::FutexFloor,
                    pipe::Lat::PipeWoken,
                    pipe::Lat::PipeBlock,
                    pipe::Lat::OsPipe,
                    pipe::Lat::UnixStream,
                    pipe::Lat::IpcChannel,
                ] {
                    let ours = matches!(
                        who,
                        pipe::Lat::PipeSpin | pipe::Lat::PipeWoken | pipe::Lat::PipeBlock
                    );
                    let (rtts, batch) = match who {
                        pipe::Lat::AtomicFloor | pipe::Lat::PipeSpin => {
                            (link.busy_rtts, link.busy_batch)
                        }
                        pipe::Lat::FutexFloor | pipe::Lat::PipeWoken => (link.woken_rtts, 1),
                        _ => (link.block_rtts, 1),
                    };
                    c.contestants.push((
                        who.name().to_owned(),
                        ours,
                        Box::new(move || {
                            pipe::latency(who, 8, rtts, batch, &pipe_link).map(|l| l.quantile(0.5))
                        }),
                    ));
                }
                cases.push(c);
                let size = 64 << 10;
                let mut c = Case_ {
                    group: g,
                    case: "stream 64 KiB, one way".into(),
                    unit: "GB/s",
                    better: Better::Higher,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_pipe_copy".into(), "memcpy".into()),
                        ("shmproc_pipe_copy".into(), "unix_stream".into()),
                        ("shmproc_pipe_copy".into(), "os_pipe".into()),
                        ("shmproc_pipe_zerocopy".into(), "memcpy".into()),
                    ],
                };
                for who in [
                    pipe::Tput::PipeCopy,
                    pipe::Tput::PipeZeroCopy,
                    pipe::Tput::OsPipe,
                    pipe::Tput::UnixStream,
                    pipe::Tput::IpcChannel,
                    pipe::Tput::Memcpy,
                ] {
                    let ours = matches!(who, pipe::Tput::PipeCopy | pipe::Tput::PipeZeroCopy);
                    let slow = matches!(
                        who,
                        pipe::Tput::OsPipe | pipe::Tput::UnixStream | pipe::Tput::IpcChannel
                    );
                    let (bytes, cap) = if slow {
                        (pipe_link.slow_bytes, pipe_link.slow_cap)
                    } else {
                        (pipe_link.fast_bytes, pipe_link.fast_cap)
                    };
                    let total = (bytes / size as u64).clamp(pipe_link.min_msgs, cap);
                    c.contestants.push((
                        who.name().to_owned(),
                        ours,
                        Box::new(move || {
                            let d = pipe::throughput(who, size, total, &pipe_link);
                            Some(total as f64 * size as f64 / d.as_secs_f64() / 1e9)
                        }),
                    ));
                }
                cases.push(c);
            }
            Group::Value => {
                let mut c = Case_ {
                    group: g,
                    case: "2 processes incrementing a shared counter under the lock".into(),
                    unit: "M incr/s",
                    better: Better::Higher,
                    contestants: Vec::new(),
                    pairs: Vec::new(),
                };
                let mut names = Vec::new();
                let mut v = Collect {
                    per_proc: contended,
                    out: &mut names,
                };
                sync::each_case(&mut v);
                for (name, runner) in names {
                    c.contestants
                        .push((name.to_owned(), name.starts_with("shmproc"), runner));
                }
                let ours: Vec<String> = c
                    .contestants
                    .iter()
                    .filter(|x| x.1)
                    .map(|x| x.0.clone())
                    .collect();
                let theirs: Vec<String> = c
                    .contestants
                    .iter()
                    .filter(|x| !x.1)
                    .map(|x| x.0.clone())
                    .collect();
                for o in &ours {
                    for t in &theirs {
                        c.pairs.push((o.clone(), t.clone()));
                    }
                }
                cases.push(c);
            }
            Group::Process => {
                let mut c = Case_ {
                    group: g,
                    case: "start + join of one process".into(),
                    unit: "ms",
                    better: Better::Lower,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_fork".into(), "fork_exit_waitpid".into()),
                        ("shmproc_forkserver".into(), "fork_exit_waitpid".into()),
                        ("shmproc_spawn".into(), "fork_exit_waitpid".into()),
                    ],
                };
                c.contestants.push((
                    "fork_exit_waitpid".into(),
                    false,
                    Box::new(|| Some(median_of(5, || fork_exit_wait(1).as_secs_f64() * 1e3))),
                ));
                for (name, m) in [
                    ("shmproc_fork", StartMethod::Fork),
                    ("shmproc_forkserver", StartMethod::ForkServer),
                    ("shmproc_spawn", StartMethod::Spawn),
                ] {
                    c.contestants.push((
                        name.into(),
                        true,
                        Box::new(move || {
                            let ctx = get_context(m).allow_fork_with_threads(true);
                            Some(median_of(5, || {
                                let t = Instant::now();
                                let p: Process = ctx.process(noop, ());
                                p.start().expect("start");
                                p.join().expect("join");
                                t.elapsed().as_secs_f64() * 1e3
                            }))
                        }),
                    ));
                }
                cases.push(c);
            }
            Group::Manager => {
                let Some(mgr) = mgr.as_ref() else { continue };
                for tcp in [false, true] {
                    let at = if tcp { "tcp" } else { "local" };
                    let floor = if tcp { "tcp_echo" } else { "pipe_round_trip" };
                    let floor_run: Runner<'_> = if tcp {
                        Box::new(move || Some(mgr.borrow_mut().tcp_rtt(mgr_ops)))
                    } else {
                        Box::new(move || Some(mgr.borrow_mut().pipe_rtt(mgr_ops)))
                    };
                    let mut c = Case_ {
                        group: g,
                        case: format!("dict set round trip, {at}"),
                        unit: "us",
                        better: Better::Lower,
                        contestants: vec![
                            (floor.into(), false, floor_run),
                            (
                                "shmproc_manager".into(),
                                true,
                                Box::new(move || Some(mgr.borrow().set(tcp, mgr_ops))),
                            ),
                        ],
                        pairs: vec![("shmproc_manager".into(), floor.into())],
                    };
                    if tcp {
                        // The echo with both ends polling, never sleeping:
                        // the floor of a waiter that polls (as ours do
                        // before they sleep).
                        c.contestants.push((
                            "tcp_echo_polling".into(),
                            false,
                            Box::new(move || Some(mgr.borrow_mut().tcp_poll_rtt(mgr_ops))),
                        ));
                        c.pairs
                            .push(("shmproc_manager".into(), "tcp_echo_polling".into()));
                    }
                    cases.push(c);
                    cases.push(Case_ {
                        group: g,
                        case: format!("dict get round trip, {at}"),
                        unit: "us",
                        better: Better::Lower,
                        contestants: vec![(
                            "shmproc_manager".into(),
                            true,
                            Box::new(move || Some(mgr.borrow().get(tcp, mgr_ops))),
                        )],
                        pairs: Vec::new(),
                    });
                    cases.push(Case_ {
                        group: g,
                        case: format!("connect + handshake, {at}"),
                        unit: "us",
                        better: Better::Lower,
                        contestants: vec![
                            (
                                "shmproc_manager".into(),
                                true,
                                Box::new(move || Some(mgr.borrow().connect(tcp, mgr_connects))),
                            ),
                            // Python's `connect()` makes one request too.
                            (
                                "shmproc_manager_and_a_call".into(),
                                true,
                                Box::new(move || {
                                    Some(mgr.borrow().connect_and_call(tcp, mgr_connects))
                                }),
                            ),
                        ],
                        pairs: Vec::new(),
                    });
                }
            }
            Group::Pool => {
                let Some(pool) = pool.as_ref() else { continue };
                let n = numbers.len();
                let (numbers, want, prime_in, prime_out) = (&numbers, &want, &prime_in, &prime_out);
                let mut c = Case_ {
                    group: g,
                    case: format!("is_prime over {n} numbers"),
                    unit: "ms",
                    better: Better::Lower,
                    contestants: Vec::new(),
                    pairs: vec![
                        ("shmproc_pool_map_into".into(), "static_split".into()),
                        ("shmproc_pool_map_into".into(), "sequential".into()),
                        ("shmproc_pool_map_pod".into(), "static_split".into()),
                        ("shmproc_pool_map".into(), "static_split".into()),
                    ],
                };
                c.contestants.push((
                    "sequential".into(),
                    false,
                    Box::new(move || {
                        let t = Instant::now();
                        let v: Vec<u8> = numbers.iter().map(|&x| is_prime(x)).collect();
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        assert_eq!(&v, want);
                        Some(ms)
                    }),
                ));
                c.contestants.push((
                    "static_split".into(),
                    false,
                    Box::new(move || {
                        let mut out = vec![0u8; n];
                        let d = static_split(numbers, &mut out, is_prime, true);
                        assert_eq!(&out, want);
                        Some(d.as_secs_f64() * 1e3)
                    }),
                ));
                c.contestants.push((
                    "shmproc_pool_map_into".into(),
                    true,
                    Box::new(move || {
                        let t = Instant::now();
                        pool.map_into(is_prime, prime_in, prime_out)
                            .expect("map_into");
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        assert_eq!(&prime_out.to_vec(), want);
                        Some(ms)
                    }),
                ));
                c.contestants.push((
                    "shmproc_pool_map_pod".into(),
                    true,
                    Box::new(move || {
                        let t = Instant::now();
                        let v = pool.map_pod(is_prime, numbers).expect("map_pod");
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        assert_eq!(&v, want);
                        Some(ms)
                    }),
                ));
                c.contestants.push((
                    "shmproc_pool_map".into(),
                    true,
                    Box::new(move || {
                        let t = Instant::now();
                        let v = pool.map(is_prime, numbers).expect("map");
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        assert_eq!(&v, want);
                        Some(ms)
                    }),
                ));
                cases.push(c);
                let imap_n = pool_sz.imap_n;
                cases.push(Case_ {
                    group: g,
                    case: "imap(identity), chunksize 1".into(),
                    unit: "items/s",
                    better: Better::Higher,
                    contestants: vec![(
                        "shmproc_pool_imap".into(),
                        true,
                        Box::new(move || {
                            let t = Instant::now();
                            for (k, r) in pool.imap(identity, 0..imap_n).expect("imap").enumerate()
                            {
                                assert_eq!(r.expect("item"), k as u64);
                            }
                            Some(imap_n as f64 / t.elapsed().as_secs_f64())
                        }),
                    )],
                    pairs: Vec::new(),
                });
                let (rtts, gap) = (pool_sz.apply_rtts, pool_sz.apply_gap_ns);
                cases.push(Case_ {
                    group: g,
                    case: "round trip to an idle pool, p50".into(),
                    unit: "us",
                    better: Better::Lower,
                    contestants: vec![
                        (
                            "futex_round_trip".into(),
                            false,
                            Box::new(move || {
                                queue::latency(Who::FutexFloor, 8, rtts, 1, &link)
                                    .map(|l| 2.0 * l.quantile(0.5) / 1e3)
                            }),
                        ),
                        (
                            "shmproc_pool_apply".into(),
                            true,
                            Box::new(move || {
                                let f: fn(u64) -> u64 = identity;
                                Some(
                                    round_trips(rtts, rtts / 10, gap, |i| {
                                        assert_eq!(pool.apply(f, (i,)).expect("apply"), i);
                                    })
                                    .0,
                                )
                            }),
                        ),
                    ],
                    pairs: vec![("shmproc_pool_apply".into(), "futex_round_trip".into())],
                });
            }
        }
    }

    // Python, once per run (its own rounds inside), as extra contestants.
    let mut python_rows: Vec<(usize, String, f64)> = Vec::new();
    let total_steps = rounds * cases.iter().map(|c| c.contestants.len()).sum::<usize>()
        + usize::from(opts.python) * opts.groups.len();
    let mut step = 0;
    let mut samples: Vec<Vec<Vec<f64>>> = cases
        .iter()
        .map(|c| vec![Vec::new(); c.contestants.len()])
        .collect();
    let mut placement_ns = Vec::new();
    for round in 0..rounds {
        placement_ns.push(
            queue::latency(Who::AtomicFloor, 8, 5_000, 10, &link)
                .map_or(f64::NAN, |l| l.quantile(0.5)),
        );
        for (ci, c) in cases.iter_mut().enumerate() {
            for (k, (name, _, run)) in c.contestants.iter_mut().enumerate() {
                step += 1;
                progress(
                    step,
                    total_steps,
                    &format!("round {}/{rounds}: {} {name}", round + 1, c.group.name()),
                );
                if let Some(x) = run() {
                    samples[ci][k].push(x);
                }
            }
        }
    }
    if opts.python {
        for &g in &opts.groups {
            step += 1;
            progress(step, total_steps, &format!("python: {}", g.name()));
            let find = |case: &str| cases.iter().position(|c| c.group == g && c.case == case);
            match g {
                Group::Queue | Group::Pipe => {
                    let r = if g == Group::Queue {
                        python::queue(&link)
                    } else {
                        python::pipe(&pipe_link)
                    };
                    match r {
                        Ok(r) => {
                            if let (Some(ci), Some(l)) = (
                                find("latency 8 B, one way, p50"),
                                r.latency.iter().find(|x| x.0 == 8),
                            ) {
                                python_rows.push((ci, "python".into(), l.1));
                            }
                            let (case, size) = if g == Group::Queue {
                                (
                                    "stream 64 B, 1 -> 1 (copied in and out of user buffers)",
                                    64,
                                )
                            } else {
                                ("stream 64 KiB, one way", 64 << 10)
                            };
                            if let (Some(ci), Some(s)) =
                                (find(case), r.stream.iter().find(|x| x.0 == size))
                            {
                                let v = if g == Group::Queue {
                                    s.1
                                } else {
                                    s.1 * size as f64 / 1e9
                                };
                                python_rows.push((ci, "python".into(), v));
                            }
                        }
                        Err(e) => skipped.push(format!("python {}: {e}", g.name())),
                    }
                }
                Group::Value => match python::value_lock(contended / 10) {
                    Ok(rate) => {
                        if let Some(ci) =
                            find("2 processes incrementing a shared counter under the lock")
                        {
                            python_rows.push((ci, "python".into(), rate / 1e6));
                        }
                    }
                    Err(e) => skipped.push(format!("python value: {e}")),
                },
                Group::Pool => match python::pool(&pool_sz) {
                    Ok(r) => {
                        if let Some(ci) = cases
                            .iter()
                            .position(|c| c.group == Group::Pool && c.case.starts_with("is_prime"))
                        {
                            let scale = pool_sz.prime_n as f64 / pool_sz.python_prime_n as f64;
                            python_rows.push((ci, "python".into(), r.prime_map_s * scale * 1e3));
                        }
                        if let Some(ci) = find("imap(identity), chunksize 1") {
                            python_rows.push((ci, "python".into(), r.imap_items_per_s));
                        }
                        if let Some(ci) = find("round trip to an idle pool, p50") {
                            python_rows.push((ci, "python".into(), r.apply_p50_us));
                        }
                    }
                    Err(e) => skipped.push(format!("python pool: {e}")),
                },
                Group::Manager => match python::manager(mgr_ops, 3) {
                    Ok(r) => {
                        for (case, v) in [
                            ("dict set round trip, local", r.set_local),
                            ("dict get round trip, local", r.get_local),
                            ("connect + handshake, local", r.connect_local),
                            ("dict set round trip, tcp", r.set_tcp),
                            ("dict get round trip, tcp", r.get_tcp),
                            ("connect + handshake, tcp", r.connect_tcp),
                        ] {
                            if let Some(ci) = find(case) {
                                python_rows.push((ci, "python".into(), v));
                            }
                        }
                    }
                    Err(e) => skipped.push(format!("python manager: {e}")),
                },
                Group::Process => {}
            }
        }
    }

    let mut measurements = Vec::new();
    let mut ratios = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        let group = c.group.name();
        for (k, (name, ours, _)) in c.contestants.iter().enumerate() {
            if samples[ci][k].is_empty() {
                continue;
            }
            measurements.push(Measurement {
                group,
                case: c.case.clone(),
                contestant: name.clone(),
                unit: c.unit,
                better: c.better,
                ours: *ours,
                samples: samples[ci][k].clone(),
            });
        }
        let idx = |n: &str| c.contestants.iter().position(|x| x.0 == n);
        for (o, b) in &c.pairs {
            let (Some(i), Some(j)) = (idx(o), idx(b)) else {
                continue;
            };
            let (so, sb) = (&samples[ci][i], &samples[ci][j]);
            if so.is_empty() || sb.is_empty() {
                continue;
            }
            let r = paired(so, sb);
            ratios.push(Ratio {
                group,
                case: c.case.clone(),
                ours: o.clone(),
                baseline: b.clone(),
                advantage: orient(c.better, r),
            });
        }
        for (_, name, v) in python_rows.iter().filter(|p| p.0 == ci) {
            measurements.push(Measurement {
                group,
                case: c.case.clone(),
                contestant: name.clone(),
                unit: c.unit,
                better: c.better,
                ours: false,
                samples: vec![*v],
            });
            for (k, (o, ours, _)) in c.contestants.iter().enumerate() {
                if !*ours || samples[ci][k].is_empty() {
                    continue;
                }
                let r = median(&samples[ci][k]) / v;
                ratios.push(Ratio {
                    group,
                    case: c.case.clone(),
                    ours: o.clone(),
                    baseline: name.clone(),
                    advantage: orient(c.better, r),
                });
            }
        }
    }
    Report {
        machine: Machine {
            cpus: shmproc_shm::os::affinity_cpu_count(),
            loadavg_before: machine_before,
            loadavg_after: load(),
            pinning: pinning(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            placement_ns,
        },
        quick: opts.quick,
        rounds,
        measurements,
        ratios,
        skipped,
        elapsed: t0.elapsed(),
    }
}

/// `ours / baseline` as "times better": inverted for times.
fn orient(better: Better, ours_over_baseline: f64) -> f64 {
    match better {
        Better::Lower => 1.0 / ours_over_baseline,
        Better::Higher => ours_over_baseline,
    }
}

fn median_of(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    let v: Vec<f64> = (0..n).map(|_| f()).collect();
    median(&v)
}

/// The process start case's target.
fn noop(_: ()) {}

/// Collects the lock cases as runners of the contended counter.
struct Collect<'o, 'a> {
    per_proc: u64,
    out: &'o mut Vec<(&'static str, Runner<'a>)>,
}

impl CaseVisitor for Collect<'_, '_> {
    fn visit<C: Case>(&mut self, case: &C) {
        // Each run builds the cases anew (cheap) and runs the one of this
        // name: a case's shared memory lives as long as one run.
        let name = case.name();
        let per_proc = self.per_proc;
        self.out.push((
            name,
            Box::new(move || {
                let mut one = One {
                    want: name,
                    per_proc,
                    rate: None,
                };
                sync::each_case(&mut one);
                one.rate
            }),
        ));
    }
}

/// Runs the contended counter of the case named `want`.
struct One {
    want: &'static str,
    per_proc: u64,
    rate: Option<f64>,
}

impl CaseVisitor for One {
    fn visit<C: Case>(&mut self, case: &C) {
        if case.name() == self.want {
            let d = sync::run_contended(case, self.per_proc);
            self.rate = Some(2.0 * self.per_proc as f64 / d.as_secs_f64() / 1e6);
        }
    }
}
