"""MPI performance through a t2mpi job's ctx.comm against a bare mpi4py script, under this venv's MPI.

(t2mpi)        t2mpi run pingpong.yaml   (2 workers + the master: rank 0)
(t2mpi client) t2mpi run pingpong.yaml --master client   (the workers' world holds only them)
(bare)         mpiexec -n 2 python bench/pingpong_mpi.py
(bare + idle)  mpiexec -n 3 python bench/pingpong_mpi.py   (rank 2 idles as a job master does,
               launched with the options t2mpi gives a job whose master is its only idle rank)
All run the measuring code of bench/pingpong_mpi.py between two ranks, in the same environment
(the transport t2mpi chooses for this node, one BLAS thread): the bare sides are launched with
the options and rank environment that t2mpi's own rendering gives (bare + idle: exactly the
launcher words of `t2mpi run pingpong.yaml`; bare: the same for 2 ranks), so no launcher option
overrides a variable of that environment (printed):
ping-pong latency (8 B, half round trip), bandwidth (4 MiB messages), Allreduce (1M float64).
Interleaved rounds, medians. Goals (t2mpi / bare): bandwidth >= 0.97, latency and Allreduce <= 1.05.
t2mpi / (bare + idle) is what t2mpi's code adds beyond the shape of its world (an idle master
rank beside the workers, which on a node with fewer cores than ranks shares a core with them).

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
from common import PYTHON, ROOT, describe, job_folder, launcher_words, mpi_flavour, mpiexec, ratio_line, rendered

WORKER = """
import sys
sys.path.insert(0, {bench!r})
from t2mpi import IWorker

class PingPong(IWorker):
    def execute(self, ctx):
        from pingpong_mpi import measure  # here: loading the class (t2mpi run's check) starts no MPI

        return measure(ctx.comm)
"""

FIGURES = (
    ("latency_us", "latency 8 B", "us"),
    ("bandwidth_mib_s", "bandwidth 4 MiB", "MiB/s"),
    ("allreduce_ms", "Allreduce 1M float64", "ms"),
)
RUN_TIMEOUT = 180.0  # past the job's timeouts.start (120 s), so t2mpi reports a start that hangs


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
    work = job_folder(
        "pingpong", WORKER.format(bench=os.path.join(ROOT, "bench")), {"worker": "pingpong:PingPong", "workers": 2}
    )
    jobs = os.path.join(work, "t2mpi-jobs")
    # the same environment for all: t2mpi gives every rank one BLAS thread per worker thread,
    # and the transport it chooses for this node (t2mpi run passes it through the launcher; the
    # bare sides get it the same way, and every side inherits it too)
    launch, rank_env, transport = rendered(os.path.join(work, "pingpong.yaml"), 2)
    same_env = {**os.environ, **rank_env}
    bare_launch = {2: mpiexec(2, env=rank_env), 3: launch}  # 3: the 2 workers and an idle master rank

    def from_job(argv: list[str]) -> dict[str, float]:
        before = set(os.listdir(jobs)) if os.path.isdir(jobs) else set()
        run(argv, same_env, work)
        new = set(os.listdir(jobs)) - before
        if len(new) != 1:
            sys.exit(f"expected one new job folder under {jobs}, found {sorted(new)}")
        with open(os.path.join(jobs, new.pop(), "results.pkl"), "rb") as fh:
            return pickle.load(fh)[0]  # worker 0's figures (results are keyed by worker id)

    def bare(ranks: int) -> dict[str, float]:
        argv = bare_launch[ranks] + [PYTHON, os.path.join(ROOT, "bench", "pingpong_mpi.py")]
        return json.loads(run(argv, same_env, work).strip().splitlines()[-1])

    t2mpi_run = [PYTHON, "-m", "t2mpi", "run", "pingpong.yaml", "--quiet"]
    sides = {  # t2mpi: ctx.comm of 2 workers, + the master
        "t2mpi": lambda: from_job(t2mpi_run),
        "t2mpi, master client": lambda: from_job(t2mpi_run + ["--master", "client"]),
        "bare": lambda: bare(2),
        "bare + idle rank": lambda: bare(3),
    }
    for side in sides.values():  # warm the page cache and the MPI's first start
        side()
    samples: dict[str, dict[str, list[float]]] = {name: {key: [] for key, _, _ in FIGURES} for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            for key, value in side().items():
                samples[name][key].append(value)

    print(
        f"ping-pong, bandwidth, Allreduce under {mpi_flavour()}; {args.rounds} interleaved rounds; "
        f"{len(os.sched_getaffinity(0))} cores; python {sys.version.split()[0]}; transport {transport}"
    )
    for ranks, argv in bare_launch.items():
        print(f"bare, {ranks} ranks, launched as: {launcher_words(argv)}")
    for key, what, unit in FIGURES:
        for name in sides:
            print(describe(f"{what}, {name}", samples[name][key], unit))

    def ratios(num: str, den: str) -> None:
        a, b = samples[num], samples[den]
        print(ratio_line(f"bandwidth {num} / {den}", a["bandwidth_mib_s"], b["bandwidth_mib_s"], ">= 0.97"))
        print(ratio_line(f"latency {num} / {den}", a["latency_us"], b["latency_us"], "<= 1.05"))
        print(ratio_line(f"Allreduce {num} / {den}", a["allreduce_ms"], b["allreduce_ms"], "<= 1.05"))

    ratios("t2mpi", "bare")
    ratios("t2mpi, master client", "bare")
    ratios("t2mpi", "bare + idle rank")


if __name__ == "__main__":
    main()
