"""Batch dataflow (issue #14): WordCount, sort, join + group sum and K-Means through the t2mpi data
API, against the same work hand-written on bare mpi4py (the baseline), one plain Python/numpy
process, and the peers PySpark and Dask where their side venvs exist (bench/peers.sh makes them).

(t2mpi)   mpiexec -n W+1 python -m t2mpi.launch bench/dataflow_jobs/JOB.yaml -n W --quiet --set config.…
(mpi4py)  mpiexec -n W   python bench/dataflow_jobs/JOB_mpi.py INPUT…
(single)  python bench/dataflow_jobs/single.py JOB INPUT…
(peers)   .venv-pyspark/bin/python bench/dataflow_jobs/spark_side.py JOB df|rdd W SCRATCH INPUT…
          .venv-dask/bin/python bench/dataflow_jobs/dask_side.py JOB df|bag W SCRATCH INPUT…
Inputs are made once (seeded) in a temporary folder. Each round runs every side once, in turn; every
answer is checked against the single process's. Whole-command wall time, medians. A side that fails
or disagrees is reported with its reason and left out of later rounds; the others go on (exit 1).
Goals: t2mpi <= 1.25 x hand-written mpi4py (K-Means: 1.05 x), peak RSS <= 1.5 x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import describe, interleave, mpi_flavour  # noqa: E402
from dataflow_sides import Side, SideError, become_subreaper  # noqa: E402
from dataflow_workloads import CHOSEN, PEERS, SIZES, WORKLOADS, Workload  # noqa: E402

GOAL = {"kmeans": 1.05}
DEFAULT_GOAL = 1.25
RSS_GOAL = 1.5


def measure(workload: Workload, sides: list[Side], rounds: int, timeout: float) -> dict[str, list[float]]:
    """Interleaved rounds; the first side (the single process) gives the answer the others must match."""
    from t2mpi.job.spec import THREAD_LIMIT_VARS

    env = dict(os.environ, **{var: "1" for var in THREAD_LIMIT_VARS})
    reference: dict = {}

    def case(side: Side) -> Callable[[], float]:
        def once() -> float:
            if side.failed or (side is not sides[0] and "answer" not in reference):
                return float("nan")
            try:
                took, result = side.run(env, workload.work, timeout)
                if side is sides[0]:
                    reference.setdefault("answer", result)
                workload.check(side, result, reference["answer"])
            except SideError as exc:
                side.failed = str(exc)
                print(f"  dataflow: {workload.name}: {side.name}: {exc}", flush=True)
                return float("nan")
            return took

        return once

    return interleave({side.name: case(side) for side in sides}, rounds)


def report(workload: Workload, sides: list[Side], times: dict[str, list[float]]) -> dict[str, float]:
    """Print each side's figures against the baseline (the second side); returns the medians."""
    medians = {s.name: statistics.median(times[s.name]) for s in sides if not s.failed}
    base = sides[1]
    base_t = medians.get(base.name)
    for side in sides:
        if side.failed:
            print(f"  {side.name:<44} FAILED: {side.failed.split(' (command: ')[0]}")
            continue
        ratio = f"x{medians[side.name] / base_t:5.2f} of mpi4py" if base_t else "(no baseline)"
        print(
            f"  {describe(side.name, times[side.name])}  {ratio}  peak RSS {max(side.rss):6.0f} MiB "
            f"(largest process {max(side.tree):6.0f} MiB)"
        )
    goal = GOAL.get(workload.name, DEFAULT_GOAL)
    for side in sides[2:]:
        if not side.name.startswith("t2mpi") or side.failed or not base_t or base.failed:
            continue
        ratio, rss = medians[side.name] / base_t, max(side.rss) / max(base.rss)
        print(
            f"  goal t2mpi <= {goal} x mpi4py: {side.name}: {ratio:.2f} x, {'met' if ratio <= goal else 'NOT met'}; "
            f"peak RSS <= {RSS_GOAL} x: {rss:.2f} x, {'met' if rss <= RSS_GOAL else 'NOT met'}"
        )
    return medians


