//! The benchmarks' library: what the bench mains in `benches/*.rs` (criterion
//! glue and the `*_compare` tables) share, compiled once.
//!
//! - [`harness`]: shared memory, the clock, CPU pinning, forked workers, the
//!   start line, medians and quantiles;
//! - [`sizes`]: how big a run is, full (`cargo bench`) or smoke
//!   (`cargo test --benches`);
//! - [`sync`]: the lock cases (issue 3);
//! - `links` (the contestants of the queue benches), [`pingpong`] and
//!   `stream`: the two shapes every message bench runs, one-way latency and
//!   throughput;
//! - [`queue`] and [`pipe`]: the cases of the queue (issue 4) and pipe
//!   (issue 5) benches;
//! - [`pool`]: the pool comparison's tasks and its baselines without a
//!   pool (issue 16);
//! - [`manager`]: the Manager's cases and floors (issue 19);
//! - [`python`]: Python's `multiprocessing` in the same runs;
//! - [`compare`]: the comparison tables' banner, rounds, placement, paired
//!   ratios and verdicts;
//! - [`suite`]: the one comparison run behind `shmproc bench`.

pub mod compare;
pub mod harness;
mod links;
pub mod manager;
pub mod pingpong;
pub mod pipe;
pub mod pool;
pub mod python;
pub mod queue;
pub mod sizes;
mod stream;
pub mod suite;
pub mod sync;
