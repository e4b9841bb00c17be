//! The plan past one machine, on paper: chunk sizes and efficiency at 16,
//! 256 and 4,096 ranks, where the single driver becomes the bottleneck, and
//! what replaces it. (Documentation only: this module has no items.)
//!
//! # Measured (`benches/run.sh`, 2 vCPUs, 2026-12-08 00:54 UTC)
//! The machine was shared with other builds (load average 3.5–3.8 during
//! the run; an earlier run at load 7–8 gave figures 2–10× worse), so these
//! are upper bounds. The MPI figures are OpenMPI 4.1.4.
//!
//! | per chunk, one worker | shared memory (vader) | TCP only (loopback) |
//! |---|---|---|
//! | MPI's own 8-byte ping-pong (blocking, spinning) | 0.3 µs | 46–54 µs (the issue, quiet: 10.5 µs) |
//! | pool `apply` round trip (one task out at a time) | 1.4 µs min, 8.1 µs median: 4.7× / 27× ping-pong | 49 µs min, 72 µs median: 1.0× / 1.4× |
//! | pool `map`, chunks of one item, two out per worker | 0.6 µs: 2× ping-pong | 27 µs: 0.55× |
//!
//! The pool's round trip is a ping-pong plus, on each side, encoding and
//! decoding a chunk, resolving the task (cached per call), a `catch_unwind`
//! and the waiting policy: a rank spins 30 µs, yields until 300 µs, then
//! sleeps, so that idle ranks leave the cores to the ranks that compute
//! (the median `apply` pays for the yields on a busy machine). Pipelined
//! (`map`, two chunks out per worker) the pool beats a ping-pong per chunk
//! over TCP, and costs the driver **o_d ≈ 0.6 µs** of CPU per chunk within
//! a node.
//!
//! is_prime over 2M ints, 1 driver + 2 workers (MPI) against the local
//! `shmproc_pool::Pool::map` with 2 workers, alternating, 9 runs each:
//! medians 204.7 and 197.9 ms against 207.8 and 217.7 ms, **0.95×** the
//! local pool's time (target ≤ 1.1×; minima 0.80×).
//!
//! `map_slices` over 16M `f32` on 2 workers on the driver's node: in place
//! through the driver's segments 64.7 ms (median) against 125.7 ms with the
//! chunks as MPI messages (vader's shared-memory copies), 1.9× faster; an
//! MPI-3 shared window would add at least copying the input in and the
//! output out, 12.1 ms (+19%) on top of the in-place work. So a worker on
//! the driver's node maps the driver's segments.
//!
//! # The model
//! `P` worker ranks, a task of `t`, chunks of `c` items, so a chunk takes
//! `C = c·t`.
//! - **Driver load** `U = P·o_d / C`: the driver serves `P/C` chunks per
//!   second at `o_d` each. Past `U = 1` workers wait for it; keep `U ≤ 0.5`:
//!   `c ≥ 2·P·o_d / t`.
//! - **Worker efficiency** `C / (C + o_w)`, with `o_w` the worker's own CPU
//!   per chunk (a few µs). The latency is hidden while `C` exceeds the
//!   round trip: two chunks are out per worker.
//! - **Tail**: with `k` chunks per worker the last ones leave about half a
//!   chunk of imbalance, `1 − 1/(2k)`; Python's default (`k = 4`) can cost
//!   12%. Pick `k ≥ 16` where the input is long enough.
//! - **The driver's serial part**: `map` encodes every item on rank 0
//!   before the first chunk leaves (`e ≈ 5 ns` per small item, postcard)
//!   and decodes every result: `N·e` against a parallel time of `N·t/P`,
//!   so efficiency is at most `1 / (1 + e·P/t)`.
//! - **Bandwidth** out of the driver: `P·b/t` bytes per second for items of
//!   `b` bytes, whatever the chunk size.
//!
//! With `o_d = 10 µs`: a conservative figure for a driver serving workers
//! across a network (0.6 µs measured within a node; 27 µs per pipelined
//! chunk over loopback TCP, which is the round trip's latency, not the
//! driver's CPU). Every chunk size below scales linearly with `o_d`.
//! `o_w = 5 µs`, `e = 5 ns`, `b = 8 bytes`, `k = 16`:
//!
//! | ranks `P` | task `t` | chunk `c` | chunk time `C` | driver load `U` | worker eff. | serial part `e·P/t` | driver out | overall |
//! |---|---|---|---|---|---|---|---|---|
//! | 16 | 1 ms | 1 | 1 ms | 0.16 | 99.5% | 0.0001 | 0.13 MB/s | ≈ 96% (tail) |
//! | 256 | 1 ms | 8 | 8 ms | 0.32 | 99.9% | 0.001 | 2 MB/s | ≈ 97% |
//! | 4,096 | 1 ms | 128 | 128 ms | 0.32 | 100% | 0.02 | 33 MB/s | ≈ 95% (needs `N ≥ 8.4M`) |
//! | 16 | 10 µs | 64 | 640 µs | 0.25 | 99.2% | 0.008 | 13 MB/s | ≈ 95% |
//! | 256 | 10 µs | 1,024 | 10 ms | 0.25 | 100% | 0.13 | 205 MB/s | ≈ 86% |
//! | 4,096 | 10 µs | 16,384 | 164 ms | 0.25 | 100% | 2.05 | 3.3 GB/s | ≈ 32%: **the driver is the bottleneck** |
//!
//! # Where the single driver breaks, and what replaces it
//! Chunking keeps the driver's per-chunk load `U` low at any `P` (the chunk
//! grows with `P`), so per-chunk overhead alone never stops it; what does
//! is everything the driver does **per item**: encoding the inputs,
//! decoding the results and pushing `P·b/t` bytes through one NIC. For
//! 1 ms tasks that stays under 2% at 4,096 ranks; for 10 µs tasks it is
//! 13% at 256 ranks and dominates from about 1,000 ranks (`e·P/t = 0.5`),
//! where 4,096 ranks reach about a third of their speed and the driver
//! would need 3.3 GB/s out of one 25 GbE port.
//!
//! The replacement is **hierarchical drivers**, one per node:
//! - The node's first rank (`split_shared()` gives the node communicator)
//!   becomes a sub-driver; rank 0 hands it *node chunks* of
//!   `ranks_per_node × c` items, dynamically, as the nodes finish them, so
//!   rank 0 serves `P / ranks_per_node` sub-drivers: 4,096 ranks on 64
//!   nodes load it like 64 ranks.
//! - The sub-driver splits a node chunk among its node's ranks through
//!   shared memory, as the local pool does (one compare-and-swap per chunk
//!   on a shared cursor, no messages), and returns the node's results as
//!   one message.
//! - Inputs that are ranges or computed from an index (`0..N`, tiles of an
//!   array on a parallel file system) travel as `(start, end)`, 16 bytes
//!   per node chunk, and are generated on the node: rank 0's per-item work
//!   and bandwidth disappear; results that reduce (`sum`, counts) are
//!   reduced on the node.
//! - Fail-stop is unchanged: MPI ends the job when any rank dies.
