"""t2mpi.data on real MPI: a driver run by mpiexec with 2 and 3 ranks, checked against the same
operations computed in one process; and WordCount as a t2mpi job through ctx.data."""

from __future__ import annotations

import collections
import json
import pickle
import subprocess
import textwrap
import zlib
from pathlib import Path

import pytest
from conftest import JOBS, PYTHON, events_of, mpiexec, only_job, state_of, t2mpi, write_job

pytestmark = pytest.mark.mpi

DRIVER = r"""
import json, operator, sys, zlib
import numpy as np
from mpi4py import MPI
from t2mpi.data.api import Data
from t2mpi.data.errors import DataError

def checksum(items):
    items = list(items)
    return [len(items), sum(zlib.crc32(repr(x).encode()) for x in items) % (1 << 61)]

folder, mode = sys.argv[1], sys.argv[2]
data = Data(MPI.COMM_WORLD)
rank = data.rank
out = {}
if mode == "ops":
    rng = np.random.default_rng(7)
    keys = [f"k{int(x)}" for x in rng.zipf(1.5, 400) % 37]
    pairs = list(zip(keys, range(400)))
    ds = data.from_iterable(pairs).cache()
    out["reduce_by_key"] = sorted(ds.reduce_by_key(operator.add).collect())
    out["group_sorted"] = [[k, sorted(v)] for k, v in ds.group_by_key(sort=True).collect()]
    out["count_by_key"] = sorted(ds.count_by_key().collect())
    out["distinct"] = sorted(ds.keys().distinct().collect())
    right = data.from_iterable([(f"k{i}", i) for i in range(0, 60, 3)])
    out["join"] = {how: checksum(ds.join(right, how).collect()) for how in ("inner", "left", "right", "outer")}
    out["sort"] = ds.sort_by(lambda kv: (kv[0], -kv[1])).collect()
    mine = ds.sort_by(lambda kv: kv[1], ascending=False).partition()
    out["sort_part"] = [kv[1] for kv in mine]
    arr = rng.integers(-10**6, 10**6, 1000)
    out["np_sort"] = data.array(arr).sort_by().collect().tolist()
    blocks = data.array(arr).map_partitions(lambda b: b[b > 0] if rank == 0 else b[:3]).repartition()
    out["np_rebalanced"] = [len(blocks.partition()), blocks.collect().tolist()]
    ckeys = rng.integers(0, 50, 700)
    cols = data.columns(ckeys, ckeys * 2 + 1).reduce_by_key(operator.add)
    out["columns_kind"] = type(cols.partition()).__name__
    out["columns"] = sorted(cols.collect())
    points = rng.normal(size=(101, 3))
    out["all_reduce"] = data.array(points).map_partitions(lambda b: [b.sum(axis=0)]).all_reduce(operator.add).tolist()
    red = data.array(points).reduce(np.add, root=1)
    out["reduce_root1"] = None if red is None else red.tolist()
    out["count"] = ds.count()
    out["take"] = ds.take(4)
    out["top"] = ds.top(3, key=lambda kv: kv[1])
    out["repartition"] = checksum(ds.filter(lambda kv: kv[1] % 5).repartition(1).partition())
    out["partition_by_key"] = sorted({k for k, _ in ds.partition_by_key().partition()})
    out["collect_root"] = ds.map(lambda kv: kv[1]).collect(root=2 % data.size)
    out["union"] = checksum(ds.union(right).collect())
    out["broadcast"] = data.range(10).broadcast(root=data.size - 1).collect()
    out["side"] = data.broadcast({"from": rank} if rank == 0 else None)
elif mode == "fail":
    try:
        data.range(30).map(lambda x: 1 // (x - 29)).map(lambda x: (x, 1)).reduce_by_key(operator.add).count()
    except DataError as exc:
        out["error"] = [type(exc).__name__, str(exc)]
    out["after"] = data.range(6).count()      # the workers are still in step
with open(f"{folder}/rank-{rank}.json", "w") as f:
    json.dump(out, f)
"""


def checksum(items):
    items = list(items)
    return [len(items), sum(zlib.crc32(repr(x).encode()) for x in items) % (1 << 61)]


