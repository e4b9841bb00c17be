"""Python's baseline for issue 3: two processes each increment a
multiprocessing.Value under its get_lock(), N times (argv[1], default 200000).
With argv[2] == "pin", worker i is pinned to the i-th allowed CPU, as the Rust
cases pin their two processes.

Prints one JSON object: {"case", "processes", "per_process", "increments",
"seconds", "incr_per_s", "python", "start_method"}. Exits non-zero if the
final count is wrong or a worker failed.

Timing: from releasing the workers (a Barrier) to the later worker's own
finish time (time.monotonic_ns, CLOCK_MONOTONIC, comparable across processes),
so process start and exit are not counted.
"""

import json
import os
import multiprocessing as mp
import sys
import time


def worker(value, n, barrier, ends, i, pin):
    if pin:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[i]})
    barrier.wait()
    lock = value.get_lock()
    for _ in range(n):
        with lock:
            value.value += 1
    ends[i] = time.monotonic_ns()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    pin = len(sys.argv) > 2 and sys.argv[2] == "pin" and len(os.sched_getaffinity(0)) >= 2
    ctx = mp.get_context("fork")
    value = ctx.Value("q", 0)
    ends = ctx.Array("q", 2, lock=False)
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=worker, args=(value, n, barrier, ends, i, pin)) for i in range(2)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=60)
        t0 = time.monotonic_ns()
        for p in procs:
            p.join(timeout=600)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    codes = [p.exitcode for p in procs]
    if codes != [0, 0]:
        sys.exit(f"worker exit codes {codes}")
    if value.value != 2 * n:
        sys.exit(f"lost increments: {value.value} != {2 * n}")
    seconds = (max(ends) - t0) / 1e9
    print(json.dumps({
        "case": "python_value_lock",
        "processes": 2,
        "per_process": n,
        "increments": 2 * n,
        "seconds": seconds,
        "incr_per_s": 2 * n / seconds,
        "python": sys.version.split()[0],
        "start_method": "fork",
        "pinned": pin,
    }))


if __name__ == "__main__":
    main()
