"""The one place t2mpi runs subprocesses (never through a shell), and looks at processes by pid
(/proc: whether one lives, when it started; signals). Cheap to import: ranks use the pid part."""

from __future__ import annotations

import os

from .errors import T2mpiError

TYPE_CHECKING = False  # subprocess and typing cost a rank's start-up; annotations are strings
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence


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
    import subprocess

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
    import subprocess

    popen.setdefault("stdin", subprocess.DEVNULL)
    try:
        return subprocess.Popen(list(argv), **popen)  # type: ignore[call-overload]
    except OSError as exc:
        raise CommandError(argv, None, "", str(exc), why="cannot start") from None


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (/proc/PID/stat field 22): with the
    pid, it names one process, not a later one that got the same pid. None: no such process
    lives (a zombie is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])  # field 3 (the state) is fields[0]


def mentions(pid: int, text: str) -> bool:
    """Whether process `pid` lives and its command line holds `text` (in one of its arguments)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return alive(pid) and any(text.encode() in a for a in args)


def mentioning(text: str) -> list[int]:
    """The live processes of this host (as far as this user can see) whose command line holds `text`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and mentions(int(name), text):
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` lives (not a zombie)."""
    return process_start(pid) is not None


def wait_gone(pids: Sequence[int], timeout: float, poll: float = 0.02) -> list[int]:
    """Wait up to `timeout` seconds for the processes `pids` to end; those still alive then."""
    import time

    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(poll)
    return left


def send_signal(pid: int, sig: int, group: bool = False) -> bool:
    """Send `sig` to process `pid` (group: to its process group `pid`); False when it is gone."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        return False
    return True


def end_session(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End `proc`, started with start_new_session=True, and everything it started: SIGTERM to its
    process group, `grace` seconds for it to go, then SIGKILL to the group and to every process
    still in its session (one that moved to a process group of its own)."""
    import signal
    import subprocess
    import time

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