def reference():
    import numpy as np

    rng = np.random.default_rng(7)
    keys = [f"k{int(x)}" for x in rng.zipf(1.5, 400) % 37]
    pairs = list(zip(keys, range(400)))
    sums, groups = collections.defaultdict(int), collections.defaultdict(list)
    for k, v in pairs:
        sums[k] += v
        groups[k].append(v)
    right = [(f"k{i}", i) for i in range(0, 60, 3)]
    rdict = collections.defaultdict(list)
    for k, v in right:
        rdict[k].append(v)
    joins = {"inner": [(k, (v, w)) for k, v in pairs for w in rdict.get(k, [])]}
    joins["left"] = joins["inner"] + [(k, (v, None)) for k, v in pairs if k not in rdict]
    joins["right"] = joins["inner"] + [(k, (None, w)) for k, w in right if k not in groups]
    joins["outer"] = joins["left"] + [(k, (None, w)) for k, w in right if k not in groups]
    arr = rng.integers(-(10**6), 10**6, 1000)
    ckeys = rng.integers(0, 50, 700)
    csums = collections.Counter()
    for k in ckeys.tolist():
        csums[k] += 2 * k + 1
    points = rng.normal(size=(101, 3))
    return {
        "columns_kind": "Columns",
        "columns": sorted(csums.items()),
        "reduce_by_key": sorted(sums.items()),
        "group_sorted": sorted((k, sorted(v)) for k, v in groups.items()),
        "count_by_key": sorted((k, len(v)) for k, v in groups.items()),
        "distinct": sorted(groups),
        "join": {how: checksum(j) for how, j in joins.items()},
        "sort": sorted(pairs, key=lambda kv: (kv[0], -kv[1])),
        "np_sort": sorted(arr.tolist()),
        "all_reduce": points.sum(axis=0).tolist(),
        "count": 400,
        "take": pairs[:4],
        "top": sorted(pairs, key=lambda kv: kv[1], reverse=True)[:3],
        "repartition": checksum(kv for kv in pairs if kv[1] % 5),
        "union": checksum(pairs + right),
    }


def arr_of_driver():
    import numpy as np

    rng = np.random.default_rng(7)
    rng.zipf(1.5, 400)
    return rng.integers(-(10**6), 10**6, 1000).tolist()


def run_driver(tmp_path: Path, n: int, mode: str) -> list[dict]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    done = subprocess.run(
        mpiexec(n) + [PYTHON, str(script), str(tmp_path), mode],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(n)]


