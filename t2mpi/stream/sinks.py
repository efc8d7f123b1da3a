"""Stream sinks. A file sink writes each checkpoint epoch of this worker's records into a part file
of its own, `part-<worker>-<epoch>`, first under a temporary name; the part is renamed to its name
(and the folder fsynced) once the checkpoint that closed its epoch is committed. A restart from a
committed checkpoint finishes the renames that checkpoint allows, deletes the parts of later epochs,
and replays from the sources' offsets: the folder ends with every output record once.
"""

from __future__ import annotations

import os

from ..data.errors import DataError
from .operators import Node

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..data.errors import Where


def lines(records: Any) -> list[str]:
    """A chunk's records as text lines: a str as it is, a tuple as its fields joined by tabs."""
    out = []
    for r in records_of(records):
        if type(r) is str:
            out.append(r)
        elif type(r) is tuple:
            out.append("\t".join(map(str, r)))
        else:
            out.append(str(r))
    return out


def records_of(records: Any) -> list[Any]:
    if type(records) is dict:
        names = list(records)
        return list(zip(*(records[n].tolist() for n in names)))
    return records


class Sink(Node):
    is_sink = True

    def __init__(self, where: Where, parent: Node):
        super().__init__(where, [parent], parent.kind)
        self.count = 0

    def fresh(self) -> None:
        """The run starts with no checkpoint to go on from."""

    def checkpointed(self, version: int) -> None:
        """A checkpoint `version` was written: the records since the last one are its epoch."""

    def committed(self, version: int) -> None:
        """Checkpoint `version` (and those before it) is committed."""

    def ended(self) -> None:
        """The stream ended (its last checkpoint committed, when there are checkpoints)."""


class FileSink(Sink):
    def __init__(self, where: Where, parent: Node, folder: str, worker: int):
        super().__init__(where, parent)
        self.folder = os.fspath(folder)
        self.worker = worker
        self.epoch = 0
        self.pending: list[tuple[int, int]] = []  # (epoch, the checkpoint version that closed it)
        self.file: Any = None
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{where}: cannot make the folder {self.folder!r}: {exc.strerror}") from None

    def name(self, epoch: int, temporary: bool = False) -> str:
        base = f"part-{self.worker:05d}-{epoch:06d}"
        return os.path.join(self.folder, f".{base}.tmp" if temporary else base)

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        for _, records in chunks:
            text = lines(records)
            if not text:
                continue
            if self.file is None:
                self.file = open(self.name(self.epoch, True), "w", encoding="utf-8")  # noqa: SIM115
            self.file.write("\n".join(text) + "\n")
            self.count += len(text)
        return []

    def _close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None
            return True
        return False

    def checkpointed(self, version: int) -> None:
        if self._close():
            self.pending.append((self.epoch, version))
        self.epoch += 1

    def committed(self, version: int) -> None:
        done = [e for e, v in self.pending if v <= version]
        for e in done:
            if os.path.exists(self.name(e, True)):
                os.replace(self.name(e, True), self.name(e))
        if done:
            self._sync_folder()
        self.pending = [(e, v) for e, v in self.pending if v > version]

    def ended(self) -> None:
        if self._close():
            os.replace(self.name(self.epoch, True), self.name(self.epoch))
            self._sync_folder()

    def _sync_folder(self) -> None:
        from ..job.files import fsync_dir

        fsync_dir(self.folder)

    def state(self) -> Any:
        return (self.epoch, list(self.pending), self.count)

    def fresh(self) -> None:
        """No checkpoint was committed: nothing of an earlier attempt was, either."""
        self._remove_uncommitted()

    def restore(self, state: Any) -> None:
        """Restarted from a committed checkpoint: its epochs are committed; later ones are not."""
        self.epoch, self.pending, self.count = state
        self.committed(max((v for _, v in self.pending), default=0))
        self._remove_uncommitted()

    def _remove_uncommitted(self) -> None:
        prefix = f".part-{self.worker:05d}-"
        for n in os.listdir(self.folder):
            if n.startswith(prefix) and n.endswith(".tmp"):
                os.unlink(os.path.join(self.folder, n))
        mine = f"part-{self.worker:05d}-"
        for n in os.listdir(self.folder):
            epoch = n[len(mine) :]
            if n.startswith(mine) and epoch.isdigit() and int(epoch) >= self.epoch:
                os.unlink(os.path.join(self.folder, n))


class FunctionSink(Sink):
    """fn(record) for each record as it comes, or fn(chunk) for each chunk with batches=True (a
    list of records, or a dict of numpy columns); at least once: a restart replays since the last
    checkpoint."""

    def __init__(self, where: Where, parent: Node, fn: Callable[[Any], Any], batches: bool = False):
        super().__init__(where, parent)
        self.fn, self.batches = fn, batches

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        for _, records in chunks:
            if self.batches:  # the chunk as it is: a list, or a dict of numpy columns
                self.call(self.fn, records)
                self.count += len(records) if type(records) is list else len(next(iter(records.values()), ()))
                continue
            for r in records_of(records):
                self.call(self.fn, r)
                self.count += 1
        return []


class Collect(Sink):
    """The records, kept in this worker until the end; run() returns every worker's, in worker order
    (small results: they are held in memory and in each checkpoint)."""

    def __init__(self, where: Where, parent: Node):
        super().__init__(where, parent)
        self.items: list[Any] = []

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        for _, records in chunks:
            got = records_of(records)
            self.items.extend(got)
            self.count += len(got)
        return []

    def state(self) -> Any:
        return (self.items, self.count)

    def restore(self, state: Any) -> None:
        self.items, self.count = state
