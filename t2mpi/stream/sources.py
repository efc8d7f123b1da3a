"""Stream sources: partitions with offsets. Each round the engine asks every source for up to `batch`
records of each partition this worker reads; a partition's offset is where the next round starts, so
a restart from a checkpoint's offsets replays exactly what followed it.

A round reads a fixed number of records per partition (not a time's worth), so which records a round
holds depends only on the offsets: a replay after a restart makes the same rounds, the same
watermarks, the same windows.
"""

from __future__ import annotations

import itertools
import os
import time

from ..data.errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from ..data.errors import Where


class Source:
    """A source's partitions on this worker. index: the source's place among the job's sources; a
    chunk of records carries (index, partition), its partition's name in every worker."""

    name = "source"

    def __init__(self, where: Where, n_partitions: int, rank: int, size: int):
        self.where = where
        self.n = n_partitions
        self.index = 0
        self.rank, self.size = rank, size
        self.mine = [p for p in range(n_partitions) if p % size == rank]
        self.offsets = dict.fromkeys(self.mine, 0)
        self.ended = dict.fromkeys(self.mine, False)
        self.last_record = dict.fromkeys(self.mine, time.monotonic())
        self.records_in = 0

    @property
    def done(self) -> bool:
        return all(self.ended.values())

    def read(self, batch: int) -> list[tuple[int, Any]]:
        """[(global partition, records)] of this round: up to `batch` records of each partition."""
        out = []
        now = time.monotonic()
        for p in self.mine:
            if self.ended[p]:
                continue
            try:
                records, ended = self.take(p, batch)
            except DataError:
                raise
            except Exception as exc:
                raise self.where.failed(exc) from exc
            self.ended[p] = ended
            n = _rows(records)
            if n:
                self.offsets[p] += n if self.counts_rows else 0
                self.last_record[p] = now
                self.records_in += n
                out.append(((self.index, p), records))
        return out

    counts_rows = True  # the offset counts records (files count bytes themselves)

    def take(self, p: int, batch: int) -> tuple[Any, bool]:
        raise NotImplementedError

    def state(self) -> dict[int, Any]:
        return {p: (self.offsets[p], self.ended[p]) for p in self.mine}

    def restore(self, state: dict[int, Any]) -> None:
        for p, (offset, ended) in state.items():
            self.offsets[p], self.ended[p] = offset, ended

    def close(self) -> None:
        pass

    def discover(self) -> list[str]:
        """New partitions seen here (worker 0 asks; the engine tells every worker the same)."""
        return []

    def grow(self, names: list[str]) -> None:
        """Add partitions named by discover() on worker 0."""


def _rows(records: Any) -> int:
    if type(records) is list:
        return len(records)
    return len(next(iter(records.values()))) if records else 0


class GeneratorSource(Source):
    """fn(partition, n_partitions, offset) -> an iterator of records; one partition per worker."""

    name = "generator"

    def __init__(self, where: Where, fn: Callable[[int, int, int], Any], rank: int, size: int):
        super().__init__(where, size, rank, size)
        self.fn = fn
        self.iters: dict[int, Iterator[Any]] = {}

    def iterator(self, p: int) -> Iterator[Any]:
        """Partition p's iterator from its offset (made on first use, and after a restore)."""
        if p not in self.iters:
            self.iters[p] = iter(self.fn(p, self.n, self.offsets[p]))
        return self.iters[p]

    def take(self, p: int, batch: int) -> tuple[list[Any], bool]:
        records = list(itertools.islice(self.iterator(p), batch))
        return records, len(records) < batch


class BatchesSource(GeneratorSource):
    """fn(partition, n_partitions, offset) -> an iterator of dicts of equal-length 1-D numpy columns;
    offset counts rows. A round takes one dict per partition."""

    name = "batches"

    def take(self, p: int, batch: int) -> tuple[dict[str, Any], bool]:
        import numpy as np

        got = next(self.iterator(p), None)
        if got is None:
            return {}, True
        if not isinstance(got, dict) or not got:
            raise DataError(f"{self.where}: expects dicts of numpy columns, got {type(got).__name__}")
        cols = {name: np.asarray(col) for name, col in got.items()}
        lengths = {name: (c.ndim, len(c) if c.ndim else 0) for name, c in cols.items()}
        if len({v for v in lengths.values()}) != 1 or next(iter(lengths.values()))[0] != 1:
            raise DataError(f"{self.where}: a batch's columns must be 1-D and of one length, got {lengths}")
        return cols, False


