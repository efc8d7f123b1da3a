"""Start-up cost of t2mpi against a bare mpi4py launch, under this venv's MPI.

(a) mpiexec -n 3 python -m t2mpi.launch jobs/hello.yaml -n 2  vs  a bare mpi4py Barrier: goal <= 1.3
(b) t2mpi run jobs/hello.yaml -n 2  vs  (a): goal <= 100 ms added by the client
(c) t2mpi run jobs/hello.yaml -n 2 --master client  vs  (b): the spawning master's cost

--binding measures instead what binding costs a launch: t2mpi run jobs/hello.yaml -n 2 with
binding.mode=cores against binding.mode=none (goal <= 30 ms added), with either master mode.

The bare Barrier and (a) are launched with the launcher options and rank environment that
`t2mpi run jobs/hello.yaml -n 2` renders on this node (taken from t2mpi's own rendering, and
printed), so all sides start their 3 ranks alike.

Usage: python bench/startup.py [--rounds N] [--binding]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, PYTHON, ROOT, describe, interleave, launcher_words, mpi_flavour, ratio_line, rendered, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--binding", action="store_true", help="bound against unbound t2mpi run")
    args = parser.parse_args()
    hello = os.path.join(ROOT, "jobs", "hello.yaml")
    work = tempfile.mkdtemp(prefix="t2mpi-bench-")
    if args.binding:
        return _binding(hello, work, args.rounds)
    launch, _env, _transport = rendered(hello, 2)  # as t2mpi run launches hello -n 2 here
    cases = {
        "bare mpi4py Barrier, 3 ranks": lambda: timed(
            launch + [PYTHON, "-c", "from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"]
        ),
        "(a) mpiexec -n 3 python -m t2mpi.launch": lambda: timed(
            launch + [PYTHON, "-m", "t2mpi.launch", hello, "-n", "2", "--quiet"], cwd=work
        ),
        "(b) t2mpi run hello -n 2": lambda: timed(
            [os.path.join(BIN, "t2mpi"), "run", hello, "-n", "2", "--quiet"], cwd=work
        ),
        "(c) t2mpi run hello -n 2 --master client": lambda: timed(
            [os.path.join(BIN, "t2mpi"), "run", hello, "-n", "2", "--quiet", "--master", "client"], cwd=work
        ),
    }
    for case in cases.values():  # warm the page cache and the MPI's first start
        case()
    res = interleave(cases, args.rounds)
    print(f"start-up under {mpi_flavour()}; {args.rounds} interleaved rounds; python {sys.version.split()[0]}")
    print(f"bare and (a) launched as t2mpi run renders it: {launcher_words(launch)}")
    for name, samples in res.items():
        print(describe(name, samples))
    bare, a, b, c = res.values()
    print(ratio_line("(a) launch entry / bare", a, bare, "<= 1.3"))
    added = (statistics.median(b) - statistics.median(a)) * 1000
    print(f"{'(b) client adds':<44} {added:8.1f} ms  goal <= 100 ms")
    print(ratio_line("(c) master: client / master: rank0", c, b, "(a figure, no goal)"))


def _binding(hello: str, work: str, rounds: int) -> None:
    run = [os.path.join(BIN, "t2mpi"), "run", hello, "-n", "2", "--quiet"]
    cases = {
        f"{master}, binding {mode}": (
            lambda mode=mode, master=master: timed(
                [*run, "--master", master, "--set", f"binding.mode={mode}"], cwd=work
            )
        )
        for master in ("rank0", "client")
        for mode in ("none", "cores")
    }
    for case in cases.values():  # warm the page cache and the MPI's first start
        case()
    res = interleave(cases, rounds)
    print(
        f"binding's start-up cost under {mpi_flavour()}; {rounds} interleaved rounds; python {sys.version.split()[0]}"
    )
    for name, samples in res.items():
        print(describe(name, samples))
    for master in ("rank0", "client"):
        added = statistics.median(res[f"{master}, binding cores"]) - statistics.median(res[f"{master}, binding none"])
        print(f"{f'binding adds (master: {master})':<44} {added * 1000:8.1f} ms  goal <= 30 ms")


if __name__ == "__main__":
    main()
