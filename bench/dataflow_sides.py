"""The sides of bench/dataflow.py: one way each of running a workload (a command), how its answer is
read, its times and peak RSS. A side that fails or disagrees is recorded with its one-line reason
and left out of the later rounds; the others go on.

Peak RSS, two figures: `rss_mib` as the side reports it (every rank's or worker process's own
getrusage peak, the largest; PySpark reports none: its executor is the JVM), and `tree_mib`, the
largest peak RSS of any process in the side's whole process tree as the kernel reports it to wait4
(this benchmark is a child subreaper, so a process orphaned by its parent, such as Spark's JVM after
the driver exits, is still reaped here and counted). Linux keeps a parent's peak RSS at fork + exec
as the child's starting peak, so this harness stays small (no numpy; inputs are made in a separate
process): its own peak (about 30 MiB) is a floor under every figure.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import pickle
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

PR_SET_CHILD_SUBREAPER = 36
ORPHAN_GRACE_S = 30.0


class SideError(Exception):
    """A side failed or gave a wrong answer: one line saying which and why."""


def become_subreaper() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _orphans() -> list[int]:
    me, out = os.getpid(), []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.append(int(stat.split("/")[2]))
    return out


def _reap(pid: int, timeout: float) -> tuple[int, float] | None:
    """(exit status, peak RSS MiB of pid and its reaped descendants), or None on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, timeout) * 1000):
            return None
    finally:
        os.close(fd)
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def run_tree(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> tuple[float, int | str, str, float]:
    """Run argv: (wall seconds to its exit, exit code, its output, largest peak RSS MiB in its tree)."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        got = _reap(child.pid, timeout)
        took = time.perf_counter() - start
        code: int | str = got[0] if got else f"timed out after {timeout:.0f} s"
        if got is None:
            os.killpg(child.pid, signal.SIGKILL)
            got = _reap(child.pid, 10) or (-9, 0.0)
        child.returncode, rss = got[0], got[1]  # reaped here: Popen must not wait for it again
        deadline = time.monotonic() + ORPHAN_GRACE_S
        for pid in _orphans():
            left = _reap(pid, deadline - time.monotonic())
            if left is None:
                os.kill(pid, signal.SIGKILL)
                left = _reap(pid, 10) or (0, 0.0)
            rss = max(rss, left[1])
        out.seek(0)
        text = out.read()
    return took, code, text, rss


class Side:
    """One way of running a workload: its command, how to read its answer, its figures."""

    def __init__(self, name: str, argv: list[str], read: Callable[[str, str], dict]):
        self.name, self.argv, self.read = name, argv, read
        self.rss: list[float] = []
        self.tree: list[float] = []
        self.failed: str | None = None

    def extra(self) -> list[str]:
        return []

    def run(self, env: dict[str, str], cwd: str, timeout: float) -> tuple[float, dict]:
        argv = self.argv + self.extra()
        took, code, text, tree = run_tree(argv, env, cwd, timeout)
        if code != 0:
            raise SideError(f"exit {code}: {reason(text)} (command: {' '.join(argv)})")
        result = self.read(text, " ".join(argv))
        self.tree.append(tree)
        self.rss.append(result.get("rss_mib", tree))
        return took, result


def reason(text: str) -> str:
    """The line of a failed command's output that most likely says why: its last error line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["no output"])[-1][:300]


def printed_result(text: str, command: str) -> dict:
    """The RESULT {json} line a hand-written, single-process or peer side prints."""
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if len(lines) != 1:
        raise SideError(f"no RESULT line from {command}: {text.strip()[-300:]}")
    return json.loads(lines[0][len("RESULT ") :])


class JobSide(Side):
    """A t2mpi job: each run gets a fresh jobs_dir, read for the workers' results, then removed."""

    def __init__(self, name: str, argv: list[str], merge: Callable[[dict], dict], work: str):
        super().__init__(name, argv, self._read)
        self.merge, self.work, self.runs = merge, work, 0

    def extra(self) -> list[str]:
        self.runs += 1
        self.jobs_dir = os.path.join(self.work, "jobs", f"{self.name.split()[0]}-{id(self)}-{self.runs}")
        return ["--set", f"jobs_dir={self.jobs_dir}", "--set", f"scratch_dir={self.work}/scratch"]

    def run(self, env: dict[str, str], cwd: str, timeout: float) -> tuple[float, dict]:
        try:
            return super().run(env, cwd, timeout)
        finally:
            shutil.rmtree(self.jobs_dir, ignore_errors=True)

    def _read(self, text: str, command: str) -> dict:
        found = glob.glob(os.path.join(self.jobs_dir, "*", "results.pkl"))
        if len(found) != 1:
            raise SideError(f"expected one results.pkl under {self.jobs_dir} after {command}, found {found}")
        with open(found[0], "rb") as f:
            results = pickle.load(f)
        out = self.merge(results)
        rss = [r["rss_mib"] for r in results.values() if isinstance(r, dict) and "rss_mib" in r]
        return {**out, "rss_mib": max(rss)} if rss else out
