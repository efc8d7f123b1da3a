"""Errors of the dataflow layer, and the one wrapper that names the operation a user function failed in."""

from __future__ import annotations

import os
import sys

from ..errors import T2mpiError

_HERE = os.path.dirname(os.path.abspath(__file__))
_INSIDE = (_HERE, os.path.join(os.path.dirname(_HERE), "stream"))  # the batch and the streaming API


class DataError(T2mpiError):
    """A dataflow operation failed: a bad argument, a bad key or partitioner, a missing input."""


class UserFunctionError(DataError):
    """A user function raised inside an operation; the original exception is __cause__."""


class RemoteFailure(DataError):
    """Another worker failed in the operation this worker was taking part in."""


def call_site() -> str:
    """'file.py:LINE' of the first caller outside t2mpi/data and t2mpi/stream (where the user wrote
    the operation)."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) in _INSIDE:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


class Where:
    """One operation's place: its name, where the user wrote it, and the worker it runs on."""

    __slots__ = ("op", "site", "worker", "workers", "host")

    def __init__(self, op: str, site: str, worker: int, workers: int, host: str = "?"):
        self.op, self.site, self.worker, self.workers, self.host = op, site, worker, workers, host

    def __str__(self) -> str:
        return (
            f"{self.op} at {self.site} on worker {self.worker} of {self.workers} on {self.host} "
            f"(partition {self.worker})"
        )

    def failed(self, exc: BaseException) -> UserFunctionError:
        """The error to raise `from exc` when a user function failed here."""
        err = UserFunctionError(f"{self} failed: {type(exc).__name__}: {exc}")
        err.where = self
        return err

    def unorderable(self, exc: BaseException) -> DataError:
        """The error to raise `from exc` when the keys of a sort could not be compared here."""
        return DataError(
            f"{self}: the keys cannot be ordered ({exc}); give a key function that returns comparable values"
        )
