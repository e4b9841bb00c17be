"""Issue 19 baseline: Python's Manager().dict() set and get round trips,
locally (the default Unix socket) and over TCP loopback with an authkey,
and connect + handshake of a second client.

Prints one JSON object of medians in microseconds:
{"set_local", "get_local", "connect_local", "set_tcp", "get_tcp", "connect_tcp"}
Usage: python3 manager.py [ops] [rounds]
"""
import json
import os
import statistics
import sys
import time

# This directory holds queue.py (another baseline), which would shadow the
# standard library's `queue` that multiprocessing.managers imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from multiprocessing.managers import SyncManager  # noqa: E402


def per_op_us(f, ops, rounds):
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(ops):
            f(i)
        samples.append((time.perf_counter() - t) / ops * 1e6)
    return statistics.median(samples)


def dict_cases(m, ops, rounds):
    d = m.dict()
    keys = [f"k{i % 64}" for i in range(ops)]

    def put(i):
        d[keys[i]] = i

    def get(i):
        return d[keys[i]]

    put(0)
    return per_op_us(put, ops, rounds), per_op_us(get, ops, rounds)


def connect_us(m, key, n):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        c = SyncManager(address=m.address, authkey=key)
        c.connect()
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples)


def main():
    ops = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    out = {}
    n = max(10, ops // 50)
    with SyncManager() as m:
        out["set_local"], out["get_local"] = dict_cases(m, ops, rounds)
        out["connect_local"] = connect_us(m, bytes(m._authkey), n)
    key = b"benchmark-key"
    with SyncManager(address=("127.0.0.1", 0), authkey=key) as m:
        out["set_tcp"], out["get_tcp"] = dict_cases(m, ops, rounds)
        out["connect_tcp"] = connect_us(m, key, n)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
