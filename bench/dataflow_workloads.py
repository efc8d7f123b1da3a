"""The workloads of bench/dataflow.py: each makes its input once (seeded) and lists its sides for W
workers, the single process first (its answer is the reference), the hand-written mpi4py program
second (the baseline), then t2mpi's and the peers' (PySpark, Dask: only where their side venv
exists), and checks an answer against the reference."""

from __future__ import annotations

import math
import os
import sys

from common import PYTHON, ROOT, mpiexec
from dataflow_sides import JobSide, Side, SideError, printed_result

JOBS = os.path.join(ROOT, "bench", "dataflow_jobs")
sys.path.insert(0, JOBS)
from partitions import combined  # noqa: E402
from tables import GROUPS, differences  # noqa: E402
from words import VOCABULARY  # noqa: E402

PEERS = {  # name: (side venv, its script, the APIs per workload)
    "PySpark": (
        ".venv-pyspark",
        "spark_side.py",
        {"wordcount": ("df", "rdd"), "sort": ("df", "rdd"), "join": ("df",)},
    ),
    "Dask": (".venv-dask", "dask_side.py", {"wordcount": ("df", "bag"), "sort": ("df",), "join": ("df",)}),
}
API_NAMES = {"df": "DataFrame", "rdd": "RDD", "bag": "bag"}
CHOSEN = set(PEERS)  # --peers: the peers to run where their venvs exist
KMEANS_DATA_JOB = os.path.join(ROOT, "jobs", "kmeans_data.yaml")
KMEANS = {"dims": 16, "clusters": 16}  # the issue's 1 M x 16, K=16; points and iterations from the sizes


def make_input(module: str, function: str, *args) -> int:
    """Call module.function(*args) (an input maker: it returns the size) in a separate process, so
    that this harness never grows: a process inherits its parent's peak RSS at exec as its own."""
    import subprocess

    code = f"import sys; sys.path.insert(0, {JOBS!r}); from {module} import {function}; print({function}(*{args!r}))"
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"dataflow: making the input failed: {module}.{function}{args}: {done.stderr.strip()[-500:]}")
    return int(done.stdout.split()[-1])


def t2mpi_cmd(w: int, job: str, *sets: str) -> list[str]:
    argv = mpiexec(w + 1, idle=1) + [PYTHON, "-m", "t2mpi.launch", job, "-n", str(w), "--quiet"]
    for item in sets:
        argv += ["--set", item]
    return argv


def peer_sides(workload: str, w: int, work: str, inputs: list[str]) -> tuple[list[Side], list[str]]:
    """The peers' sides where their venvs exist, and a line for each peer that is not measured."""
    sides, notes = [], []
    for peer, (venv, script, apis) in PEERS.items():
        if peer not in CHOSEN:
            continue
        python = os.path.join(ROOT, venv, "bin", "python")
        if not os.path.exists(python):
            notes.append(f"{peer}: not measured (no side venv {os.path.join(ROOT, venv)}; make it: bench/peers.sh)")
            continue
        for api in apis.get(workload, ()):
            argv = [python, os.path.join(JOBS, script), workload, api, str(w), os.path.join(work, "scratch"), *inputs]
            sides.append(Side(f"{peer} {API_NAMES[api]}, {w} workers", argv, printed_result))
    return sides, notes


def mpi_side(w: int, script: str, *args: str) -> Side:
    return Side(
        f"hand-written mpi4py, {w} ranks", mpiexec(w) + [PYTHON, os.path.join(JOBS, script), *args], printed_result
    )


def single_side(name: str, *args: str) -> Side:
    return Side(f"single process ({name})", [PYTHON, os.path.join(JOBS, "single.py"), *args], printed_result)


class Workload:
    name = ""
    issue = ""  # the issue's size

    def __init__(self, sizes: dict, seed: int, work: str):
        self.sizes, self.seed, self.work = sizes, seed, work

    def make(self) -> str:
        """Make the input; a line describing it."""
        raise NotImplementedError

    def sides(self, w: int) -> tuple[list[Side], list[str]]:
        raise NotImplementedError

    def check(self, side: Side, got: dict, want: dict) -> None:
        raise NotImplementedError


