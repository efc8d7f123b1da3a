"""Numpy sorts past a memory budget (t2mpi/data/npruns.py): numbers and byte records sent in rounds,
sorted runs written per source and merged; the partitions in worker order are the stable sort of
the whole input, every record once, nothing left in the scratch folder."""

from __future__ import annotations

import itertools
import json
import subprocess

import numpy as np
import pytest
from conftest import PYTHON, mpiexec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_local import on_partitions

budgets = st.sampled_from([1, 40, 300, 1 << 20])  # one row a round and a run each ... nothing spills
slow = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def sorted_parts(size, folder, block, budget, ascending, key=None):
    def job(data):
        part = data.array(block).sort_by(key, ascending=ascending).partition()
        return np.array(part), type(part), data.spilled_bytes

    results = on_partitions(size, job, memory_budget=budget, scratch_dir=str(folder))
    return np.concatenate([r[0] for r in results]), [r[1] for r in results], sum(r[2] for r in results)


def stable_reference(keys: list, ascending: bool) -> list[int]:
    """Input positions in the order of Python's stable sort (reverse=True keeps ties in input order)."""
    return sorted(range(len(keys)), key=lambda i: keys[i], reverse=not ascending)


@slow
@given(
    ks=st.lists(st.integers(-4, 4), max_size=150),
    size=st.integers(1, 3),
    ascending=st.booleans(),
    budget=budgets,
    dtype=st.sampled_from(["<i8", ">i4", "u1", "<f8"]),
)
def test_numbers_by_a_field_past_the_budget_are_the_stable_sort(tmp_path_factory, ks, size, ascending, budget, dtype):
    folder = tmp_path_factory.mktemp("scratch")
    block = np.zeros(len(ks), dtype=[("k", dtype), ("i", "<i4")])
    block["k"] = np.array(ks) % 256 if dtype == "u1" else ks
    block["i"] = np.arange(len(ks))
    got, kinds, spilled = sorted_parts(size, folder, block, budget, ascending, key="k")
    assert got["i"].tolist() == stable_reference(block["k"].tolist(), ascending)  # each record once, stable
    if budget == 1 and len(ks):
        assert spilled > 0 and np.memmap in kinds  # a partition past the budget: the merged runs, mapped
    if budget == 1 << 20:
        assert spilled == 0 and np.memmap not in kinds
    assert list(folder.iterdir()) == []


@slow
@given(
    xs=st.lists(st.floats(width=32) | st.sampled_from([0.0, -0.0, 1.5]), max_size=120),
    size=st.integers(1, 3),
    ascending=st.booleans(),
    budget=budgets,
)
def test_plain_numbers_past_the_budget_equal_numpy_sort(tmp_path_factory, xs, size, ascending, budget):
    folder = tmp_path_factory.mktemp("scratch")
    block = np.array(xs, dtype=np.float32)
    got, _, _ = sorted_parts(size, folder, block, budget, ascending)
    want = np.sort(block, kind="stable")
    assert np.array_equal(got, want if ascending else want[::-1], equal_nan=True)  # NaN last, or first
    assert list(folder.iterdir()) == []


@slow
@given(
    rows=st.lists(st.lists(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]), min_size=3, max_size=3), max_size=120),
    size=st.integers(1, 3),
    ascending=st.booleans(),
    budget=budgets,
    whole=st.booleans(),
)
def test_byte_records_past_the_budget_are_bytewise_unsigned_and_stable(
    tmp_path_factory, rows, size, ascending, budget, whole
):
    """3-byte keys over bytes that tie often and differ in the sign bit, a 2-byte id after them:
    records by their key field (V3), or whole records (S5, where the id breaks ties)."""
    folder = tmp_path_factory.mktemp("scratch")
    raw = np.zeros((len(rows), 5), dtype=np.uint8)
    if rows:
        raw[:, :3] = rows
    raw[:, 3:] = np.arange(len(rows), dtype=">u2").view(np.uint8).reshape(-1, 2)
    keys = [bytes(r[:3]) for r in raw] if not whole else [bytes(r) for r in raw]
    if whole:
        block = raw.reshape(-1).view("S5") if len(raw) else np.zeros(0, "S5")
        key = None
    else:
        block = (
            raw.reshape(-1).view([("key", "V3"), ("id", "V2")])
            if len(raw)
            else np.zeros(0, [("key", "V3"), ("id", "V2")])
        )
        key = "key"
    got, _, spilled = sorted_parts(size, folder, block, budget, ascending, key)
    got_ids = got.view(np.uint8).reshape(-1, 5)[:, 3:].copy().view(">u2").ravel().tolist() if len(got) else []
    assert got_ids == stable_reference(keys, ascending)
    if budget == 1 and rows:
        assert spilled > 0
    assert list(folder.iterdir()) == []


