"""Batch dataflow (issue #14): WordCount and sort through the t2mpi data API, against the same work
hand-written on bare mpi4py (the baseline) and in one plain Python/numpy process.

(t2mpi)  mpiexec -n W+1 python -m t2mpi.launch bench/dataflow_jobs/JOB.yaml -n W --quiet --set config.input=…
(mpi4py) mpiexec -n W   python bench/dataflow_jobs/JOB_mpi.py INPUT
(single) python bench/dataflow_jobs/single.py JOB INPUT
Inputs are made once (seeded) in a temporary folder. Each round runs every side once, in turn; every
answer is checked against the single process's. Whole-command wall time, medians.
Goal: t2mpi <= 1.25 x hand-written mpi4py.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = os.path.join(HERE, "dataflow_jobs")
sys.path.insert(0, HERE)
sys.path.insert(0, JOBS)
from common import PYTHON, ROOT, describe, interleave, mpi_flavour, mpiexec  # noqa: E402
from records import combined, make_records  # noqa: E402
from words import VOCABULARY, make_text  # noqa: E402

GOAL = 1.25
ISSUE_SIZES = {"wordcount": "20 M words, Zipf over 100 k words", "sort": "5 M records of 100 bytes"}
PEERS = {  # side venvs that are looked for, never installed by this benchmark
    "PySpark": (".venv-pyspark", "python3 -m venv .venv-pyspark && .venv-pyspark/bin/pip install pyspark"),
    "Dask": (".venv-dask", "python3 -m venv .venv-dask && .venv-dask/bin/pip install 'dask[dataframe]'"),
}


class Side:
    """One way of running a workload: its command, and how to read its answer."""

    def __init__(self, name: str, argv: list[str], read: Callable[[subprocess.CompletedProcess, str], dict]):
        self.name, self.argv, self.read = name, argv, read
        self.rss: list[float] = []

    def run(self, env: dict[str, str], cwd: str, extra: list[str]) -> tuple[float, dict]:
        argv = self.argv + extra
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
        took = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"dataflow: {self.name} failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
        result = self.read(done, " ".join(argv))
        self.rss.append(result.get("rss_mib", float("nan")))
        return took, result


def printed_result(done: subprocess.CompletedProcess, command: str) -> dict:
    """The RESULT {json} line a hand-written or single-process side prints."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if len(lines) != 1:
        sys.exit(f"dataflow: no RESULT line from {command}\n{done.stdout}{done.stderr}")
    return json.loads(lines[0][len("RESULT ") :])


def job_results(jobs_dir: str, command: str) -> dict[int, dict]:
    """The workers' return values of the one job run under jobs_dir (its results.pkl)."""
    found = glob.glob(os.path.join(jobs_dir, "*", "results.pkl"))
    if len(found) != 1:
        sys.exit(f"dataflow: expected one results.pkl under {jobs_dir} after {command}, found {found}")
    with open(found[0], "rb") as f:
        return pickle.load(f)


class JobSide(Side):
    """A t2mpi job: each run gets a fresh jobs_dir, read for the results, then removed."""

    def __init__(self, name: str, argv: list[str], merge: Callable[[dict[int, dict]], dict], work: str):
        super().__init__(name, argv, self._read)
        self.merge, self.work, self.runs = merge, work, 0

    def run(self, env: dict[str, str], cwd: str, extra: list[str]) -> tuple[float, dict]:
        self.runs += 1
        self.jobs_dir = os.path.join(self.work, "jobs", f"{self.name.split()[0]}-{id(self)}-{self.runs}")
        extra = extra + ["--set", f"jobs_dir={self.jobs_dir}", "--set", f"scratch_dir={self.work}/scratch"]
        try:
            return super().run(env, cwd, extra)
        finally:
            shutil.rmtree(self.jobs_dir, ignore_errors=True)

    def _read(self, done: subprocess.CompletedProcess, command: str) -> dict:
        results = job_results(self.jobs_dir, command)
        return {**self.merge(results), "rss_mib": max(r["rss_mib"] for r in results.values())}


def merged_top(results: dict[int, dict]) -> dict:
    return {"top": results[0]["top"]}


def merged_parts(results: dict[int, dict]) -> dict:
    return {"parts": [results[w]["part"] for w in sorted(results)]}


def t2mpi_cmd(w: int, job: str, path: str, *sets: str) -> list[str]:
    argv = mpiexec(w + 1, idle=1) + [PYTHON, "-m", "t2mpi.launch", os.path.join(JOBS, job), "-n", str(w), "--quiet"]
    for item in (f"config.input={path}",) + sets:
        argv += ["--set", item]
    return argv


def wordcount_sides(w: int, path: str, work: str) -> list[Side]:
    return [
        Side("single process (Counter)", [PYTHON, os.path.join(JOBS, "single.py"), "wordcount", path], printed_result),
        Side(
            f"hand-written mpi4py, {w} ranks",
            mpiexec(w) + [PYTHON, os.path.join(JOBS, "wordcount_mpi.py"), path],
            printed_result,
        ),
        JobSide(f"t2mpi data API, {w} workers + master", t2mpi_cmd(w, "wordcount.yaml", path), merged_top, work),
        JobSide(
            f"t2mpi map_partitions(Counter), {w} w + m",
            t2mpi_cmd(w, "wordcount.yaml", path, "worker=wordcount_job:WordCountByPartition"),
            merged_top,
            work,
        ),
    ]


