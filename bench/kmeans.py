"""K-Means as a t2mpi job against the same algorithm hand-written on bare mpi4py.

(t2mpi) mpiexec -n W+1 python -m t2mpi.launch jobs/kmeans.yaml -n W --set config.…
(bare)  mpiexec -n W   python bench/kmeans_mpi.py …
Whole-command wall time, interleaved rounds, medians. Goal: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, ROOT, describe, interleave, mpi_flavour, mpiexec, ratio_line, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--binding",
        choices=("none", "cores"),
        default="none",
        help="the t2mpi job's binding.mode (the bare script is never bound)",
    )
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="t2mpi-bench-")
    job = os.path.join(ROOT, "jobs", "kmeans.yaml")
    w = args.workers
    from t2mpi.job.spec import THREAD_LIMIT_VARS

    # the same environment for both: t2mpi gives every rank one BLAS thread per worker thread
    same_env = dict(os.environ, **{var: "1" for var in THREAD_LIMIT_VARS})
    cases = {
        f"t2mpi kmeans job, {w} workers + master, binding {args.binding}": lambda: timed(
            mpiexec(w + 1, idle=1)
            + [
                PYTHON,
                "-m",
                "t2mpi.launch",
                job,
                "-n",
                str(w),
                "--quiet",
                "--set",
                f"config.points={args.points}",
                "--set",
                f"config.iterations={args.iterations}",
                "--set",
                f"binding.mode={args.binding}",
            ],
            cwd=work,
        ),
        f"bare mpi4py kmeans, {w} ranks": lambda: timed(
            mpiexec(w)
            + [
                PYTHON,
                os.path.join(ROOT, "bench", "kmeans_mpi.py"),
                f"points={args.points}",
                f"iterations={args.iterations}",
            ],
            env=same_env,
            cwd=work,
        ),
    }
    res = interleave(cases, args.rounds)
    print(
        f"K-Means under {mpi_flavour()}: {args.points} points, {args.iterations} iterations, "
        f"{args.rounds} interleaved rounds"
    )
    for name, samples in res.items():
        print(describe(name, samples))
    t2, bare = res.values()
    print(ratio_line("t2mpi / bare", t2, bare, "<= 1.05"))


if __name__ == "__main__":
    main()
