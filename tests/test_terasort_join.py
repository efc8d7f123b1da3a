"""The terasort and join examples (jobs/) on real MPI, each answer checked against a plain
single-process computation of the same input."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
from conftest import JOBS, events_of, only_job, t2mpi

from t2mpi.data import gensort

pytestmark = pytest.mark.mpi


def read_parts(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()))


def sorted_by_key(raw: bytes) -> list[bytes]:
    records = [raw[i : i + 100] for i in range(0, len(raw), 100)]
    return sorted(records, key=lambda r: r[:10])  # stable: records with equal keys keep input order


def test_terasort_makes_and_sorts_records_like_one_process(work):
    out = work / "sorted"
    done = t2mpi(
        "run", str(JOBS / "terasort.yaml"), "-n", "2", "--set", "config.generate=7000", "--set", "config.seed=3",
        "--set", f"config.output={out}", cwd=work, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["part-00000", "part-00001"]
    got = read_parts(out)
    made = gensort.records(0, 7000, 3).tobytes()
    assert len(got) == 7000 * 100
    # record j does not depend on the number of workers: one process's records, sorted, are the output
    assert [got[i : i + 100] for i in range(0, len(got), 100)] == sorted(
        (made[i : i + 100] for i in range(0, len(made), 100)), key=lambda r: r[:10]
    )


def test_terasort_sorts_an_input_folder_bytewise_by_key(work):
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, size=(3000, 100), dtype=np.uint8)
    raw[:500, :10] = raw[0, :10]  # a run of equal keys: their order must be kept
    raw[500:900, :9] = 0xFF  # keys that differ only in their last byte, high bytes (unsigned order)
    folder = work / "input"
    folder.mkdir()
    (folder / "a").write_bytes(raw[:1700].tobytes())
    (folder / "b").write_bytes(raw[1700:].tobytes())
    out = work / "sorted"
    done = t2mpi(
        "run", str(JOBS / "terasort.yaml"), "-n", "3", "--set", f"config.input={folder}",
        "--set", f"config.output={out}", cwd=work, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = read_parts(out)
    assert [got[i : i + 100] for i in range(0, len(got), 100)] == sorted_by_key(raw.tobytes())


def test_terasort_past_its_data_memory_spills_and_still_sorts(work):
    """resources.data_memory of 200 KiB, 350 kB of records per worker: the numpy sort goes in rounds
    and spills sorted runs (t2mpi/data/npruns.py); the output is still every record, in key order,
    and the scratch folder is left empty."""
    rng = np.random.default_rng(8)
    raw = rng.integers(0, 256, size=(7000, 100), dtype=np.uint8)
    raw[:800, :10] = raw[0, :10]  # equal keys across many rounds and runs: their order must be kept
    raw[800:1500, :9] = 0xFF
    folder = work / "input"
    folder.mkdir()
    (folder / "a").write_bytes(raw.tobytes())
    out, scratch = work / "sorted", work / "scratch"
    done = t2mpi(
        "run", str(JOBS / "terasort.yaml"), "-n", "2", "--set", f"config.input={folder}",
        "--set", f"config.output={out}", "--set", "resources.data_memory=200K", "--set", f"scratch_dir={scratch}",
        cwd=work, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = read_parts(out)
    assert [got[i : i + 100] for i in range(0, len(got), 100)] == sorted_by_key(raw.tobytes())
    ends = [e for e in events_of(only_job(work)) if e["event"] == "operation_end" and e["operation"] == "sort_by"]
    assert len(ends) == 2 and all(e["bytes_spilled"] > 0 for e in ends)
    assert not scratch.exists() or [p for p in scratch.rglob("*") if p.is_file()] == []


def test_join_example_sums_the_inner_join_per_group_like_one_process(work):
    rnd = random.Random(9)
    dims = {k: rnd.randrange(7) for k in rnd.sample(range(400), 250)}  # keys 0..399, some without a dim
    facts = [(rnd.randrange(450), rnd.uniform(-10, 10)) for _ in range(3000)]
    (work / "dims.csv").write_text("key,group\n" + "".join(f"{k},{g}\n" for k, g in dims.items()))
    (work / "facts.csv").write_text("key,value\n" + "".join(f"{k},{v!r}\n" for k, v in facts))
    out = work / "out" / "sums.csv"
    done = t2mpi(
        "run", str(JOBS / "join.yaml"), "-n", "2", "--set", f"config.facts={work / 'facts.csv'}",
        "--set", f"config.dims={work / 'dims.csv'}", "--set", f"config.output={out}", cwd=work, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    want = collections.defaultdict(float)
    for k, v in facts:
        if k in dims:
            want[dims[k]] += v
    lines = out.read_text().splitlines()
    assert lines[0] == "group,sum"
    rows = [line.split(",") for line in lines[1:]]
    assert [int(g) for g, _ in rows] == sorted(want)  # every group once, sorted
    for g, s in rows:
        assert float(s) == pytest.approx(want[int(g)], rel=1e-9, abs=1e-9)
    assert not list(out.parent.glob("*.tmp-*"))


def test_join_example_past_its_data_memory_spills_and_still_sums_like_one_process(work):
    """resources.data_memory of 64 KiB, 40 000 facts (about 640 kB of rows over 2 workers): the numpy
    join and the Columns reduction go in rounds and spill their partitions (t2mpi/data/npgrace.py);
    the sums are still the single process's, and the scratch folder is left empty."""
    rng = np.random.default_rng(11)
    dim_keys = rng.permutation(5000)[:4000]
    groups = rng.integers(0, 3000, size=len(dim_keys))  # many groups: the reduction spills too
    fact_keys, values = rng.integers(0, 5500, size=40_000).tolist(), (rng.integers(-999, 999, size=40_000) / 8).tolist()
    (work / "dims.csv").write_text(
        "key,group\n" + "".join(f"{k},{g}\n" for k, g in zip(dim_keys.tolist(), groups.tolist()))
    )
    (work / "facts.csv").write_text("key,value\n" + "".join(f"{k},{v!r}\n" for k, v in zip(fact_keys, values)))
    out, scratch = work / "out" / "sums.csv", work / "scratch"
    done = t2mpi(
        "run", str(JOBS / "join.yaml"), "-n", "2", "--set", f"config.facts={work / 'facts.csv'}",
        "--set", f"config.dims={work / 'dims.csv'}", "--set", f"config.output={out}",
        "--set", "resources.data_memory=64K", "--set", f"scratch_dir={scratch}", cwd=work, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    group_of = dict(zip(dim_keys.tolist(), groups.tolist()))
    want = collections.defaultdict(float)
    for k, v in zip(fact_keys, values):
        if k in group_of:
            want[group_of[k]] += v  # eighths: exact in any order
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert [int(g) for g, _ in rows] == sorted(want)
    assert {int(g): float(s) for g, s in rows} == want
    ends = [e for e in events_of(only_job(work)) if e["event"] == "operation_end"]
    spilled = {e["operation"]: 0 for e in ends}
    for e in ends:
        spilled[e["operation"]] += e["bytes_spilled"]
    assert spilled["join"] > 0 and spilled["reduce_by_key"] > 0, spilled
    assert not scratch.exists() or [p for p in scratch.rglob("*") if p.is_file()] == []
