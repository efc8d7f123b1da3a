"""jobs/stream_join.yaml on real MPI workers against a single-process windowed join of the same
lines. Each input file is in event-time order, so under the watermark contract no line can be late
(a file's next line is never behind its own newest, and the watermark never passes that): the
answer is every (order, payment) pair of one id whose times share a tumbling window."""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path

import pytest
from conftest import t2mpi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JOBS = Path(__file__).resolve().parent.parent / "jobs"

pytestmark = pytest.mark.mpi

lines = st.lists(st.tuples(st.integers(0, 300), st.sampled_from("abcdef"), st.integers(0, 99)), max_size=30)


def show_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(t)


def reference(orders: list[list[tuple]], payments: list[list[tuple]], window: float) -> list[tuple]:
    by_window = collections.defaultdict(lambda: ([], []))
    for side, files in enumerate((orders, payments)):
        for f in files:
            for t, key, detail in f:
                by_window[(math.floor(t / window) * window, key)][side].append(str(detail))
    return sorted(
        (show_time(ws), key, a, b) for (ws, key), (left, right) in by_window.items() for a in left for b in right
    )


def write(folder: Path, files: list[list[tuple]]) -> None:
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"f{i}.txt").write_text("".join(f"{t},{k},{d}\n" for t, k, d in f))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(lines, min_size=1, max_size=3),
    payments=st.lists(lines, min_size=1, max_size=3),
    window=st.sampled_from([10.0, 60.0]),
    batch=st.sampled_from([1, 3, 1000]),
)
def test_the_join_example_matches_a_single_process_join(tmp_path_factory, orders, payments, window, batch):
    work = tmp_path_factory.mktemp("join")
    orders = [sorted(f) for f in orders]  # each file in event-time order
    payments = [sorted(f) for f in payments]
    write(work / "orders", orders)
    write(work / "payments", payments)
    sets = {
        "config.orders": work / "orders",
        "config.payments": work / "payments",
        "config.output": work / "out",
        "config.window": window,
        "config.disorder": 2.0,
        "config.batch": batch,
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    done = t2mpi("run", str(JOBS / "stream_join.yaml"), "-q", *args, cwd=work, timeout=120)
    assert done.returncode == 0, done.stderr
    out = work / "out"
    got = sorted(
        tuple(line.split("\t"))
        for name in os.listdir(out)
        if (out / name).is_file()
        for line in (out / name).read_text().splitlines()
    )
    assert got == reference(orders, payments, window)
    late = out / "late"
    assert not late.exists() or all((late / name).read_text() == "" for name in os.listdir(late))