class FilesSource(Source):
    """The lines (UTF-8, without line endings) of the files in a folder, or of one file; a partition
    per file (sorted by name), spread over the workers round-robin; offsets in bytes. follow=True:
    a partition does not end at its file's end; lines appended later are read (a line counts once
    its newline is written)."""

    name = "files"
    counts_rows = False

    def __init__(self, where: Where, path: str, follow: bool, rank: int, size: int, files: list[str]):
        """files: file_list(where, path), as worker 0 saw it (every worker reads the same list)."""
        self.path = path
        self.files = files
        self.looked = time.monotonic()
        self.follow = follow
        self.handles: dict[int, Any] = {}
        self.line_bytes: dict[int, float] = {}  # a partition's mean line length so far: the next read's size
        super().__init__(where, len(files), rank, size)

    @property
    def done(self) -> bool:
        return not self.follow and all(self.ended.values())

    def take(self, p: int, batch: int) -> tuple[list[str], bool]:
        """Up to `batch` lines from the partition's offset, read in blocks and decoded at once (a
        newline byte is never inside a UTF-8 sequence, so a block decodes as its lines would)."""
        f = self.handles.get(p)
        if f is None:
            f = self.handles[p] = open(self.files[p], "rb")  # noqa: SIM115 (kept open across rounds)
        f.seek(self.offsets[p])
        size = max(4096, int(batch * self.line_bytes.get(p, 64.0) * 1.1))
        data, newlines, at_end = b"", 0, False
        while newlines < batch:
            more = f.read(size)
            if not more:
                at_end = True
                break
            data += more
            newlines += more.count(b"\n")
        if newlines >= batch:
            cut = _nth_newline(data, batch)
        else:  # fewer than batch whole lines: all of them (and, at the end of a file that ends, a
            whole = at_end and not self.follow  # last line without a newline)
            cut = len(data) if whole else data.rfind(b"\n") + 1
        block = data[:cut]
        if not block:
            return [], at_end and not self.follow
        lines = block.decode("utf-8", "replace").split("\n")
        if block.endswith(b"\n"):
            lines.pop()
        if b"\r" in block:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        self.offsets[p] += cut
        self.line_bytes[p] = cut / len(lines)
        return lines, len(lines) < batch and at_end and not self.follow

    def restore(self, state: Any) -> None:
        """The checkpoint's files, in its order (partition p is the same file); with follow=True,
        files that came since are added after them, and the rest is as the checkpoint left it."""
        files, offsets = state
        since = [f for f in self.files if f not in set(files)] if self.follow else []
        self.close()
        self.files, self.n, self.mine = [], 0, []
        self.offsets, self.ended, self.last_record = {}, {}, {}
        self.grow(list(files) + since)
        super().restore(offsets)

    def state(self) -> Any:
        return (list(self.files), super().state())

    def discover(self) -> list[str]:
        """Files new in the folder (follow=True; looked for at most twice a second)."""
        now = time.monotonic()
        if not self.follow or not os.path.isdir(self.path) or now - self.looked < 0.5:
            return []
        self.looked = now
        known = set(self.files)
        return [f for f in _listing(self.path) if f not in known]

    def grow(self, names: list[str]) -> None:
        now = time.monotonic()
        for name in names:
            p = len(self.files)
            self.files.append(name)
            self.n += 1
            if p % self.size == self.rank:
                self.mine.append(p)
                self.offsets[p], self.ended[p], self.last_record[p] = 0, False, now

    def close(self) -> None:
        for f in self.handles.values():
            f.close()
        self.handles.clear()


def _nth_newline(data: bytes, n: int) -> int:
    """The offset just past data's n-th newline (data has at least n)."""
    at = -1
    if n > 64:  # most of the way by splitting (in C), the rest by find
        head = data.split(b"\n", n - 1)
        at = len(data) - len(head[-1]) - 1
        n = 1
    for _ in range(n):
        at = data.index(b"\n", at + 1)
    return at + 1


def file_list(where: Where, path: str) -> list[str]:
    """The files a files source reads: a folder's (sorted, not hidden ones), or the one file."""
    if os.path.isdir(path):
        return _listing(path)
    if os.path.isfile(path):
        return [path]
    raise DataError(f"{where}: no folder or file {path!r}")


def _listing(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
    )
