"""Issue 16 baseline: multiprocessing.Pool(2) (the default start method, fork on Linux).

Usage: python3 pool.py PRIME_START PRIME_N START_REPS IMAP_N APPLY_RTTS GAP_US

Prints one JSON object:
- prime_start_s: Pool(2) creation + a first map(is_prime, range(2));
- prime_map_s: pool.map(is_prime, range(PRIME_START, PRIME_START + PRIME_N))
  on that started pool (the call alone); prime_count: the primes it found;
- prime_exit_s: leaving the `with` block (terminate + join);
- start_ms: median over START_REPS of Pool(2) creation + map(identity, range(2));
- imap_items_per_s: pool.imap(identity, range(IMAP_N), chunksize=1), consumed;
- apply_p50_us, apply_p99_us: pool.apply_async(identity, (i,)).get(), each
  after a GAP_US busy pause (untimed) so the workers sleep.
"""
import json
import os
import statistics
import sys
import time

# This folder holds queue.py (the queue bench), which would shadow the
# standard library's `queue` that multiprocessing.pool imports.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import multiprocessing as mp  # noqa: E402 (after the path fix)


def is_prime(n):
    """The Rust bench's `is_prime` (src/pool.rs): 1 for a prime, else 0."""
    if n < 2:
        return 0
    if n % 2 == 0:
        return 1 if n == 2 else 0
    i = 3
    while i * i <= n:
        if n % i == 0:
            return 0
        i += 2
    return 1


def identity(x):
    return x


def pause(seconds):
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def prime(start, n, out):
    t0 = time.perf_counter()
    with mp.Pool(2) as pool:
        pool.map(is_prime, range(2))
        t1 = time.perf_counter()
        flags = pool.map(is_prime, range(start, start + n))
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    out["prime_start_s"] = t1 - t0
    out["prime_map_s"] = t2 - t1
    out["prime_exit_s"] = t3 - t2
    out["prime_count"] = sum(flags)


def start(reps, out):
    ms = []
    for _ in range(reps):
        time.sleep(0.005)  # as the Rust side: the last pool's teardown settles
        t0 = time.perf_counter()
        pool = mp.Pool(2)
        pool.map(identity, range(2))
        ms.append((time.perf_counter() - t0) * 1e3)
        pool.terminate()
        pool.join()
    out["start_ms"] = statistics.median(ms)


def imap(n, out):
    with mp.Pool(2) as pool:
        pool.map(identity, range(2))
        t0 = time.perf_counter()
        count = 0
        for y in pool.imap(identity, range(n), chunksize=1):
            assert y == count
            count += 1
        dt = time.perf_counter() - t0
    out["imap_items_per_s"] = n / dt


def apply(rtts, gap_s, out):
    with mp.Pool(2) as pool:
        pool.map(identity, range(2))
        for i in range(max(1, rtts // 10)):
            pause(gap_s)
            pool.apply_async(identity, (i,)).get()
        us = []
        for i in range(rtts):
            pause(gap_s)
            t0 = time.perf_counter()
            r = pool.apply_async(identity, (i,)).get()
            us.append((time.perf_counter() - t0) * 1e6)
            assert r == i
    us.sort()
    out["apply_p50_us"] = us[len(us) // 2]
    out["apply_p99_us"] = us[min(len(us) - 1, int(0.99 * len(us)))]


if __name__ == "__main__":
    prime_start, prime_n, start_reps, imap_n, apply_rtts, gap_us = (int(a) for a in sys.argv[1:7])
    result = {}
    prime(prime_start, prime_n, result)
    start(start_reps, result)
    imap(imap_n, result)
    apply(apply_rtts, gap_us / 1e6, result)
    print(json.dumps(result))
