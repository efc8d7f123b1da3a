"""The streaming WordCount (jobs/stream_wordcount.yaml) on real MPI with 2 and 3 workers against the
plain-Python reference of the contract, on random files, disorder and rounds; and the stream
operators across workers (key_by, stateful_map, sliding windows, numpy batches, join)."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import JOBS, t2mpi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from stream_reference import show_time, wordcount  # noqa: E402

pytestmark = pytest.mark.mpi


def read_output(folder):
    """(sorted window lines as tuples, sorted late lines, the names in the folder)."""
    windows = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            windows += [tuple(line.split("\t")) for line in open(path).read().splitlines()]
    late_dir = os.path.join(folder, "late")
    late = []
    for name in sorted(os.listdir(late_dir)) if os.path.isdir(late_dir) else []:
        late += open(os.path.join(late_dir, name)).read().splitlines()
    return sorted(windows), sorted(late), sorted(os.listdir(folder))


def expected(files, window, disorder, batch):
    want, late = wordcount(files, window, disorder, batch)
    return sorted((show_time(ws), w, str(n)) for (ws, w), n in want.items()), sorted(late)


def write_input(folder, files):
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"f{i:02d}.txt").write_text("".join(line + "\n" for line in f))


def run_wordcount(work, inp, out, workers, window, disorder, batch, *extra, timeout=120):
    sets = {
        "config.input": inp,
        "config.output": out,
        "config.window": window,
        "config.disorder": disorder,
        "config.batch": batch,
        "config.checkpoint_every": 0.05,
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    return t2mpi(
        "run", str(JOBS / "stream_wordcount.yaml"), "-q", "-n", str(workers), *args, *extra, cwd=work, timeout=timeout
    )


def timed_lines(r, n, spread, words):
    """n lines of a file whose event times rise, each off by up to `spread` seconds."""
    t, out = 0.0, []
    for _ in range(n):
        t += r.random()
        out.append(f"{max(0.0, t + r.uniform(-spread, spread)):.2f} {r.choice(words)}")
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10**6),
    n_files=st.integers(1, 5),
    workers=st.sampled_from([2, 3]),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    disorder=st.sampled_from([0.0, 0.5, 2.0]),
    spread=st.sampled_from([0.0, 1.0, 4.0]),
    batch=st.integers(1, 9),
)
def test_wordcount_on_workers_matches_the_reference(work, seed, n_files, workers, window, disorder, spread, batch):
    import random

    r = random.Random(seed)
    files = [
        timed_lines(r, r.randrange(0, 80), spread, "abcdefg") + r.sample(["", "x y", "nan z"], r.randrange(0, 2))
        for _ in range(n_files)
    ]
    tag = f"{seed}-{n_files}-{workers}-{batch}"
    inp, out = work / f"in-{tag}", work / f"out-{tag}"
    write_input(inp, files)
    done = run_wordcount(work, inp, out, workers, window, disorder, batch)
    assert done.returncode == 0, done.stderr
    windows, late, names = read_output(out)
    want_windows, want_late = expected(files, window, disorder, batch)
    assert windows == want_windows
    assert late == want_late
    assert sum(int(n) for *_, n in windows) + len(late) == sum(map(len, files))
    assert not [n for n in names if n.startswith(".")]  # no uncommitted part is left


def test_wordcount_runs_as_it_is_with_late_lines(work):
    import random

    r = random.Random(5)
    files = [timed_lines(r, 300, 6.0, ["to", "be", "or", "not"]) for _ in range(3)]
    write_input(work / "stream-wordcount-input", files)
    done = t2mpi("run", str(JOBS / "stream_wordcount.yaml"), "-q", "--set", "config.batch=20", cwd=work)
    assert done.returncode == 0, done.stderr
    windows, late, _ = read_output(work / "stream-wordcount-output")
    assert (windows, late) == expected(files, 10.0, 1.0, 20)
    assert late  # this input has lines later than the disorder allows
