"""The job master's idle cost: CPU seconds of rank 0 over wall seconds while its workers sleep.

Runs `mpiexec -n 3 python -m t2mpi.launch` (launched as t2mpi run renders it) of a job whose 2
workers sleep for --seconds (10), and reads the master's CPU time (master.cpu_seconds) from
state.json when all have joined and when the job ends. The wall time is from the join (every
worker's `started`, which the master sets when all have joined) to the job's `ended`.
Goal: under 2 % of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, job_folder, mpi_flavour, rendered

WORKER = """
import time
from t2mpi import IWorker

class Sleeper(IWorker):
    def execute(self, ctx):
        time.sleep(ctx.config["seconds"])
"""


def _joined(state_file: str) -> dict | None:
    """The state the master wrote once every worker had joined (each has its `started`), or None."""
    try:
        with open(state_file) as fh:
            state = json.load(fh)
    except FileNotFoundError:
        return None
    workers = state.get("workers") or []
    return state if workers and all(w.get("started") is not None for w in workers) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = job_folder(
        "sleeper", WORKER, {"worker": "sleeper:Sleeper", "workers": 2, "config": {"seconds": args.seconds}}
    )
    launch, _env, _transport = rendered(os.path.join(work, "sleeper.yaml"), 2)
    shares = []
    for _ in range(args.runs):
        before = (
            set(os.listdir(os.path.join(work, "t2mpi-jobs")))
            if os.path.isdir(os.path.join(work, "t2mpi-jobs"))
            else set()
        )
        proc = subprocess.Popen(
            launch + [PYTHON, "-m", "t2mpi.launch", "sleeper.yaml", "--quiet"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        state_file, joined = None, None
        while proc.poll() is None and joined is None:  # the first state.json is written on join
            new = (
                set(os.listdir(os.path.join(work, "t2mpi-jobs"))) - before
                if os.path.isdir(os.path.join(work, "t2mpi-jobs"))
                else set()
            )
            if new:
                state_file = os.path.join(work, "t2mpi-jobs", new.pop(), "state.json")
                joined = _joined(state_file)
            time.sleep(0.01)
        _, err = proc.communicate(timeout=args.seconds + 60)
        if proc.returncode != 0 or joined is None:
            sys.exit(f"the sleeper job failed: {err}")
        with open(state_file) as fh:
            end = json.load(fh)
        cpu = end["master"]["cpu_seconds"] - joined["master"]["cpu_seconds"]
        wall = end["ended"] - min(w["started"] for w in joined["workers"])  # from the join
        shares.append(cpu / wall)
        print(f"run: master CPU {cpu * 1000:.1f} ms over {wall:.2f} s wall = {cpu / wall * 100:.3f} %")
    shares.sort()
    print(
        f"master idle cost under {mpi_flavour()}: median {shares[len(shares) // 2] * 100:.3f} % "
        f"of wall time (goal < 2 %)"
    )


if __name__ == "__main__":
    main()
