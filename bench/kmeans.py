"""K-Means as a t2mpi job against the same algorithm hand-written on bare mpi4py.

(t2mpi run)    t2mpi run jobs/kmeans.yaml -n W --set config.…   (as users run it: the client too)
(launch entry) mpiexec -n W+1 python -m t2mpi.launch jobs/kmeans.yaml -n W --set config.…
(bare)         mpiexec -n W   python bench/kmeans_mpi.py …
Whole-command wall time, interleaved rounds, medians. Goal: ratio <= 1.05.

All sides get the same environment: the rank environment that t2mpi run renders for the job on
this node (the thread limits of resources.threads, the chosen transport), both inherited and
passed by the launcher; the launch entry and the bare script are launched with t2mpi's own
launcher rendering (for W+1 and for W ranks). The thread limits and launch lines are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    BIN,
    PYTHON,
    ROOT,
    describe,
    interleave,
    launcher_words,
    mpi_flavour,
    mpiexec,
    ratio_line,
    rendered,
    timed,
)


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
    sets = [
        f"config.points={args.points}",
        f"config.iterations={args.iterations}",
        f"binding.mode={args.binding}",
    ]
    from t2mpi.job.spec import THREAD_LIMIT_VARS

    launch, rank_env, transport = rendered(job, w, sets)  # as t2mpi run launches this job here
    same_env = {**os.environ, **rank_env}
    bare_launch = mpiexec(w, env=rank_env)
    job_args = [job, "-n", str(w), "--quiet", *(word for s in sets for word in ("--set", s))]
    cases = {
        f"t2mpi run kmeans, {w} workers, binding {args.binding}": lambda: timed(
            [os.path.join(BIN, "t2mpi"), "run", *job_args], env=same_env, cwd=work
        ),
        f"launch entry, {w} workers + master": lambda: timed(
            launch + [PYTHON, "-m", "t2mpi.launch", *job_args], env=same_env, cwd=work
        ),
        f"bare mpi4py kmeans, {w} ranks": lambda: timed(
            bare_launch
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
        f"{args.rounds} interleaved rounds; transport {transport}"
    )
    print("every side's thread limits: " + " ".join(f"{v}={same_env[v]}" for v in THREAD_LIMIT_VARS))
    print(f"launch entry launched as: {launcher_words(launch)}")
    print(f"bare launched as:         {launcher_words(bare_launch)}")
    for name, samples in res.items():
        print(describe(name, samples))
    run, entry, bare = res.values()
    print(ratio_line("t2mpi run / bare", run, bare, "<= 1.05"))
    print(ratio_line("launch entry / bare", entry, bare, "<= 1.05"))


if __name__ == "__main__":
    main()
