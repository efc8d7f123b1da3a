"""Joins larger than memory (Twister2's useDisk for joins): the object path of a join under a
memory budget, a Grace hash join.

- Both sides' rows, tagged with their side, are sent in rounds of at most budget / SHARE bytes
  (estimated), each row to the worker its key hashes to; every worker takes part in every round
  until no worker has more.
- The receiving side keeps the rows in SPILL_FILES partitions by a (local) hash of the key, per
  side; past budget / SHARE it appends every partition to its files and starts again, so arrival
  order is kept.
- Then one partition at a time: an index of its right rows, and its left rows streamed past it,
  joined as the in-memory hash join does. A method="sort" join's rows then go through runs.py's
  spilling local sort, so its output still comes in key order.

What one partition's right side holds is in memory at a time (about 1/16 of this worker's right
rows). Its files live in a private folder under the scratch folder, removed once read, when the
operation fails, or when the process ends.
"""

from __future__ import annotations

import itertools
import os

from .keyed import buckets_of
from .narrow import pairs
from .spill import SHARE, SPILL_FILES, append_batches, item_bytes, private_folder, read_removing, spill_counter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from .errors import Where

FIRST = 1024  # rows in the first round, from which a row's size is estimated


def spilling_join(
    data: Any, where: Where, lpart: Any, rpart: Any, how: str, method: str, dest: Callable[[Any], int]
) -> Callable[[], Iterator[Any]]:
    """The join of this worker's parts under data.memory_budget: its rounds run now (collectives);
    the returned run gives this worker's joined rows."""
    from .join import _hash_join, _key
    from .runs import RunFiles, local_stream

    ex, budget = data.exchange, data.memory_budget
    counter = spill_counter(data, ex)
    rows = _Rounds(where, lpart, rpart, budget)
    store = _Partitions(data.scratch_dir, budget, counter)
    try:
        while True:
            got = ex.alltoall(where, lambda: rows.next_round(dest, ex.size))
            for _more, batch in got:
                store.add(batch)
            if not any(more for more, _ in got):
                break
        if store.folder is not None:
            store.spill()  # the rest, now: within this operation, for its figures
    except BaseException:
        store.discard()
        raise

    def joined() -> Iterator[Any]:
        try:
            for lefts, rights in store.partitions():
                yield from _hash_join([(lefts, rights)], how)
        finally:
            store.discard()

    if method == "hash":
        return joined

    def in_key_order() -> Iterator[Any]:
        files = RunFiles(data.scratch_dir, counter)
        try:
            stream, _ = local_stream(where, joined(), _key, True, budget, files, 0)
            yield from stream
        finally:
            files.discard()

    return in_key_order


class _Rounds:
    """The sending side: both parts' rows, (key, (side, value)), a bounded slice per round."""

    def __init__(self, where: Where, lpart: Any, rpart: Any, budget: int):
        tagged = itertools.chain(
            ((k, (0, v)) for k, v in pairs(where, lpart)), ((k, (1, w)) for k, w in pairs(where, rpart))
        )
        self.it, self.budget = tagged, budget
        self.more, self.limit = True, 0

    def next_round(self, dest: Callable[[Any], int], size: int) -> list[tuple[bool, list[Any]]]:
        if not self.more:
            return [(False, [])] * size
        want = self.limit or FIRST
        piece = list(itertools.islice(self.it, want))
        if not self.limit and piece:
            self.limit = max(1, self.budget // SHARE // item_bytes(piece))
        self.more = len(piece) == want
        return [(self.more, b) for b in buckets_of(piece, dest, size)]


class _Partitions:
    """The receiving side: rows by partition and side, in memory up to budget / SHARE, then on disk."""

    def __init__(self, scratch_dir: str | None, budget: int, on_spilled: Callable[[int], None]):
        self.scratch_dir, self.budget, self.on_spilled = scratch_dir, budget, on_spilled
        self.held: list[tuple[list[Any], list[Any]]] = [([], []) for _ in range(SPILL_FILES)]
        self.rows, self.limit = 0, -1  # -1: a row's size not estimated yet
        self.folder: str | None = None

    def add(self, batch: list[Any]) -> None:
        held = self.held
        for k, (side, value) in batch:
            held[(hash(k) // 7) % SPILL_FILES][side].append((k, value))  # local: hash() will do
        self.rows += len(batch)
        if self.limit < 0 and batch:
            self.limit = self.budget // SHARE // item_bytes(batch)  # rows it may hold
        if self.rows > self.limit >= 0:
            self.spill()

    def spill(self) -> None:
        """What is held, appended to its partition's files (one pickled list per side)."""
        folder = self.folder = self.folder or private_folder(self.scratch_dir)
        written = 0
        for p, sides in enumerate(self.held):
            for side, rows in enumerate(sides):
                if rows:
                    written += append_batches(os.path.join(folder, f"{p:02d}-{side}"), [rows])
        self.held = [([], []) for _ in range(SPILL_FILES)]
        self.rows = 0
        self.on_spilled(written)

    def partitions(self) -> Iterator[tuple[Iterator[Any], list[Any]]]:
        """(its left rows as a stream, its right rows) of each partition, in arrival order."""
        for p in range(SPILL_FILES):
            lefts, rights = self.held[p]
            if self.folder is not None:
                rights = [*self._read(p, 1), *rights]
                lefts = itertools.chain(self._read(p, 0), lefts)
            yield lefts, rights
            self.held[p] = ([], [])

    def _read(self, p: int, side: int) -> Iterator[Any]:
        return read_removing(os.path.join(self.folder or "", f"{p:02d}-{side}"))

    def discard(self) -> None:
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.held = [([], []) for _ in range(SPILL_FILES)]
