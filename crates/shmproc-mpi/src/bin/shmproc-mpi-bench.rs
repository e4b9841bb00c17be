//! The comparison bench (`benches/run.sh` runs every part; see the crate
//! docs' `scaling` module for the figures):
//!
//! - `isprime` (under `mpirun -np 3`): `Pool::map(is_prime, 0..2M)` on one
//!   driver and two workers; `local-isprime` (no `mpirun`): the local
//!   `shmproc_pool::Pool::map` with two workers.
//! - `overhead` (under `mpirun -np 2`): MPI's own 8-byte ping-pong, then
//!   the pool's per-chunk cost: `apply` one at a time (a round trip) and
//!   `map` of chunks of one item (pipelined, two out).
//! - `pod` (under `mpirun -np 3`): `map_slices` over 16M `f32` with the
//!   driver's segments mapped in place, and with the chunks as messages.
//!
//! Each prints `name: min X ms, median Y ms over N runs` lines.

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use shmproc_mpi::{Pool, Transport};
use shmproc_shm::ShmSlice;

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

fn nothing(x: u64) -> u64 {
    x
}

fn one(x: u64) -> u64 {
    x + 1
}

fn scale(input: &[f32], output: &mut [f32]) {
    for (x, y) in input.iter().zip(output) {
        *y = x.mul_add(2.0, 1.0).sqrt();
    }
}

const N: u64 = 2_000_000;

fn report(name: &str, mut t: Vec<Duration>, per: u32) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(per);
    println!(
        "{name}: min {:.4} ms, median {:.4} ms over {} runs",
        ms(t[0]),
        ms(t[t.len() / 2]),
        t.len()
    );
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let runs: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    match mode.as_str() {
        "local-isprime" => {
            let pool = shmproc_pool::Pool::new(2).expect("local pool");
            let _ = pool.map(is_prime, 0..N).expect("warm-up");
            report(
                "local Pool::map is_prime 2M, 2 workers",
                time(runs, || pool.map(is_prime, 0..N).expect("map")),
                1,
            );
        }
        "isprime" => {
            let pool = Pool::new().expect("pool");
            let _ = pool.map(is_prime, 0..N).expect("warm-up");
            report(
                &format!(
                    "mpi Pool::map is_prime 2M, 1 driver + {} workers",
                    pool.processes()
                ),
                time(runs, || pool.map(is_prime, 0..N).expect("map")),
                1,
            );
        }
        "overhead" => {
            let universe = mpi::initialize().expect("MPI");
            let world = universe.world();
            let k = 20_000u32;
            let mut buf = [0u64; 1];
            // MPI's own 8-byte ping-pong between ranks 0 and 1 (blocking
            // calls: MPI's best case).
            for _ in 0..2 {
                let t = Instant::now();
                for _ in 0..k {
                    if world.rank() == 0 {
                        world.process_at_rank(1).send(&buf[..]);
                        world.process_at_rank(1).receive_into(&mut buf[..]);
                    } else if world.rank() == 1 {
                        world.process_at_rank(0).receive_into(&mut buf[..]);
                        world.process_at_rank(0).send(&buf[..]);
                    }
                }
                if world.rank() == 0 {
                    report("MPI ping-pong 8 B round trip", vec![t.elapsed()], k);
                }
            }
            drop(world);
            let pool = Pool::builder().universe(universe).build().expect("pool");
            let k = 5_000u32;
            let _ = pool.map_chunked(nothing, 0..u64::from(k), Some(1));
            report(
                "pool apply round trip (one task out)",
                time(5, || {
                    for i in 0..u64::from(k) {
                        pool.apply(one as fn(u64) -> u64, (i,)).expect("apply");
                    }
                }),
                k,
            );
            report(
                "pool map, chunks of 1 item (two out per worker)",
                time(5, || {
                    pool.map_chunked(nothing, 0..u64::from(k), Some(1))
                        .expect("map")
                }),
                k,
            );
        }
        "pod" => {
            let pool = Pool::new().expect("pool");
            let n = 16 << 20;
            let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let input = ShmSlice::from_slice(&values).expect("input");
            let output = ShmSlice::new(n, 0f32).expect("output");
            for (name, t) in [
                ("in place (driver's segments)", Transport::Auto),
                ("as MPI messages", Transport::Messages),
            ] {
                pool.set_transport(t);
                pool.map_slices(scale, &input, &output).expect("warm-up");
                report(
                    &format!("map_slices 16M f32 {name}, {} workers", pool.processes()),
                    time(runs, || {
                        pool.map_slices(scale, &input, &output).expect("map")
                    }),
                    1,
                );
            }
            // An MPI-3 shared window (`MPI_Win_allocate_shared`) holds only
            // what was copied into it: the same in-place work plus copying
            // the input in and the output out. Those two copies, timed here
            // on their own, are the least the window path adds.
            let window_in = ShmSlice::new(n, 0f32).expect("window in");
            let window_out = ShmSlice::new(n, 0f32).expect("window out");
            let mut staging = vec![0f32; n];
            report(
                "copy 16M f32 in and out (the least an MPI-3 window adds)",
                time(runs, || {
                    window_in.write_from(0, &values).expect("write");
                    window_out.read_into(0, &mut staging).expect("read");
                }),
                1,
            );
            let t = time(runs, || {
                let mut o = vec![0f32; n];
                scale(&input.to_vec(), &mut o);
                o
            });
            report("serial scale 16M f32 (one core, with a copy)", t, 1);
        }
        _ => {
            eprintln!("usage: shmproc-mpi-bench isprime|local-isprime|overhead|pod [runs]");
            std::process::exit(2);
        }
    }
}
