"""MPI performance through a t2mpi job's ctx.comm against a bare mpi4py script, under this venv's MPI.

(t2mpi) mpiexec -n 3 python -m t2mpi.launch pingpong.yaml --quiet   (2 workers + the master)
(bare)  mpiexec -n 2 python bench/pingpong_mpi.py
Both run the measuring code of bench/pingpong_mpi.py between two ranks, in the same environment:
ping-pong latency (8 B, half round trip), bandwidth (4 MiB messages), Allreduce (1M float64).
Interleaved rounds, medians. Goals (t2mpi / bare): bandwidth >= 0.97, latency and Allreduce <= 1.05.

Usage: python bench/pingpong.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import job_folder, PYTHON, ROOT, describe, mpi_flavour, mpiexec, ratio_line

WORKER = """
import sys
sys.path.insert(0, {bench!r})
from pingpong_mpi import measure
from t2mpi import IWorker

class PingPong(IWorker):
    def execute(self, ctx):
        return measure(ctx.comm)
"""

FIGURES = (("latency_us", "latency 8 B", "us"), ("bandwidth_mib_s", "bandwidth 4 MiB", "MiB/s"),
           ("allreduce_ms", "Allreduce 1M float64", "ms"))
RUN_TIMEOUT = 180.0   # past the job's timeouts.start (120 s), so t2mpi reports a start that hangs


def run(argv: list[str], env: dict[str, str], cwd: str) -> str:
    """stdout of one launch; a failed or hung one stops the benchmark with its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.exit(f"benchmark command ran past {RUN_TIMEOUT:g} s: {' '.join(argv)}")
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    from t2mpi.spec import THREAD_LIMIT_VARS

    work = job_folder("pingpong", WORKER.format(bench=os.path.join(ROOT, "bench")),
                      {"worker": "pingpong:PingPong", "workers": 2})
    jobs = os.path.join(work, "t2mpi-jobs")
    # the same environment for both: t2mpi gives every rank one BLAS thread per worker thread
    same_env = dict(os.environ, **{var: "1" for var in THREAD_LIMIT_VARS})

    def t2mpi_side() -> dict[str, float]:
        before = set(os.listdir(jobs)) if os.path.isdir(jobs) else set()
        run(mpiexec(3) + [PYTHON, "-m", "t2mpi.launch", "pingpong.yaml", "--quiet"], same_env, work)
        new = set(os.listdir(jobs)) - before
        if len(new) != 1:
            sys.exit(f"expected one new job folder under {jobs}, found {sorted(new)}")
        with open(os.path.join(jobs, new.pop(), "results.pkl"), "rb") as fh:
            return pickle.load(fh)[0]    # worker 0's figures (results are keyed by worker id)

    def bare_side() -> dict[str, float]:
        out = run(mpiexec(2) + [PYTHON, os.path.join(ROOT, "bench", "pingpong_mpi.py")], same_env, work)
        return json.loads(out.strip().splitlines()[-1])

    sides = {"t2mpi": t2mpi_side, "bare": bare_side}   # t2mpi: ctx.comm of 2 workers, + the master
    for side in sides.values():   # warm the page cache and the MPI's first start
        side()
    samples: dict[str, dict[str, list[float]]] = {name: {key: [] for key, _, _ in FIGURES} for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            for key, value in side().items():
                samples[name][key].append(value)

    print(f"ping-pong, bandwidth, Allreduce under {mpi_flavour()}; {args.rounds} interleaved rounds; "
          f"{len(os.sched_getaffinity(0))} cores; python {sys.version.split()[0]}")
    for key, what, unit in FIGURES:
        for name in sides:
            print(describe(f"{what}, {name}", samples[name][key], unit))
    t2, bare = (samples[name] for name in sides)
    print(ratio_line("bandwidth t2mpi / bare", t2["bandwidth_mib_s"], bare["bandwidth_mib_s"], ">= 0.97"))
    print(ratio_line("latency t2mpi / bare", t2["latency_us"], bare["latency_us"], "<= 1.05"))
    print(ratio_line("Allreduce t2mpi / bare", t2["allreduce_ms"], bare["allreduce_ms"], "<= 1.05"))


if __name__ == "__main__":
    main()