class WordCount(Workload):
    name, issue = "wordcount", "20 M words, Zipf over 100 k words"

    def make(self) -> str:
        self.path = os.path.join(self.work, "words.txt")
        size = make_input("words", "make_text", self.path, self.sizes["words"], self.seed)
        return f"WordCount: {self.sizes['words']:,} words, Zipf (p ~ 1/rank) over {VOCABULARY:,} words, ~10 a line, {size / 2**20:.1f} MiB"

    def sides(self, w: int) -> tuple[list[Side], list[str]]:
        top = lambda results: {"top": results[0]["top"]}  # noqa: E731
        job = os.path.join(JOBS, "wordcount.yaml")
        sides = [
            single_side("Counter", "wordcount", self.path),
            mpi_side(w, "wordcount_mpi.py", self.path),
            JobSide(
                f"t2mpi data API, {w} workers + master", t2mpi_cmd(w, job, f"config.input={self.path}"), top, self.work
            ),
            JobSide(
                f"t2mpi count_by_value, {w} w + m",
                t2mpi_cmd(w, job, f"config.input={self.path}", "worker=wordcount_job:WordCountByValue"),
                top,
                self.work,
            ),
        ]
        peers, notes = peer_sides("wordcount", w, self.work, [self.path])
        return sides + peers, notes

    def check(self, side: Side, got: dict, want: dict) -> None:
        if want.get("words") != self.sizes["words"]:
            raise SideError(
                f"the single process counted {want.get('words')} words, the input holds {self.sizes['words']}"
            )
        top = [tuple(kv) for kv in got["top"]]
        if top != [tuple(kv) for kv in want["top"]]:
            raise SideError(f"disagrees with the single process on the top 10: {top} != {want['top']}")
        for key in ("words", "distinct"):
            if key in got and got[key] != want[key]:
                raise SideError(f"found {got[key]} {key}, the single process {want[key]}")


class Sort(Workload):
    name, issue = "sort", "5 M records of 100 bytes"

    def make(self) -> str:
        self.path = os.path.join(self.work, "records.npy")
        size = make_input("records", "make_records", self.path, self.sizes["records"], self.seed)
        return f"sort: {self.sizes['records']:,} records of 100 bytes (10-byte random key, 90-byte payload), bytewise by key, {size / 2**20:.1f} MiB .npy"

    def sides(self, w: int) -> tuple[list[Side], list[str]]:
        parts = lambda results: {"parts": [results[i]["part"] for i in sorted(results)]}  # noqa: E731
        sides = [
            single_side("numpy", "sort", self.path),
            mpi_side(w, "sort_mpi.py", self.path),
            JobSide(
                f"t2mpi data API, {w} workers + master",
                t2mpi_cmd(w, os.path.join(JOBS, "sort.yaml"), f"config.input={self.path}"),
                parts,
                self.work,
            ),
        ]
        peers, notes = peer_sides("sort", w, self.work, [self.path])
        return sides + peers, notes

    def check(self, side: Side, got: dict, want: dict) -> None:
        mine, ref = combined(got["parts"]), combined(want["parts"])
        if not ref["sorted"] or ref["count"] != self.sizes["records"]:
            raise SideError(
                f"the single process's sort is wrong: {ref} (expected {self.sizes['records']} records, sorted)"
            )
        if mine != ref:
            raise SideError(f"disagrees with the single process: {mine} != {ref}")


