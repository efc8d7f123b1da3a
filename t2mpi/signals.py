"""How `t2mpi run` and the commands that follow a job answer signals: SIGTERM and a hang-up end
every rank with a reason and an exit status of their own; the first Ctrl-C to a job that runs a
stream asks it to stop (a checkpoint, then PREEMPTED), the next one ends it."""

from __future__ import annotations

import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, the shell's status for a SIGTERM


def terminate(signum: int, frame: Any) -> None:
    """SIGTERM (kill, a process manager): end every rank, as Ctrl-C does, and say it was SIGTERM."""
    from .errors import Interrupted

    raise Interrupted("terminated (SIGTERM)", TERMINATED_EXIT)


def interrupt(live: dict[str, Any]) -> None:
    from .client import stop_on_interrupt

    if not stop_on_interrupt(live.get("jd"), live.get("interrupted", False)):
        raise KeyboardInterrupt
    live["interrupted"] = True
    print("t2mpi: Ctrl-C: the stream checkpoints and stops; Ctrl-C again ends it at once", file=sys.stderr, flush=True)


HANG_UP_EXIT = 128 + signal.SIGHUP  # 129, the shell's status for a hang-up


def hang_up(signum: int, frame: Any) -> None:
    """SIGHUP (the ssh session or terminal went): end every rank, as Ctrl-C does."""
    from .errors import Interrupted

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a second hang-up must not cut the ending short
    raise Interrupted("client hung up", HANG_UP_EXIT)
