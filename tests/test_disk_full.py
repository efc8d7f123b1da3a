"""A job folder on a full or read-only filesystem, and one that fills during a run: real tmpfs
mounts (root), real runs. Marked mpi: the unit lane runs without root."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import processes_mentioning, t2mpi, write_job

pytestmark = pytest.mark.mpi

SMALL = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return ctx.worker_id
"""

FILLER = """
    import os
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            if ctx.worker_id == 0:  # fill the job folder's filesystem, then return a large result
                with open(os.path.join(ctx.job_dir, "filler"), "wb", buffering=0) as fh:
                    try:
                        while True:
                            fh.write(b"x" * 65536)
                    except OSError as exc:
                        assert exc.errno == 28, exc
                return b"r" * (1 << 20)
            return ctx.worker_id
"""


@pytest.fixture
def tmpfs(work):
    """mount(size, ro=False): a tmpfs of `size` at a new folder of the test's own; unmounted after."""
    mounted = []

    def mount(size: str, ro: bool = False):
        path = work / f"fs{len(mounted)}"
        path.mkdir()
        opts = f"size={size},mode=0700" + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path):
    with open(path / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"x" * 4096)
        except OSError as exc:
            assert exc.errno == 28


def _one_line_error(done, *wanted: str) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in wanted:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_full_filesystem_is_one_line_before_launch(work, tmpfs, command):
    jobs = tmpfs("64k")
    _fill(jobs)
    job = write_job(work, "small", SMALL)
    args = [command, str(job), "--set", f"jobs_dir={jobs}"] + (["--scheduler", "slurm"] if command == "submit" else [])
    line = _one_line_error(t2mpi(*args, cwd=work), f"jobs_dir {jobs}: cannot create job folder: only 0 KiB free")
    assert "--set jobs_dir=DIR" in line
    assert sorted(p.name for p in jobs.iterdir()) == ["filler"]  # nothing half-made
    assert processes_mentioning(str(job)) == []


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_read_only_filesystem_is_one_line_before_launch(work, tmpfs, command):
    jobs = tmpfs("1m", ro=True)
    job = write_job(work, "small", SMALL)
    args = [command, str(job), "--set", f"jobs_dir={jobs}"] + (["--scheduler", "slurm"] if command == "submit" else [])
    _one_line_error(t2mpi(*args, cwd=work), f"jobs_dir {jobs}: cannot create job folder: its filesystem is read-only")
    assert list(jobs.iterdir()) == []


@pytest.mark.parametrize("master", ["rank0", "client"])
def test_a_job_folder_that_fills_during_the_run_fails_the_job_with_enospc(work, tmpfs, master):
    jobs = tmpfs("4m")
    job = write_job(work, "filler", FILLER)
    done = t2mpi("run", str(job), "--set", f"jobs_dir={jobs}", "--master", master, cwd=work, timeout=180)
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stderr and "No space left on device" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr.split("t2mpi: job ")[-1]  # the client's own last words: no traceback
    (folder,) = [p for p in jobs.iterdir() if not p.name.startswith(".")]
    if (folder / "state.json").exists():  # none where the worker filled the disk before the master's first write
        state = json.loads((folder / "state.json").read_text())  # whole: the old state or the new one
        assert state["state"] in ("STARTING", "RUNNING", "FAILED")
        if state["state"] == "FAILED":
            assert "No space left on device" in state["reason"]
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []  # no temporary file left
    for line in (folder / "events.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole
    status = t2mpi("status", folder.name, "--jobs-dir", str(jobs), "--json", cwd=work)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["state"] in ("FAILED", "LOST") and "No space left on device" in shown["reason"], shown
    assert processes_mentioning(str(folder)) == []


FAILING = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            raise RuntimeError("on purpose")
"""


def test_a_restart_on_a_read_only_filesystem_is_one_line_and_changes_nothing(work, tmpfs):
    jobs = tmpfs("4m")
    job = write_job(work, "failing", FAILING)
    assert t2mpi("run", str(job), "--set", f"jobs_dir={jobs}", cwd=work, timeout=180).returncode == 1
    (folder,) = [p for p in jobs.iterdir() if not p.name.startswith(".")]
    before = (folder / "state.json").read_text()
    assert json.loads(before)["state"] == "FAILED"
    subprocess.run(["mount", "-o", "remount,ro", str(jobs)], check=True)
    done = t2mpi("restart", folder.name, "--jobs-dir", str(jobs), cwd=work)
    _one_line_error(done, f"jobs_dir {jobs}: cannot restart job {folder.name}: its filesystem is read-only")
    assert (folder / "state.json").read_text() == before
    assert processes_mentioning(str(folder)) == []
