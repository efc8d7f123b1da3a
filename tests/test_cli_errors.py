"""The CLI's clean ending: a missing library, a bug inside t2mpi, no hwloc and a closed pipe each
end in at most one line on stderr, never a traceback (unless --debug or T2MPI_DEBUG=1 asks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2mpi.cli import DEBUG_VARIABLE, INTERNAL_ERROR

JOBS = Path(__file__).resolve().parents[1] / "jobs"
TIMEOUT = 60


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A private working folder (also HOME, so no site config leaks in) holding jobs/hello.yaml."""
    (tmp_path / "jobs").mkdir()
    for name in ("hello.yaml", "hello.py"):
        shutil.copy(JOBS / name, tmp_path / "jobs" / name)
    return tmp_path


def _env(cwd: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in (DEBUG_VARIABLE, "T2MPI_CONFIG", "T2MPI_MPIEXEC", "PYTHONPATH"):
        env.pop(key, None)
    env["HOME"] = str(cwd)
    env.update(extra)
    return env


def main_with(prelude: str, argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed t2mpi.cli.main(argv) in a fresh interpreter after `prelude` (a patch)."""
    code = f"{prelude}\nfrom t2mpi.cli import main\nraise SystemExit(main({argv!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=_env(cwd, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return lines[0]


NO_YAML = "import sys\nsys.modules['yaml'] = None"
BOOM = """
import t2mpi.job.spec

def load(*args, **kwargs):
    raise RuntimeError('boom')

t2mpi.job.spec.load = load
"""
NO_HWLOC = "import sys\nsys.modules['pyhwloc'] = None"


def test_a_missing_library_is_one_line_naming_it(here: Path) -> None:
    done = main_with(NO_YAML, ["plan", "-n", "1", "jobs/hello.yaml"], here)
    assert done.returncode != 0, done
    line = one_line(done)
    assert line.startswith("t2mpi"), line
    assert "'yaml'" in line and "not installed" in line, line
    assert done.stdout == "", done.stdout


def test_an_internal_error_is_one_line_with_exit_status_3(here: Path) -> None:
    done = main_with(BOOM, ["plan", "-n", "1", "jobs/hello.yaml"], here)
    assert done.returncode == INTERNAL_ERROR == 3, done
    line = one_line(done)
    assert line.startswith("t2mpi plan: "), line
    assert "RuntimeError: boom" in line, line
    assert "--debug" in line and DEBUG_VARIABLE in line, line  # says how to see more


@pytest.mark.parametrize(
    "argv, env",
    [
        (["--debug", "plan", "-n", "1", "jobs/hello.yaml"], {}),
        (["plan", "-n", "1", "jobs/hello.yaml"], {DEBUG_VARIABLE: "1"}),
    ],
    ids=["--debug", DEBUG_VARIABLE],
)
def test_debug_shows_the_traceback_and_keeps_exit_status_3(here: Path, argv: list[str], env: dict[str, str]) -> None:
    done = main_with(BOOM, argv, here, **env)
    assert "Traceback" in done.stderr, done.stderr
    assert "RuntimeError: boom" in done.stderr, done.stderr
    assert done.returncode == INTERNAL_ERROR, (done.returncode, done.stderr)


def test_debug_variable_0_is_off(here: Path) -> None:
    done = main_with(BOOM, ["plan", "-n", "1", "jobs/hello.yaml"], here, **{DEBUG_VARIABLE: "0"})
    assert done.returncode == INTERNAL_ERROR, done
    assert "boom" in one_line(done)


def _hwloc_note(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done
    line = one_line(done)
    assert line.startswith("t2mpi: note: hwloc cannot be loaded"), line
    assert "pyhwloc" in line and "reading this node from sysfs" in line, line
    return line


def test_topology_without_hwloc_reads_sysfs(here: Path) -> None:
    done = main_with(NO_HWLOC, ["topology"], here)
    _hwloc_note(done)
    assert done.stdout.startswith("node "), done.stdout
    assert "NUMA 0:" in done.stdout and "allowed:" in done.stdout, done.stdout


def test_plan_without_hwloc_reads_sysfs(here: Path) -> None:
    done = main_with(NO_HWLOC, ["plan", "-n", "1", "jobs/hello.yaml"], here)
    _hwloc_note(done)
    assert done.stdout.startswith("1 worker × 1 cpu"), done.stdout
    assert "master: node" in done.stdout, done.stdout


def _into_closed_pipe(args: list[str], cwd: Path) -> tuple[int, bytes, str]:
    """`t2mpi ARGS | head -c1`: the reader takes one byte and closes its end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "t2mpi", *args],
        cwd=cwd,
        env=_env(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.read(1)
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        return proc.wait(timeout=TIMEOUT), first, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_topology_into_a_closed_pipe_ends_quietly(here: Path) -> None:
    status, first, err = _into_closed_pipe(["topology"], here)
    assert first == b"n", first  # "node ..."
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert status in (0, 141), (status, err)  # 0 if it had written everything before the close


def test_large_output_into_a_closed_pipe_ends_quietly_with_141(here: Path) -> None:
    # ~160 KB of JSON, more than a pipe holds, so the write after the close does fail
    status, first, err = _into_closed_pipe(["topology", "--synthetic", "package:8 numa:4 core:64 pu:4", "--json"], here)
    assert first == b"{", first
    assert err == "", err
    assert status == 141, status
