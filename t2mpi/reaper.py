"""Node-local folders that go when the process that made them goes, however it ends.

A worker removes its scratch folder, and a data operation its spill folder, when it ends. A worker
that is killed (SIGKILL, the OOM killer, an MPI launcher ending the other ranks after one failed)
runs no code at its end, so without help its scratch would stay on the node for good. So the
first such folder a process makes starts a small watcher: a Python process in a session of its
own (the launcher's signal to the ranks' process group does not reach it) that reads the folders'
names from a pipe whose only writer is the watched process. The kernel closes that pipe when the
process ends, whatever ends it; the watcher then sees the end of its input, removes the folders
still there, and exits. It needs no polling, never touches a network, and costs one small process
per rank that uses scratch (none otherwise). Its command line names no folder.

A scheduler that ends the whole job (scancel, walltime) may end the watcher too: scratch under a
scheduler is best given a job-private temporary folder (Slurm's job_container/tmpfs, PBS's
$TMPDIR), which the scheduler removes itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .procs import CommandError, start

# The watcher: everything up to the end of its input (the watched process has ended), then the
# folders. Entries: b"-" or b"+" (also the folder above, when then empty), the path, b"\0".
_WATCHER = (
    "import os, shutil, sys\n"
    "for entry in sys.stdin.buffer.read().split(b'\\0'):\n"
    "    if len(entry) > 1:\n"
    "        path = os.fsdecode(entry[1:])\n"
    "        shutil.rmtree(path, ignore_errors=True)\n"
    "        if entry[:1] == b'+':\n"
    "            try:\n"
    "                os.rmdir(os.path.dirname(path))\n"
    "            except OSError:\n"
    "                pass\n"
)

_watch: tuple[int, int, subprocess.Popen[bytes]] | None = None  # (our pid, the pipe's write end, the watcher)


def remove_at_end(folder: str, with_parent: bool = False) -> None:
    """Remove `folder` when this process ends, even if it is killed (and then the folder above it,
    if `with_parent` and it is empty). Call it before making the folder. Best effort: when no
    watcher can be started, the process's own clean-up is all there is."""
    global _watch
    if _watch is None or _watch[0] != os.getpid():  # none yet, or one of the process this was forked from
        read_end, write_end = os.pipe()
        try:
            watcher = start(
                [sys.executable, "-I", "-S", "-c", _WATCHER],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except CommandError:
            os.close(write_end)
            return
        finally:
            os.close(read_end)
        _watch = (os.getpid(), write_end, watcher)
    entry = (b"+" if with_parent else b"-") + os.fsencode(os.path.abspath(folder)) + b"\0"
    try:
        os.write(_watch[1], entry)  # the watcher reads as it comes: this never waits long
    except OSError:
        pass
