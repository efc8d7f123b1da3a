"""A STREAM-triad-like kernel (a = b + s*c over numpy arrays, each worker thread on its own
slice) run as a t2mpi job, bound (binding: cores) against unbound (binding: none).

Each run: W workers x T threads, --seconds of triads; the job reports each worker's bandwidth.
Interleaved runs, median and spread (max-min) of the job's total bandwidth per mode.
Goal: bound never slower, with a smaller spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleave, job_folder, mpi_flavour

WORKER = """
import time
import numpy as np
from t2mpi import IWorker

def triad(args):
    n, seconds = args
    a, b, c = np.empty(n), np.random.rand(n), np.random.rand(n)
    moved, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        moved += 3 * a.nbytes          # two reads and one write of n doubles
    return moved / (time.perf_counter() - start)

class Stream(IWorker):
    def execute(self, ctx):
        cfg = ctx.config
        per_thread = cfg["mib"] * 2**20 // 8 // ctx.resources.threads
        rates = ctx.threads.map(triad, [(per_thread, cfg["seconds"])] * ctx.resources.threads)
        return sum(rates)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mib", type=int, default=64, help="array size per worker (MiB), 3 arrays")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = job_folder(
        "stream",
        WORKER,
        {
            "worker": "stream:Stream",
            "workers": args.workers,
            "resources": {"cpus": args.threads, "threads": args.threads, "memory": "2G"},
            "config": {"mib": args.mib, "seconds": args.seconds},
        },
    )
    import t2mpi
    from t2mpi.client import Follower

    def run(mode: str) -> float:
        cwd = os.getcwd()
        os.chdir(work)
        try:
            result = t2mpi.run(
                "stream.yaml", overrides=[f"binding.mode={mode}"], follower=Follower(lambda s: None, lambda s: None)
            )
        finally:
            os.chdir(cwd)
        if not result.ok:
            sys.exit(f"the stream job failed ({mode}): {result.reason}")
        return sum(result.results.values()) / 2**30

    res = interleave(
        {"bound (binding: cores)": lambda: run("cores"), "unbound (binding: none)": lambda: run("none")}, args.rounds
    )
    print(
        f"STREAM triad under {mpi_flavour()}: {args.workers} workers x {args.threads} threads, "
        f"{args.mib} MiB per worker, {args.seconds} s per run, {args.rounds} interleaved rounds"
    )
    for name, samples in res.items():
        print(
            f"{name:<26} median {statistics.median(samples):7.2f} GiB/s  spread "
            f"{max(samples) - min(samples):6.2f} GiB/s  (min {min(samples):.2f}, max {max(samples):.2f})"
        )
    bound, unbound = res.values()
    print(
        f"bound / unbound median: {statistics.median(bound) / statistics.median(unbound):.3f} "
        "(goal: >= 1, with a smaller spread)"
    )


if __name__ == "__main__":
    main()
