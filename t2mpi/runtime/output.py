"""What a rank prints: each worker's output prefixed with its id (and copied to its log), and
the master's report of a failed job."""

from __future__ import annotations

import io
import sys

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO


class PrefixedOutput(io.TextIOBase):
    """A text stream that writes whole lines, each with a prefix, and copies them to a log file."""

    def __init__(self, target: TextIO, prefix: str, log: TextIO):
        self._target = target
        self._prefix = prefix
        self._log = log
        self._partial = ""

    @classmethod
    def install(cls, prefix: str, log_path: str) -> None:
        """Replace sys.stdout and sys.stderr of this process with prefixing copies."""
        log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
        sys.stdout = cls(sys.__stdout__, prefix, log)  # type: ignore[assignment]
        sys.stderr = cls(sys.__stderr__, prefix, log)  # type: ignore[assignment]

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        end = data.rfind("\n") + 1
        self._partial = data[end:]
        if end:
            lines = data[:end]
            self._target.write("".join(self._prefix + line + "\n" for line in lines.splitlines()))
            self._target.flush()
            self._log.write(lines)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")


def failure_report(state: dict[str, Any]) -> str:
    """What the master prints when the job fails: the reason and each failed worker's traceback."""
    parts = [f"t2mpi: job {state['job_id']} FAILED: {state.get('reason', '')}"]
    for w in state.get("workers", []):
        if w.get("error"):
            parts.append(w["error"].rstrip())
    return "\n".join(parts)