def run_workload(workload: Workload, workers: list[int], args: argparse.Namespace) -> dict[int, dict[str, float]]:
    print(f"\n{workload.make()} (issue: {workload.issue})", flush=True)
    out = {}
    for w in workers:
        cpus = os.cpu_count() or 1
        note = f", OVERSUBSCRIBED: {w} busy ranks or processes on {cpus} CPUs" if w > cpus else ""
        print(f" {w} worker(s){note}:", flush=True)
        sides, notes = workload.sides(w)
        for line in notes:
            print(f"  {line}")
        times = measure(workload, sides, args.rounds, args.timeout)
        out[w] = report(workload, sides, times)
        args.failed += [f"{workload.name} {w}w: {s.name}" for s in sides if s.failed]
    return out


def scaling(name: str, medians: dict[int, dict[str, float]]) -> None:
    """Each side's median at each worker count, and its speed-up over its own 1-worker time."""
    counts = sorted(medians)
    print(f"\n scaling, {name}: median s at {', '.join(map(str, counts))} workers")
    by_kind: dict[str, dict[int, float]] = {}
    for w, row in medians.items():
        for side, t in row.items():
            by_kind.setdefault(
                side.replace(f"{w} workers", "W workers").replace(f"{w} ranks", "W ranks").replace(f"{w} w ", "W w "),
                {},
            )[w] = t
    for side, row in by_kind.items():
        cells = "  ".join(f"{row[w]:8.3f}" if w in row else "       -" for w in counts)
        first = row.get(counts[0])
        speed = "  ".join(f"{first / row[w]:5.2f}x" if first and w in row else "    -" for w in counts)
        print(f"  {side:<44} {cells}   speed-up {speed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="2", help="worker counts, e.g. 2 or 1,2,4 (scaling)")
    parser.add_argument(
        "--sizes", choices=sorted(SIZES), default="issue", help="issue: the issue's sizes; small: a smoke run"
    )
    for key in SIZES["issue"]:
        parser.add_argument(f"--{key}", type=int, help=f"override the size's {key}")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run of one side may take")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--peers",
        default="all",
        help="peers to run where their venvs exist: all, none, or comma-separated (PySpark,Dask)",
    )
    args = parser.parse_args()
    chosen = set(PEERS) if args.peers == "all" else {p.strip() for p in args.peers.split(",") if p.strip()} - {"none"}
    if chosen - set(PEERS):
        parser.error(f"--peers: unknown {', '.join(sorted(chosen - set(PEERS)))}; choose from {', '.join(PEERS)}")
    CHOSEN.clear()
    CHOSEN.update(chosen)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in SIZES[args.sizes].items()}
    args.failed = []
    become_subreaper()
    print(
        f"Batch dataflow benchmark (issue #14): {os.cpu_count()} CPUs, MPI {mpi_flavour()}, Python {sys.version.split()[0]}, "
        f"workers {args.workers}, {args.rounds} interleaved rounds, sizes {args.sizes}"
    )
    print(
        "Times: median wall time of the whole command (process start, MPI launch or Spark/Dask start-up, reading the "
        "input, the work, the answer); making the inputs is not timed. Peak RSS: the largest of the side's ranks or "
        "worker processes as each reports it (PySpark: none, so the largest process, its JVM, which holds all W task "
        "slots), and the largest process in the side's whole tree (wait4)."
    )
    work = tempfile.mkdtemp(prefix="t2mpi-bench-dataflow-")
    try:
        for name in only:
            medians = run_workload(WORKLOADS[name](sizes, args.seed, work), workers, args)
            if len(workers) > 1:
                scaling(name, medians)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.failed:
        sys.exit(f"\ndataflow: {len(args.failed)} side(s) failed or disagreed: {'; '.join(args.failed)}")


if __name__ == "__main__":
    main()
