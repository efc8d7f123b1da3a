"""Numpy sorts larger than memory: the global sort of numbers and fixed-size byte records
(sort.py's block path) when a Data has a memory budget.

- The splitters come from an evenly spaced sample of the unsorted block (the block is not sorted
  where it starts: it is held once, as the source made it).
- The block is sent in rounds of at most budget / SHARE bytes, in input order: each round's rows
  are bucketed by the splitters (np.searchsorted) and go in one guarded Alltoallv of raw rows;
  every worker takes part in every round until no worker has more (the number of rounds is known
  from the first collective).
- What arrives from one worker is kept per source. Past budget / SHARE held, each source's rows are
  sorted (stable) and written as a sorted run, a .npy file in a private folder under the scratch
  folder (spill.private_folder), counted with spill_counter.
- Nothing written: the held rows, concatenated in source order and sorted, are the partition, in
  memory (as without a budget). Otherwise the runs (in source order, then in the order they were
  written: the input order) merge chunk by chunk: the cut is the first, in output order, of the
  runs' current chunk ends; what comes before it in every run is merged by one stable numpy sort of
  their concatenation in run order, then each run's rows equal to the cut follow in run order. The
  merged rows go to one .npy file, which becomes the partition as a read-only np.memmap; the file
  (and its folder) is unlinked at once, so its space is freed when the last view of the partition
  goes, and nothing stays on disk if the process is killed.
"""

from __future__ import annotations

import os
import shutil

from .runs import evenly
from .spill import SHARE, private_folder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .errors import Where

SAMPLED = 8  # rows sampled per splitter sample wanted (the sample is sorted, then thinned)


def round_rows(budget: int, itemsize: int) -> int:
    """The rows of one round: at most budget / SHARE bytes (one at least)."""
    return max(1, budget // SHARE // max(1, itemsize))


def samples(block: Any, kind_keys: Callable[[Any], tuple[str, Any]], want: int) -> Any:
    """`want` keys evenly spaced in key order, from an evenly spaced sample of the unsorted block."""
    import numpy as np

    n = len(block)
    m = min(n, want * SAMPLED)
    picked = block[np.arange(m, dtype=np.int64) * n // m] if m else block[:0]
    kind, keys = kind_keys(picked)
    from .sort import key_order

    return evenly(keys[key_order(kind, keys)], want)


class Sender:
    """The sending side: round r is the block's rows [r * per, (r + 1) * per), grouped by destination
    (stable: each destination's rows in input order)."""

    def __init__(
        self,
        block: Any,
        kind_keys: Callable[[Any], tuple[str, Any]],
        cut_at: list[Any],
        ascending: bool,
        per: int,
        size: int,
    ):
        self.block, self.kind_keys, self.cut_at = block, kind_keys, cut_at
        self.ascending, self.per, self.size = ascending, per, size

    def round(self, r: int) -> tuple[Any, list[int]]:
        import numpy as np

        from .sort import searchable

        piece = self.block[r * self.per : (r + 1) * self.per]
        kind, keys = self.kind_keys(piece)
        keys = searchable(kind, keys)
        probe = np.array(self.cut_at, dtype=keys.dtype) if kind == "bytes" else np.asarray(self.cut_at)
        bucket = np.searchsorted(probe, keys, side="left") if len(probe) else np.zeros(len(piece), np.int64)
        if not self.ascending:  # worker d takes the d-th range from the top
            bucket = self.size - 1 - bucket
        order = np.argsort(bucket, kind="stable")
        return piece[order], np.bincount(bucket, minlength=self.size).tolist()


class Runs:
    """The receiving side: rows kept per source, written as sorted runs past budget / SHARE."""

    def __init__(self, sort: Callable[[Any], Any], budget: int, scratch_dir: str | None, on_spilled: Any, size: int):
        self.sort, self.budget, self.scratch_dir = sort, budget, scratch_dir
        self.on_spilled = on_spilled
        self.held: list[list[Any]] = [[] for _ in range(size)]
        self.held_bytes = 0
        self.folder: str | None = None
        self.written: list[list[tuple[Any, ...]]] = [[] for _ in range(size)]  # per source: path, offset, rows, dtype

    def add(self, got: Any, rows_in: list[int]) -> None:
        at = 0
        for source, n in enumerate(rows_in):
            if n:
                self.held[source].append(got[at : at + n])
            at += n
        self.held_bytes += got.nbytes
        if self.held_bytes > self.budget // SHARE:
            self.spill()

    def spill(self) -> None:
        """Each source's held rows, sorted, to a run file of their own."""
        self.folder = self.folder or private_folder(self.scratch_dir)
        for source in range(len(self.held)):
            pieces = self.held[source]
            if not pieces:
                continue
            self.held[source] = []
            rows = joined(pieces)
            del pieces  # a round's buffer goes once every source's rows in it are copied out
            run = self.sort(rows)
            del rows
            path = os.path.join(self.folder, f"run-{source:05d}-{len(self.written[source]):05d}.npy")
            offset, nbytes = write_npy(path, [run], len(run), run.dtype)
            self.written[source].append((path, offset, len(run), run.dtype))
            self.on_spilled(nbytes)
        self.held_bytes = 0

    def tail(self, source: int) -> Any:
        """What a source's rows still held come to, sorted (None when there are none)."""
        pieces, self.held[source] = self.held[source], []
        return self.sort(joined(pieces)) if pieces else None

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.held = [[] for _ in self.held]


def joined(pieces: list[Any]) -> Any:
    """Arrays of one dtype concatenated in that dtype (np.concatenate alone makes a structured
    dtype's fields native-endian)."""
    import numpy as np

    out = np.empty(sum(len(p) for p in pieces), dtype=pieces[0].dtype)
    return np.concatenate(pieces, out=out)


def write_npy(path: str, pieces: Any, rows: int, dtype: Any) -> tuple[int, int]:
    """A .npy file of `rows` 1-D rows of dtype, written piece by piece (an iterable of arrays);
    returns (the data's offset in the file, the bytes written)."""
    import numpy as np

    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows,)}
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        written = 0
        for piece in pieces:
            np.ascontiguousarray(piece, dtype=dtype).tofile(f)
            written += piece.nbytes
        if written != rows * np.dtype(dtype).itemsize:
            raise RuntimeError(f"{path}: wrote {written} bytes of rows, expected {rows} rows")
        return offset, f.tell()


