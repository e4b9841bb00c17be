"""Issue 6 baseline: start+join of one process per start method in Python.

Prints one JSON object: {"fork": ms, "spawn": ms, "forkserver": ms} (medians).
Usage: python3 process_start.py [iterations]
"""
import json
import multiprocessing as mp
import statistics
import sys
import time


def noop():
    pass


def median_ms(ctx, n):
    # Warm-up: the fork server starts on first use; imports get cached.
    for _ in range(2):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    out = {}
    for method in ("fork", "spawn", "forkserver"):
        out[method] = median_ms(mp.get_context(method), max(5, n // 3) if method == "spawn" else n)
    print(json.dumps(out))
