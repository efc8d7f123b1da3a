"""The one place t2mpi runs subprocesses (never through a shell)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from .errors import T2mpiError


class CommandError(T2mpiError):
    """A command failed; the message carries what was run and what came back."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str, why: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        shown = " ".join(self.argv)
        tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        what = why or f"exit status {returncode}"
        super().__init__(f"command failed ({what}): {shown}" + (f": {tail[0]}" if tail[0] else ""))


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion with a timeout; raise CommandError on failure when `check`."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CommandError(argv, None, "", str(exc), why="not found") from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, None, out, err, why=f"timed out after {timeout:g} s") from None
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done


def start(argv: Sequence[str], **popen: object) -> subprocess.Popen[bytes]:
    """Start `argv` (stdin from /dev/null unless given); raise CommandError when it cannot start."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    try:
        return subprocess.Popen(list(argv), **popen)  # type: ignore[call-overload]
    except OSError as exc:
        raise CommandError(argv, None, "", str(exc), why="cannot start") from None


def end_session(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End `proc`, started with start_new_session=True, and everything it started: SIGTERM to its
    process group, `grace` seconds for it to go, then SIGKILL to the group and to every process
    still in its session (one that moved to a process group of its own)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # the launcher is gone (or was killed); nothing it started may outlive it
    deadline = time.monotonic() + grace
    while (left := session_members(proc.pid)) and time.monotonic() < deadline:
        _signal_group(proc.pid, signal.SIGKILL)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    if proc.returncode is None:
        proc.wait()


def session_members(sid: int) -> list[int]:
    """The live processes (not zombies) of session `sid`, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 3 and fields[0] not in (b"Z", b"X") and int(fields[3]) == sid:
            found.append(int(name))
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