class _Run:
    """One sorted run read a chunk at a time: from its file, or from memory (a source's tail)."""

    def __init__(self, source: Any, rows: int, chunk: int, dtype: Any):
        self.source, self.rows, self.chunk, self.dtype = source, rows, chunk, dtype
        self.at = 0  # rows of the run read so far
        self.rows_here: Any = None  # the current chunk (what of it is not taken yet)

    def load(self) -> bool:
        """Make sure a chunk is loaded that has rows left; False when the run is done."""
        import numpy as np

        if self.rows_here is not None and len(self.rows_here):
            return True
        if self.at >= self.rows:
            return False
        n = min(self.chunk, self.rows - self.at)
        if isinstance(self.source, tuple):
            path, offset = self.source
            with open(path, "rb") as f:
                f.seek(offset + self.at * self.dtype.itemsize)
                self.rows_here = np.fromfile(f, dtype=self.dtype, count=n)
        else:
            self.rows_here = self.source[self.at : self.at + n]
        self.at += n
        return True

    def take(self, n: int) -> Any:
        out, self.rows_here = self.rows_here[:n], self.rows_here[n:]
        return out


def _cut_index(sorted_keys: Any, cut: Any, ascending: bool, through: bool) -> int:
    """How many leading keys of a run come before the cut in output order (through=True: or equal)."""
    import numpy as np

    if ascending:
        return int(np.searchsorted(sorted_keys, cut, side="right" if through else "left"))
    return len(sorted_keys) - int(np.searchsorted(sorted_keys[::-1], cut, side="left" if through else "right"))


def merged(runs: list[_Run], kind_keys: Callable[[Any], tuple[str, Any]], sort: Callable[[Any], Any], ascending: bool):
    """The stable merge of sorted runs (ties in run order), a block at a time."""
    import numpy as np

    from .sort import searchable

    def keys_of(rows: Any) -> Any:
        kind, keys = kind_keys(rows)
        return searchable(kind, keys)

    while True:
        alive = [r for r in runs if r.load()]
        if not alive:
            return
        ends = np.concatenate([keys_of(r.rows_here[-1:]) for r in alive])
        ends = np.sort(ends, kind="stable")  # numpy's order (NaN last), which searchsorted follows
        cut = ends[0] if ascending else ends[-1]
        before = [r.take(_cut_index(keys_of(r.rows_here), cut, ascending, False)) for r in alive]
        before = [b for b in before if len(b)]
        if before:
            yield sort(joined(before)) if len(before) > 1 else before[0]
        for r in alive:  # the rows equal to the cut, run by run (a run's ties may span its chunks)
            while r.load():
                n = _cut_index(keys_of(r.rows_here), cut, ascending, True)
                if n:
                    yield r.take(n)
                if len(r.rows_here):
                    break


def exchange_sorted(
    ex: Any,
    where: Where,
    block: Any,
    kind_keys: Callable[[Any], tuple[str, Any]],
    cut_at: list[Any],
    ascending: bool,
    budget: int,
    rounds: int,
    scratch_dir: str | None,
    on_spilled: Callable[[int], None],
) -> Any:
    """This worker's sorted partition after the rounds: an array in memory when nothing was
    written, else a read-only np.memmap of the merged runs."""
    from .sort import stable_sorted

    def sort(rows: Any) -> Any:
        return stable_sorted(rows, kind_keys, ascending)

    per = round_rows(budget, block.dtype.itemsize)
    sender = Sender(block, kind_keys, cut_at, ascending, per, ex.size)
    held = Runs(sort, budget, scratch_dir, on_spilled, ex.size)
    try:
        for r in range(rounds):
            got, rows_in = ex.alltoallv(where, lambda r=r: sender.round(r), by_source=True)
            held.add(got, rows_in)
            del got
        if held.folder is None:
            pieces = [p for ps in held.held for p in ps]
            return sort(joined(pieces)) if pieces else block[:0].copy()
        return _merge_to_memmap(held, kind_keys, sort, ascending, budget, block.dtype, on_spilled)
    finally:
        held.discard()


def _merge_to_memmap(
    held: Runs, kind_keys: Any, sort: Any, ascending: bool, budget: int, dtype: Any, on_spilled: Any
) -> Any:
    import numpy as np

    runs: list[tuple[Any, int, Any]] = []
    for source, written in enumerate(held.written):
        runs += [((path, offset), rows, run_dtype) for path, offset, rows, run_dtype in written]
        tail = held.tail(source)
        if tail is not None:
            runs.append((tail, len(tail), tail.dtype))
    total = sum(rows for _, rows, _ in runs)
    chunk = max(1, budget // SHARE // max(1, dtype.itemsize) // max(1, len(runs)))
    readers = [_Run(source, rows, chunk, run_dtype) for source, rows, run_dtype in runs]
    path = os.path.join(held.folder, "merged.npy")
    _, nbytes = write_npy(path, merged(readers, kind_keys, sort, ascending), total, dtype)
    on_spilled(nbytes)
    return np.load(path, mmap_mode="r")  # the caller removes the file: the mapping keeps the rows