def sort_sides(w: int, path: str, work: str) -> list[Side]:
    return [
        Side("single process (numpy)", [PYTHON, os.path.join(JOBS, "single.py"), "sort", path], printed_result),
        Side(
            f"hand-written mpi4py, {w} ranks",
            mpiexec(w) + [PYTHON, os.path.join(JOBS, "sort_mpi.py"), path],
            printed_result,
        ),
        JobSide(f"t2mpi data API, {w} workers + master", t2mpi_cmd(w, "sort.yaml", path), merged_parts, work),
    ]


def check_wordcount(side: Side, got: dict, want: dict, words: int) -> None:
    if want.get("words") != words:
        sys.exit(f"dataflow: the single process counted {want.get('words')} words, the input holds {words}")
    top = [tuple(kv) for kv in got["top"]]
    if top != [tuple(kv) for kv in want["top"]]:
        sys.exit(f"dataflow: {side.name} disagrees with the single process on the top 10:\n  {top}\n  {want['top']}")
    for key in ("words", "distinct"):
        if key in got and got[key] != want[key]:
            sys.exit(f"dataflow: {side.name} found {got[key]} {key}, the single process {want[key]}")


def check_sort(side: Side, got: dict, want: dict, records: int) -> None:
    mine, ref = combined(got["parts"]), combined(want["parts"])
    if not ref["sorted"] or ref["count"] != records:
        sys.exit(f"dataflow: the single process's sort is wrong: {ref} (expected {records} records, sorted)")
    if mine != ref:
        sys.exit(f"dataflow: {side.name} disagrees with the single process:\n  {mine}\n  {ref}")


def measure(
    sides: list[Side], check: Callable[[Side, dict, dict], None], rounds: int, work: str
) -> dict[str, list[float]]:
    """Interleaved rounds; the first side (the single process) gives the answer the others must match."""
    from t2mpi.job.spec import THREAD_LIMIT_VARS

    env = dict(os.environ, **{var: "1" for var in THREAD_LIMIT_VARS})
    reference: dict = {}

    def case(side: Side) -> Callable[[], float]:
        def once() -> float:
            took, result = side.run(env, work, [])
            if side is sides[0]:
                reference.setdefault("answer", result)
            check(side, result, reference["answer"])
            return took

        return once

    return interleave({side.name: case(side) for side in sides}, rounds)


def report(sides: list[Side], times: dict[str, list[float]]) -> None:
    base = statistics.median(times[sides[1].name])
    for side in sides:
        samples = times[side.name]
        rss = max(side.rss)
        print(
            f"  {describe(side.name, samples)}  x{statistics.median(samples) / base:5.2f} of mpi4py  peak RSS {rss:6.0f} MiB"
        )
    for side in sides[2:]:
        ratio = statistics.median(times[side.name]) / base
        verdict = "met" if ratio <= GOAL else "NOT met"
        print(f"  goal t2mpi <= {GOAL} x hand-written mpi4py: {side.name}: {ratio:.2f} x, {verdict}")


def run_workload(name: str, args: argparse.Namespace, work: str) -> None:
    """Make the workload's input once, then measure its sides, interleaved, and report them."""
    if name == "wordcount":
        path, count = os.path.join(work, "words.txt"), args.words
        make, sides, check = make_text, wordcount_sides, check_wordcount
        what = f"WordCount: {count:,} words, Zipf (p ~ 1/rank) over {VOCABULARY:,} words, ~10 a line"
        unit = "MiB"
    else:
        path, count = os.path.join(work, "records.npy"), args.records
        make, sides, check = make_records, sort_sides, check_sort
        what = f"sort: {count:,} records of 100 bytes (10-byte random key, 90-byte payload), bytewise by key"
        unit = "MiB .npy"
    start = time.perf_counter()
    size = make(path, count, args.seed)
    print(
        f"\n{what}, {size / 2**20:.1f} {unit} (issue: {ISSUE_SIZES[name]}); made in {time.perf_counter() - start:.1f} s"
    )
    chosen = sides(args.workers, path, work)
    times = measure(chosen, lambda s, got, want: check(s, got, want, count), args.rounds, work)
    report(chosen, times)


WORKLOADS = ("wordcount", "sort")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--words", type=int, default=10_000_000, help="WordCount input size in words")
    parser.add_argument("--records", type=int, default=2_000_000, help="sort input size in 100-byte records")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", default="wordcount,sort", help="comma-separated: wordcount, sort")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    print(
        f"Batch dataflow benchmark (issue #14): {os.cpu_count()} CPUs, MPI {mpi_flavour()}, Python {sys.version.split()[0]}, "
        f"{args.workers} workers, {args.rounds} interleaved rounds"
    )
    print(
        "Times: median wall time of the whole command (process start, MPI launch, reading the input, the work, "
        "the answer), time.perf_counter around subprocess.run; making the inputs is not timed."
    )
    print(
        "Every side's answer is checked against the single process's (WordCount: the top 10; sort: count, checksum, order)."
    )
    work = tempfile.mkdtemp(prefix="t2mpi-bench-dataflow-")
    try:
        for name in only:
            run_workload(name, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    for peer, (venv, make) in PEERS.items():
        where = os.path.join(ROOT, venv)
        if os.path.isdir(where):
            print(f"{peer}: side venv {where} found, but this benchmark has no {peer} side yet; not measured")
        else:
            print(f"{peer}: not measured (no side venv {where}); to add it: cd {ROOT} && {make}")


if __name__ == "__main__":
    main()