def test_a_spilled_sort_feeds_the_writers_the_cache_and_count(tmp_path):
    """The mapped partition of a spilled sort goes through write_records, write_npy, write_text,
    cache, count and collect like an array; the files hold the sorted records."""
    rng = np.random.default_rng(4)
    raw = rng.integers(1, 256, size=(3000, 20), dtype=np.uint8)
    block = raw.reshape(-1).view([("key", "S4"), ("rest", "V16")])
    scratch = tmp_path / "scratch"

    def job(data):
        ordered = data.array(block).sort_by("key").cache()
        ordered.write_records(str(tmp_path / "records"))
        ordered.write_npy(str(tmp_path / "npy"))
        ordered.write_text(str(tmp_path / "text"))
        return ordered.count(), ordered.collect(), data.spilled_bytes, type(ordered.partition())

    results = on_partitions(2, job, memory_budget=8000, scratch_dir=str(scratch))
    text = [line for p in sorted((tmp_path / "text").iterdir()) for line in p.read_text().splitlines()]
    in_memory = np.sort(block, order="key", kind="stable")  # numpy's order of S4 keys (no NULs here)
    assert not (raw[:, :4] == 0).any() and text == [str(x) for x in in_memory]
    want = [bytes(r) for r in sorted(raw, key=lambda r: bytes(r[:4]))]
    for count, collected, spilled, kind in results:
        assert count == 3000 and spilled > 0 and kind is np.memmap
        assert [bytes(r) for r in collected.view(np.uint8).reshape(-1, 20)] == want
    raw_out = b"".join(p.read_bytes() for p in sorted((tmp_path / "records").iterdir()))
    assert [raw_out[i : i + 20] for i in range(0, len(raw_out), 20)] == want
    npy = np.concatenate([np.load(p) for p in sorted((tmp_path / "npy").iterdir())])
    assert npy.dtype == block.dtype and [bytes(r) for r in npy.view(np.uint8).reshape(-1, 20)] == want
    assert list(scratch.iterdir()) == []


def test_a_numpy_sort_that_fails_writing_its_runs_leaves_no_file(tmp_path, monkeypatch):
    """The disk fills up at the third run: the error comes out of sort_by, the runs already
    written are removed."""
    from t2mpi.data import npruns

    calls = []
    write = npruns.write_npy

    def failing(path, *args):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", path)
        return write(path, *args)

    monkeypatch.setattr(npruns, "write_npy", failing)
    x = np.arange(500)[::-1].copy()
    with pytest.raises(OSError, match="No space left"):
        on_partitions(1, lambda data: data.array(x).sort_by().partition(), memory_budget=400, scratch_dir=str(tmp_path))
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


def test_without_a_budget_the_block_sort_is_unchanged(tmp_path):
    x = np.random.default_rng(2).integers(0, 50, 2000)

    def job(data):
        part = data.array(x).sort_by().partition()
        return type(part), part.copy(), data.spilled_bytes

    for size in (1, 3):
        results = on_partitions(size, job)
        assert all(kind is np.ndarray and spilled == 0 for kind, _, spilled in results)
        assert np.array_equal(np.concatenate([p for _, p, _ in results]), np.sort(x))


NP_DRIVER = r"""
import json, sys
import numpy as np
from mpi4py import MPI
from t2mpi.data.api import Data

folder, scratch = sys.argv[1], sys.argv[2]
data = Data(MPI.COMM_WORLD, memory_budget=4000, scratch_dir=scratch)
rng = np.random.default_rng(11)
numbers = np.zeros(3000, dtype=[("k", ">i4"), ("i", "<i4")])
numbers["k"], numbers["i"] = rng.integers(-20, 20, 3000), np.arange(3000)
raw = rng.integers(0, 4, size=(3000, 6), dtype=np.uint8) * 0x55  # 0x00, 0x55, 0xAA, 0xFF: ties, high bytes
raw[:, 4:] = np.arange(3000, dtype=">u2").view(np.uint8).reshape(-1, 2)
records = raw.reshape(-1).view([("key", "V4"), ("id", "V2")])
out = {}
for name, block, key in (("numbers", numbers, "k"), ("records", records, "key")):
    for ascending in (True, False):
        part = data.array(block).sort_by(key, ascending=ascending).partition()
        kind = type(part).__name__
        got = data.from_function(lambda i, n: part).collect()
        ids = got["i"].tolist() if name == "numbers" else got.view(np.uint8).reshape(-1, 6)[:, 4:].copy().view(">u2").ravel().tolist()
        out[f"{name}-{ascending}"] = [kind, ids]
out["spilled"] = data.spilled_bytes
with open(f"{folder}/rank-{data.rank}.json", "w") as f:
    json.dump(out, f)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_numpy_sorts_past_the_budget_on_real_mpi_are_stable(tmp_path, n):
    """Real Alltoallv rounds of structured rows (a big-endian number field, a V byte field): every
    rank's collected output is the stable sort, ascending and descending; the partitions spilled
    and were mapped; the scratch folder is left empty."""
    script, scratch = tmp_path / "driver.py", tmp_path / "scratch"
    script.write_text(NP_DRIVER)
    done = subprocess.run(
        mpiexec(n) + [PYTHON, str(script), str(tmp_path), str(scratch)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    rng = np.random.default_rng(11)
    ks = rng.integers(-20, 20, 3000).tolist()
    raw = rng.integers(0, 4, size=(3000, 6), dtype=np.uint8) * 0x55
    keys = {"numbers": ks, "records": [bytes(r[:4]) for r in raw]}
    for r in range(n):
        got = json.loads((tmp_path / f"rank-{r}.json").read_text())
        assert got["spilled"] > 0
        for name, ascending in itertools.product(keys, (True, False)):
            kind, ids = got[f"{name}-{ascending}"]
            assert kind == "memmap" and ids == stable_reference(keys[name], ascending), (r, name, ascending)
    assert list(scratch.iterdir()) == []
