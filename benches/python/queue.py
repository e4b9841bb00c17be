"""Python's baseline for issue 4: multiprocessing.Queue between two processes.

    python3 queue.py ROUND_TRIPS STREAM_BYTES [pin|nopin]

- Latency: ping-pong over two mp.Queues between this process and a worker,
  ROUND_TRIPS round trips each for 8-byte and 4096-byte `bytes` messages;
  each round trip is timed (time.perf_counter_ns) and halved.
- Throughput 1 -> 1: a worker puts N `bytes` messages of 8, 64, 4096 and
  65536 bytes (N = STREAM_BYTES / size, clamped to 20..=20000), this
  process gets them. Timed from releasing the worker (an
  Event) to the last message received, so process start is not counted.

With "pin", the worker is pinned to the first allowed CPU and this process to
the second, as the Rust cases pin their two processes.

Prints one JSON object: lat<size>_p50_ns, lat<size>_p99_ns (one-way),
tput<size>_msgs_per_s, and "python", "start_method". Exits non-zero if a
message is lost or a worker fails.
"""

import os
import sys

# This file is named queue.py: drop its own directory from the import path
# so that multiprocessing gets the standard library's `queue`.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.modules.pop("queue", None)

import ctypes  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

SIZES = (8, 64, 4096, 65536)
LAT_SIZES = (8, 4096)


def die_with_parent():
    """PR_SET_PDEATHSIG = SIGKILL, so a killed bench leaves no worker behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)
    except OSError:
        pass


def pin(i, on):
    if on:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[i]})


def echo(q_in, q_out, n, on):
    die_with_parent()
    pin(0, on)
    for _ in range(n):
        q_out.put(q_in.get())


def produce(q, n, size, go, on):
    die_with_parent()
    pin(0, on)
    msg = b"x" * size
    go.wait()
    for _ in range(n):
        q.put(msg)
    q.put(None)


def percentile(sorted_v, p):
    return sorted_v[min(len(sorted_v) - 1, int(p * len(sorted_v)))]


def latency(ctx, size, n, on):
    ping, pong = ctx.Queue(), ctx.Queue()
    warm = max(10, n // 10)
    w = ctx.Process(target=echo, args=(ping, pong, warm + n, on))
    w.start()
    msg = b"x" * size
    try:
        for _ in range(warm):
            ping.put(msg)
            pong.get(timeout=60)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ping.put(msg)
            got = pong.get(timeout=60)
            samples.append((time.perf_counter_ns() - t0) / 2)
            if len(got) != size:
                sys.exit(f"latency {size}: got {len(got)} bytes")
        w.join(timeout=60)
    finally:
        if w.is_alive():
            w.kill()
            w.join()
    if w.exitcode != 0:
        sys.exit(f"echo worker exit code {w.exitcode}")
    samples.sort()
    return percentile(samples, 0.5), percentile(samples, 0.99)


def throughput(ctx, size, n, on):
    q = ctx.Queue()
    go = ctx.Event()
    w = ctx.Process(target=produce, args=(q, n, size, go, on))
    w.start()
    try:
        got = 0
        t0 = time.monotonic_ns()
        go.set()
        while True:
            m = q.get(timeout=60)
            if m is None:
                break
            got += len(m)
        t1 = time.monotonic_ns()
        w.join(timeout=60)
    finally:
        if w.is_alive():
            w.kill()
            w.join()
    if w.exitcode != 0:
        sys.exit(f"producer exit code {w.exitcode}")
    if got != n * size:
        sys.exit(f"throughput {size}: lost messages ({got} of {n * size} bytes)")
    return n / ((t1 - t0) / 1e9)


def main():
    rtts = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    stream_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 64 << 20
    on = len(sys.argv) > 3 and sys.argv[3] == "pin" and len(os.sched_getaffinity(0)) >= 2
    die_with_parent()
    pin(1, on)
    ctx = mp.get_context("fork")
    out = {"case": "python_mp_queue", "python": sys.version.split()[0],
           "start_method": "fork", "pinned": on, "round_trips": rtts}
    for size in LAT_SIZES:
        p50, p99 = latency(ctx, size, rtts, on)
        out[f"lat{size}_p50_ns"] = p50
        out[f"lat{size}_p99_ns"] = p99
    for size in SIZES:
        n = max(20, min(20000, stream_bytes // size))
        out[f"tput{size}_msgs"] = n
        out[f"tput{size}_msgs_per_s"] = throughput(ctx, size, n, on)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
