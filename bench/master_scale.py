"""The job master's decisions at scale, without MPI: 10,000 simulated workers by default.

One round: registration (worker_list + joined), the worker list (snapshot), one barrier that every
worker reaches, then every worker's result. Each phase and the round's total are timed; goal: a
round under 1 s. Also timed: snapshot() + json.dumps, what the master writes to state.json.

Usage: python bench/master_scale.py [--workers N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import describe

from t2mpi.runtime.master import COMPLETED, Master, worker_list

PER_HOST = 64


def one_round(n: int) -> dict[str, float]:
    registrations = [(f"node{i // PER_HOST:04d}", 100_000 + i) for i in range(n)]
    took: dict[str, float] = {}

    start = time.perf_counter()
    master = Master("bench-job", "bench", n, time.time())
    master.joined(worker_list(registrations), ("head", 1), time.time())
    took["registration (worker_list + joined)"] = time.perf_counter() - start

    t = time.perf_counter()
    snap = master.snapshot()
    took["worker list (snapshot)"] = time.perf_counter() - t
    assert len(snap["workers"]) == n

    t = time.perf_counter()
    now = time.time()
    released = 0
    for wid in range(n):
        released += len(master.barrier(wid, 1, 300.0, now))
    took["one barrier, every worker arrives"] = time.perf_counter() - t
    assert released == n, released

    t = time.perf_counter()
    now = time.time()
    for wid in range(n):
        master.finished_ok(wid, wid * 2, 1.0, now)
    took["every worker's result (finished_ok)"] = time.perf_counter() - t
    assert master.state == COMPLETED and len(master.results) == n

    took["total"] = time.perf_counter() - start
    return took


def state_file_cost(n: int) -> tuple[float, int]:
    """Seconds for snapshot() + json.dumps as JobDir.write_state does it, and the bytes written."""
    master = Master("bench-job", "bench", n, time.time())
    master.joined(worker_list([(f"node{i // PER_HOST:04d}", i) for i in range(n)]), ("head", 1), time.time())
    for wid in range(0, n, 2):
        master.progress(wid, 0.5, "halfway", time.time())
    start = time.perf_counter()
    data = json.dumps(master.snapshot(), indent=1, default=str).encode()
    return time.perf_counter() - start, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rounds = [one_round(args.workers) for _ in range(args.repeat)]
    print(
        f"job master, {args.workers} simulated workers ({PER_HOST} per host), {args.repeat} rounds; "
        f"python {sys.version.split()[0]}"
    )
    for phase in rounds[0]:
        print(describe(phase, [r[phase] for r in rounds]))
    total = statistics.median(r["total"] for r in rounds)
    print(f"{'round total':<44} median {total:8.4f} s  goal: under 1 s  ({'met' if total < 1.0 else 'NOT met'})")

    costs = [state_file_cost(args.workers) for _ in range(args.repeat)]
    print(describe("state.json: snapshot() + json.dumps", [c[0] for c in costs]))
    print(f"{'state.json size':<44} {costs[0][1] / 2**20:8.2f} MiB")


if __name__ == "__main__":
    main()
