"""Shared fixtures: a private working folder per test, running the CLI, finding leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psutil
import pytest
from hypothesis import settings

import t2mpi

# Every hypothesis test draws the same examples on every run, so that a CI failure reproduces here
# (a test's own @settings inherits this for what it does not set).
settings.register_profile("t2mpi", derandomize=True)
settings.load_profile("t2mpi")

ROOT = Path(__file__).resolve().parents[1]
if Path(t2mpi.__file__).resolve().parent == ROOT / "t2mpi":
    raise pytest.UsageError(
        "the tests run against the installed t2mpi, not the source tree: "
        "run `pytest` (not `python -m pytest`) after `./dev install`, or `./dev test`"
    )
JOBS = ROOT / "jobs"
PYTHON = sys.executable


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder that is also HOME, so no user's site config leaks into a test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("T2MPI_CONFIG", raising=False)
    monkeypatch.delenv("T2MPI_MPIEXEC", raising=False)
    return tmp_path


def write_job(folder: Path, name: str, code: str, **keys: object) -> Path:
    """A job file `name`.yaml and its worker module `name`.py (class Job) in `folder`."""
    (folder / f"{name}.py").write_text(textwrap.dedent(code))
    spec = {"name": name, "worker": f"{name}:Job", "workers": 2, **keys}
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def t2mpi(*args: str, cwd: Path, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "t2mpi", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw
    )


def job_dirs(work: Path) -> list[Path]:
    root = work / "t2mpi-jobs"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def only_job(work: Path) -> Path:
    dirs = job_dirs(work)
    assert len(dirs) == 1, dirs
    return dirs[0]


def state_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "state.json").read_text())


def events_of(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `text` (a test's private folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(text in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def is_rank(proc: psutil.Process) -> bool:
    """A t2mpi rank (python -P -m t2mpi.launch …), not its launcher."""
    cmd = proc.cmdline()
    return bool(cmd) and os.path.basename(cmd[0]).startswith("python") and "t2mpi.launch" in cmd


def missing(what: str) -> NoReturn:
    """This machine lacks `what`, which a test needs to run in full: skip it saying so, except in
    CI (CI=true), which installs everything the tests need (./dev test), where it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: CI installs it (./dev test), so this test must run here in full")
    pytest.skip(what)


def wait_for(predicate, timeout: float, what: str):
    """Poll `predicate` until it returns something true; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    last = repr(value)
    pytest.fail(
        f"timed out after {timeout} s waiting for {what} (last: {last[:300]}{'...' if len(last) > 300 else ''})"
    )


def gone(procs: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    """The processes in `procs` still alive after `timeout` s (zombies count as gone)."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def mpiexec(nprocs: int) -> list[str]:
    """This venv's MPI launcher with the options t2mpi would use, for direct launches. As t2mpi's
    own launches do, it first clears what killed Open MPI launchers left (t2mpi.mpi.sessions)."""
    from t2mpi.mpi import launcher
    from t2mpi.mpi.sessions import clear_stale

    clear_stale()

    found = launcher.detect(str(Path(PYTHON).parent / "mpiexec"))
    return launcher.mpiexec_args(found, nprocs, launcher.Host.here(), {})


STAND_IN = """#!{python}
# A stand-in for an MPI launcher whose ranks never start (stuck resolving or reaching a host, an
# ssh prompt, a PMI that never answers): it answers --version as the real one does, says what it
# waits for on stderr, starts a helper that leaves for a process group of its own and ignores
# SIGTERM, and waits.
import subprocess, sys, time

if sys.argv[1:] == ["--version"]:
    sys.stdout.write({version!r})
    sys.exit(0)
print("stand-in: resolving host n1", file=sys.stderr, flush=True)
print("stand-in: waiting for the proxies on n1", file=sys.stderr, flush=True)
helper = "import os, signal, time; os.setpgid(0, 0); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", helper, {folder!r}])
time.sleep(600)
"""


def stand_in_launcher(folder: Path) -> Path:
    """An executable `mpiexec` in `folder` that answers --version as this venv's MPI launcher does
    and then hangs (see STAND_IN); its processes mention `folder`."""
    real = subprocess.run([str(Path(PYTHON).parent / "mpiexec"), "--version"], capture_output=True, text=True)
    path = folder / "stand-in" / "mpiexec"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=PYTHON, version=real.stdout + real.stderr, folder=str(folder)))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def signals_at_default(*signums: int):
    """Children started inside get `signums` at their default action even where this process
    ignores them (a background shell ignores SIGINT, nohup SIGHUP): exec resets a caught signal to
    its default, but keeps an ignored one ignored."""
    old = {signum: signal.signal(signum, _caught) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _caught(signum: int, frame: object) -> None:
    raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)


SLEEPY = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "waiting")
            threading.Event().wait(600)
"""


@contextlib.contextmanager
def started_client(argv: list[str], *signums: int, **popen: object) -> Iterator[subprocess.Popen]:
    """A client process (`argv`) with SIGINT (and `signums`) at its default, whatever this test
    run inherited: a background shell (`nohup ./dev test &`, some CI runners) starts its children
    with SIGINT ignored, and an ignored signal stays ignored across exec. However the test ends,
    the client and every process it started (its launch runs in a session of its own) are killed
    on the way out."""
    with signals_at_default(signal.SIGINT, *signums):
        client = subprocess.Popen(argv, **popen)
    try:
        yield client
    finally:
        end_tree(client)


def end_tree(proc: subprocess.Popen) -> None:
    """Kill `proc` and its descendants if any is still alive (a failed test's leftovers)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    except psutil.Error:
        family = []
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=10)


def wait_for_workers(work: Path, workers: int, timeout: float) -> Path:
    """The folder of the one job under `work`, once each of its `workers` reported progress
    (SLEEPY's workers do as they start waiting)."""
    jobdir = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
    wait_for(
        lambda: (
            (jobdir / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(jobdir)) == workers
        ),
        timeout,
        "the workers",
    )
    return jobdir


def interrupt_run(
    work: Path, *args: str, workers: int = 2, signum: int = signal.SIGINT, sent: list[float] | None = None
):
    """`t2mpi run` of a job whose workers wait forever, interrupted (SIGINT, or `signum`) once
    every worker runs; `sent` gets the time.time() of the signal. Returns (exit status, stderr,
    the client's processes seen while running, how many of them were ranks, job folder)."""
    job = write_job(work, "sleepy", SLEEPY, workers=workers)
    argv = [PYTHON, "-m", "t2mpi", "run", str(job), *args]
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started_client(argv, signum, **popen) as client:
        jobdir = wait_for_workers(work, workers, 60)
        family = psutil.Process(client.pid).children(recursive=True)
        ranks = sum(1 for p in family if is_rank(p))
        if sent is not None:
            sent.append(time.time())
        client.send_signal(signum)
        _, err = client.communicate(timeout=60)
    return client.returncode, err, family, ranks, jobdir


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path):
    """Every test: no process that mentions the test's folder outlives it."""
    yield
    left = gone(processes_mentioning(str(tmp_path)), timeout=5)  # ending ones get a moment
    if left:
        shown = []
        for p in left:
            try:
                shown.append(" ".join(p.cmdline()))
                p.kill()
            except psutil.Error:
                continue
        pytest.fail(f"processes left behind: {shown}")
