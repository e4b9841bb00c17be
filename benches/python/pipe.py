"""Python's baseline for issue 5: multiprocessing.Pipe between two processes.

    python3 pipe.py ROUND_TRIPS STREAM_BYTES [pin|nopin]

- Latency: ping-pong over one duplex mp.Pipe() between this process and a
  worker (send_bytes / recv_bytes), ROUND_TRIPS round trips each for 8-byte
  and 4096-byte messages; each round trip is timed (time.perf_counter_ns)
  and halved.
- Stream, one way: a worker sends N messages of 64 B, 64 KiB, 1 MiB and
  64 MiB with send_bytes (N = STREAM_BYTES / size, clamped to 1..=20000),
  then an empty one; this process receives them with recv_bytes_into into
  one preallocated bytearray. Timed from releasing the worker (an Event) to
  the last message received, so process start is not counted.

With "pin", the worker is pinned to the first allowed CPU and this process to
the second, as the Rust cases pin their two processes.

Prints one JSON object: lat<size>_p50_ns, lat<size>_p99_ns (one-way),
tput<size>_msgs_per_s, and "python", "start_method". Exits non-zero if a
message is lost or a worker fails.
"""

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import time

LAT_SIZES = (8, 4096)
STREAM_SIZES = (64, 64 << 10, 1 << 20, 64 << 20)


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


def echo(conn, n, on):
    die_with_parent()
    pin(0, on)
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def produce(conn, n, size, go, on):
    die_with_parent()
    pin(0, on)
    msg = b"x" * size
    go.wait()
    for _ in range(n):
        conn.send_bytes(msg)
    conn.send_bytes(b"")


def percentile(sorted_v, p):
    return sorted_v[min(len(sorted_v) - 1, int(p * len(sorted_v)))]


def reap(w):
    w.join(timeout=60)
    if w.is_alive():
        w.kill()
        w.join()
    if w.exitcode != 0:
        sys.exit(f"worker exit code {w.exitcode}")


def latency(ctx, size, n, on):
    a, b = ctx.Pipe()
    warm = max(10, n // 10)
    w = ctx.Process(target=echo, args=(b, warm + n, on))
    w.start()
    msg = b"x" * size
    try:
        for _ in range(warm):
            a.send_bytes(msg)
            if not a.poll(60):
                sys.exit("echo worker silent for 60 s")
            a.recv_bytes()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            a.send_bytes(msg)
            got = a.recv_bytes()
            samples.append((time.perf_counter_ns() - t0) / 2)
            if len(got) != size:
                sys.exit(f"latency {size}: got {len(got)} bytes")
    finally:
        reap(w)
    samples.sort()
    return percentile(samples, 0.5), percentile(samples, 0.99)


def throughput(ctx, size, n, on):
    a, b = ctx.Pipe()
    go = ctx.Event()
    w = ctx.Process(target=produce, args=(b, n, size, go, on))
    w.start()
    buf = bytearray(size)
    try:
        got = 0
        t0 = time.monotonic_ns()
        go.set()
        while True:
            if not a.poll(60):
                sys.exit("producer silent for 60 s")
            k = a.recv_bytes_into(buf)
            if k == 0:
                break
            got += k
        t1 = time.monotonic_ns()
    finally:
        reap(w)
    if got != n * size:
        sys.exit(f"throughput {size}: lost messages ({got} of {n * size} bytes)")
    return n / ((t1 - t0) / 1e9)


def main():
    rtts = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    stream_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 128 << 20
    on = len(sys.argv) > 3 and sys.argv[3] == "pin" and len(os.sched_getaffinity(0)) >= 2
    die_with_parent()
    pin(1, on)
    ctx = mp.get_context("fork")
    out = {"case": "python_mp_pipe", "python": sys.version.split()[0],
           "start_method": "fork", "pinned": on, "round_trips": rtts}
    for size in LAT_SIZES:
        p50, p99 = latency(ctx, size, rtts, on)
        out[f"lat{size}_p50_ns"] = p50
        out[f"lat{size}_p99_ns"] = p99
    for size in STREAM_SIZES:
        n = max(1, min(20000, stream_bytes // size))
        out[f"tput{size}_msgs"] = n
        out[f"tput{size}_msgs_per_s"] = throughput(ctx, size, n, on)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
