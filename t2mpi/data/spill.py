"""Keyed shuffles larger than memory (Twister2's useDisk): when a Data has a memory budget, a keyed
combine sends in rounds and spills what it receives.

- The sending side combines at most a share of the budget at a time, then sends that round; every
  worker takes part in every round until no worker has more (each round is one guarded exchange).
- The receiving side merges what arrives in a dict. Past its share of the budget, it writes the dict
  to disk split by a hash of the key into SPILL_FILES files (a grace hash), and starts again. At the
  end each file is read back alone, its combiners merged per key, and its items given out: a key is
  in one file only, so one file's keys are what is held at a time.

Spill files live in a private folder under the scratch folder, removed when the merged output has
been read, when reading it fails, or when the process exits.
"""

from __future__ import annotations

import os
import pickle
import sys

from .keyed import merge_into

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from .errors import Where

SPILL_FILES = 16
CHUNK = 65536  # elements the sending side combines between checks of its budget
SHARE = 4  # the sending and the receiving side each hold at most budget / SHARE


def entry_bytes(items: list[tuple[Any, Any]]) -> int:
    """An estimate of what one (key, combiner) entry of a dict holds in memory, from a sample."""
    if not items:
        return 100
    sample = items[:: max(1, len(items) // 64)][:64]
    size = sum(sys.getsizeof(k) + _deep(c) for k, c in sample) / len(sample)
    return int(size) + 80  # the dict's slot and hash, a tuple in flight


def item_bytes(items: list[Any]) -> int:
    """An estimate of what one element of a list holds in memory, from a sample."""
    sample = items[:: max(1, len(items) // 64)][:64]
    if not sample:
        return 100
    return int(sum(_deep(x) for x in sample) / len(sample)) + 8  # and the list's slot


def spill_counter(data: Any, ex: Any) -> Callable[[int], None]:
    """on_spilled for an operation of `data`: the bytes counted in data.spilled_bytes and in the
    operation's figures (events.jsonl)."""

    def spilled(nbytes: int) -> None:
        data.spilled_bytes += nbytes
        ex.spilled(nbytes)

    return spilled


def private_folder(scratch_dir: str | None) -> str:
    """A new folder of this process's own under the scratch folder (the temporary folder without
    one), removed at exit if still there, or after this process was killed."""
    import atexit
    import shutil
    import tempfile

    from ..reaper import remove_at_end

    base = scratch_dir or tempfile.gettempdir()
    os.makedirs(base, mode=0o700, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="t2mpi-spill-", dir=base)
    atexit.register(shutil.rmtree, folder, True)
    remove_at_end(folder)  # also when this process is killed (t2mpi/reaper.py)
    return folder


def _deep(value: Any) -> int:
    if type(value) in (list, tuple):
        return sys.getsizeof(value) + sum(sys.getsizeof(x) for x in value[:64]) * max(1, len(value)) // max(
            1, min(len(value), 64)
        )
    return sys.getsizeof(value)


class Rounds:
    """The sending side: the partition combined a bounded dict at a time."""

    def __init__(
        self,
        where: Where,
        part: Iterable[Any],
        combine_step: Callable[[dict[Any, Any], Any], None],
        budget: int,
        chunk: int | None = None,
    ):
        self.where, self.it, self.step, self.budget = where, iter(part), combine_step, budget
        self.chunk = chunk or CHUNK
        self.more = True
        self.per_entry = 0

    def next_round(self) -> dict[Any, Any]:
        """The next bounded combine of the partition; self.more says whether anything is left."""
        import itertools

        combined: dict[Any, Any] = {}
        limit = None
        while True:
            piece = list(itertools.islice(self.it, self.chunk))
            if piece:
                self.step(combined, piece)
            if len(piece) < self.chunk:
                self.more = False
                return combined
            if limit is None or not self.per_entry:
                self.per_entry = entry_bytes(list(combined.items())[:256])
                limit = max(1, self.budget // SHARE // self.per_entry)
            if len(combined) >= limit:
                return combined


class Spiller:
    """The receiving side: (key, combiner) batches merged in memory, spilled past the budget."""

    def __init__(
        self,
        where: Where,
        merge: Callable[[Any, Any], Any],
        budget: int,
        scratch_dir: str | None,
        hash_of: Callable[[Any], int],
        on_spilled: Callable[[int], None] | None = None,
    ):
        self.where, self.merge, self.budget, self.scratch_dir = where, merge, budget, scratch_dir
        self.hash_of, self.on_spilled = hash_of, on_spilled
        self.held: dict[Any, Any] = {}
        self.per_entry = 0
        self.folder: str | None = None
        self.spilled_bytes = 0

    def add(self, batch: list[tuple[Any, Any]]) -> None:
        held = self.held
        merge_into(self.where, held, batch, self.merge)
        if not self.per_entry and held:
            self.per_entry = entry_bytes(list(held.items())[:256])
        if self.per_entry and len(held) * self.per_entry > self.budget // SHARE:
            self.spill()

    def spill(self) -> None:
        """The held dict to disk, one pickled list per file, split by a hash of the key."""
        if not self.held:
            return
        folder = self.folder = self.folder or private_folder(self.scratch_dir)
        parts: list[list[Any]] = [[] for _ in range(SPILL_FILES)]
        hash_of = self.hash_of
        for kc in self.held.items():
            parts[(hash_of(kc[0]) // 7) % SPILL_FILES].append(kc)
        self.held = {}
        written = 0
        for i, items in enumerate(parts):
            if items:
                written += append_batches(os.path.join(folder, f"part-{i:02d}"), [items])
        self.spilled_bytes += written
        if self.on_spilled is not None:
            self.on_spilled(written)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every key once with its merged combiner; spill files are read one at a time, then removed."""
        if self.folder is None:
            yield from self.held.items()
            return
        import shutil

        self.spill()
        try:
            for i in range(SPILL_FILES):
                path = os.path.join(self.folder, f"part-{i:02d}")
                if not os.path.exists(path):
                    continue
                self.held = {}
                for batch in read_batches(path):
                    merge_into(self.where, self.held, batch, self.merge)  # no spilling: one file's keys
                os.unlink(path)
                yield from self.held.items()
                self.held = {}
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def discard(self) -> None:
        """Remove what was spilled (the operation failed)."""
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.held = {}


def append_batches(path: str, batches: Iterable[Any]) -> int:
    """Each batch pickled onto the end of a spill file; the bytes written."""
    with open(path, "ab") as f:
        start = f.tell()
        for batch in batches:
            pickle.dump(batch, f, protocol=pickle.HIGHEST_PROTOCOL)
        return f.tell() - start


def read_removing(path: str) -> Iterator[Any]:
    """The elements of a spill file's batches in order; the file is removed once read (a file
    that is not there has none)."""
    if not os.path.exists(path):
        return
    for batch in read_batches(path):
        yield from batch
    os.unlink(path)


def read_batches(path: str) -> Iterator[Any]:
    """The pickled batches appended to a file, one at a time (spill files, persisted objects)."""
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return