class Join(Workload):
    name, issue = "join", "10 M x 2 M rows"

    def make(self) -> str:
        self.facts, self.dims = os.path.join(self.work, "facts.csv"), os.path.join(self.work, "dims.csv")
        size = make_input(
            "tables", "make_tables", self.facts, self.dims, self.sizes["facts"], self.sizes["dims"], self.seed
        )
        return (
            f"join + group sum: {self.sizes['facts']:,} facts (key,value) x {self.sizes['dims']:,} dims (key,group), "
            f"{GROUPS} groups, inner join, sum of value per group, {size / 2**20:.1f} MiB CSV"
        )

    def sides(self, w: int) -> tuple[list[Side], list[str]]:
        answer = lambda results: results[0]["answer"]  # noqa: E731
        job = os.path.join(JOBS, "join.yaml")
        sides = [
            single_side("numpy", "join", self.facts, self.dims),
            mpi_side(w, "join_mpi.py", self.facts, self.dims),
            JobSide(
                f"t2mpi data API, {w} workers + master",
                t2mpi_cmd(w, job, f"config.facts={self.facts}", f"config.dims={self.dims}"),
                answer,
                self.work,
            ),
        ]
        peers, notes = peer_sides("join", w, self.work, [self.facts, self.dims])
        return sides + peers, notes

    def check(self, side: Side, got: dict, want: dict) -> None:
        wrong = differences(got, want)
        if wrong:
            raise SideError("disagrees with the single process: " + "; ".join(wrong))


class KMeans(Workload):
    """K-Means through the data API (jobs/kmeans_data.yaml, where it exists) against bench/kmeans.py's
    mpi4py side (bench/kmeans_mpi.py, run as it is by dataflow_jobs/kmeans_side.py)."""

    name, issue = "kmeans", "1 M x 16, K=16, 20 iterations; goal <= 1.05 x bench/kmeans_mpi.py"

    def settings(self) -> list[str]:
        cfg = {**KMEANS, "points": self.sizes["points"], "iterations": self.sizes["iterations"]}
        return [f"{k}={v}" for k, v in cfg.items()]

    def make(self) -> str:
        return (
            f"K-Means: {self.sizes['points']:,} points x {KMEANS['dims']}, K={KMEANS['clusters']}, "
            f"{self.sizes['iterations']} iterations (each side makes the points; jobs/kmeans.py's make_points)"
        )

    def sides(self, w: int) -> tuple[list[Side], list[str]]:
        sides = [
            single_side("numpy, kmeans_sequential", "kmeans", str(w), *self.settings()),
            Side(
                f"bench/kmeans_mpi.py, {w} ranks",
                mpiexec(w) + [PYTHON, os.path.join(JOBS, "kmeans_side.py"), *self.settings()],
                printed_result,
            ),
        ]
        if not os.path.exists(KMEANS_DATA_JOB):
            return sides, [f"t2mpi data API: not measured ({KMEANS_DATA_JOB} does not exist yet)"]
        sets = [f"config.{s}" for s in self.settings()]
        sides.append(
            JobSide(f"t2mpi data API, {w} workers + master", t2mpi_cmd(w, KMEANS_DATA_JOB, *sets), centroids, self.work)
        )
        return sides, []

    def check(self, side: Side, got: dict, want: dict) -> None:
        a, b = got["centroids"], want["centroids"]
        if len(a) != len(b) or not all(
            len(p) == len(q) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(p, q))
            for p, q in zip(a, b)
        ):
            raise SideError("disagrees with the single process on the centroids (relative tolerance 1e-6)")


def centroids(results: dict) -> dict:
    """The centroids a kmeans_data worker returns (an array, or a dict holding 'centroids')."""
    first = results[min(results)]
    value = first["centroids"] if isinstance(first, dict) else first
    return {"centroids": [[float(x) for x in row] for row in value]}


WORKLOADS = {w.name: w for w in (WordCount, Sort, Join, KMeans)}
SIZES = {
    "issue": {
        "words": 20_000_000,
        "records": 5_000_000,
        "facts": 10_000_000,
        "dims": 2_000_000,
        "points": 1_000_000,
        "iterations": 20,
    },
    "small": {
        "words": 200_000,
        "records": 100_000,
        "facts": 200_000,
        "dims": 40_000,
        "points": 100_000,
        "iterations": 20,
    },
}