def as_json(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("n", [2, 3])
def test_operations_on_real_mpi_match_one_process(tmp_path, n):
    ranks = run_driver(tmp_path, n, "ops")
    want = as_json(reference())
    for rank, got in enumerate(ranks):
        for name, value in want.items():
            if name not in ("all_reduce", "repartition"):
                assert got[name] == value, (rank, name)
        assert got["all_reduce"] == pytest.approx(want["all_reduce"], rel=1e-12)  # MPI's sum order
        if rank == 1:
            assert got["reduce_root1"] == pytest.approx(want["all_reduce"], rel=1e-12)
        else:
            assert got["reduce_root1"] is None
        assert got["collect_root"] == (list(range(400)) if rank == 2 % n else None)
        assert got["broadcast"] == list(range(10 * (n - 1) // n, 10)) * n
        assert got["side"] == {"from": 0}
        kept = [x for x in arr_of_driver()[: 1000 // n] if x > 0] + [
            x for r in range(1, n) for x in arr_of_driver()[1000 * r // n :][:3]
        ]
        rows, collected = got["np_rebalanced"]
        assert collected == kept and rows in (len(kept) // n, -(-len(kept) // n))
        assert got["repartition"] == (want["repartition"] if rank == 0 else [0, 0])  # all on worker 0
    # a descending sort: partitions in rank order are the sorted whole, every part non-empty
    together = [v for got in ranks for v in got["sort_part"]]
    assert together == list(range(399, -1, -1)) and all(got["sort_part"] for got in ranks)
    # partition_by_key: each key on exactly one worker
    owners = collections.Counter(k for got in ranks for k in got["partition_by_key"])
    assert set(owners.values()) == {1} and sorted(owners) == want["distinct"]


@pytest.mark.parametrize("n", [2, 3])
def test_a_failure_on_one_rank_fails_every_rank_and_nothing_hangs(tmp_path, n):
    ranks = run_driver(tmp_path, n, "fail")
    last = n - 1
    for rank, got in enumerate(ranks):
        kind, text = got["error"]
        if rank == last:
            assert kind == "UserFunctionError" and "ZeroDivisionError" in text
            assert text.startswith("map at driver.py:") and f"on worker {last} of {n}" in text
        else:
            assert kind == "RemoteFailure" and f"worker {last} failed: map at driver.py:" in text
            assert text.startswith("reduce_by_key at driver.py:")
        assert got["after"] == 6


WORDCOUNT = """
    import operator
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            words = ctx.data.text(ctx.config["input"]).flat_map(str.split)
            counts = words.map(lambda w: (w, 1)).reduce_by_key(operator.add)
            counts.map(lambda kv: f"{kv[0]}\\t{kv[1]}").write_text(ctx.config["output"])
            return counts.top(3, key=lambda kv: (kv[1], kv[0]))
"""


def test_wordcount_job_through_ctx_data(work):
    folder = work / "in"
    folder.mkdir()
    texts = [
        "the quick brown fox\njumps over the lazy dog\n" * 30,
        "the end\n\nof the fox  story\n" * 11,
        "déjà vu the\n",
    ]
    for i, text in enumerate(texts):
        (folder / f"f{i}.txt").write_text(text, encoding="utf-8")
    out = work / "out"
    job = write_job(work, "wc", WORDCOUNT, workers=3, config={"input": str(folder), "output": str(out)})
    done = t2mpi("run", str(job), cwd=work, timeout=120)
    assert done.returncode == 0, done.stderr
    want = collections.Counter(w for text in texts for w in text.split())
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == ["part-00000", "part-00001", "part-00002"]
    got = collections.Counter()
    for part in parts:
        for line in part.read_text(encoding="utf-8").splitlines():
            word, count = line.split("\t")
            assert word not in got
            got[word] = int(count)
    assert got == want
    job_dir = only_job(work)
    assert state_of(job_dir)["state"] == "COMPLETED"
    top = sorted(want.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:3]
    results = pickle.loads((job_dir / "results.pkl").read_bytes())
    assert results == {w: top for w in range(3)}


def test_each_worker_reports_the_data_operation_it_is_in(work):
    """The master hears each worker's data operations (runtime.channel 'operation'): events.jsonl
    names them with the worker and the line the user wrote, and state.json keeps the last."""
    (work / "in.txt").write_text("a b a\nc a b\n" * 50, encoding="utf-8")
    job = write_job(work, "wc", WORDCOUNT, workers=2, config={"input": str(work / "in.txt"), "output": str(work / "o")})
    done = t2mpi("run", str(job), "--quiet", cwd=work, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = textwrap.dedent(WORDCOUNT).splitlines()
    line_of = {op: next(i for i, text in enumerate(lines, 1) if f".{op}(" in text) for op in ("reduce_by_key", "top")}
    job_dir = only_job(work)
    ops = [e for e in events_of(job_dir) if e["event"] == "operation"]
    for worker in (0, 1):
        mine = [(e["operation"], e["site"]) for e in ops if e["worker"] == worker]
        # the first step is sent at once; the last one is sent with the worker's result
        assert mine[0] == ("reduce_by_key", f"wc.py:{line_of['reduce_by_key']}"), mine
        assert mine[-1] == ("top", f"wc.py:{line_of['top']}"), mine
    assert [w["operation"] for w in state_of(job_dir)["workers"]] == [f"top at wc.py:{line_of['top']}"] * 2


def read_parts(out: Path) -> collections.Counter:
    got = collections.Counter()
    for part in sorted(out.iterdir()):
        for line in part.read_text(encoding="utf-8").splitlines():
            word, count = line.split("\t")
            assert word not in got
            got[word] = int(count)
    return got


@pytest.mark.parametrize("workers", [2, 3])
def test_wordcount_example_matches_one_process(work, workers):
    text = "".join(f"w{i % 13} w{i % 7}  é{i % 3}\n" for i in range(500)) + "last line without end"
    (work / "big.txt").write_text(text, encoding="utf-8")
    out = work / "counts"
    done = t2mpi(
        "run",
        str(JOBS / "wordcount.yaml"),
        "-n",
        str(workers),
        "--set",
        f"config.input={work / 'big.txt'}",
        "--set",
        f"config.output={out}",
        cwd=work,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    want = collections.Counter(text.split())
    assert sorted(p.name for p in out.iterdir()) == [f"part-{r:05d}" for r in range(workers)]
    assert read_parts(out) == want
    top = sorted(want.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]
    assert pickle.loads((only_job(work) / "results.pkl").read_bytes()) == {w: top for w in range(workers)}


FAILING_MAP = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ds = ctx.data.range(10).map(lambda x: 1 // (x - 9))     # fails on the last worker only
            return ds.map(lambda x: (x, 1)).reduce_by_key(lambda a, b: a + b).count()
"""


def test_user_error_in_a_job_fails_it_naming_the_operation(work):
    job = write_job(work, "failing", FAILING_MAP, workers=2)
    done = t2mpi("run", str(job), cwd=work, timeout=120)
    assert done.returncode == 1
    state = state_of(only_job(work))
    assert state["state"] == "FAILED"
    assert "map at failing.py:6 on worker 1 of 2" in state["reason"], state["reason"]
    assert "ZeroDivisionError" in state["reason"]
