"""Numpy joins and Columns reductions larger than memory: the inner join of integer-keyed Columns
(join.py) and the vectorised reduce_by_key of Columns (keyed.py) when a Data has a memory budget.
All of it is done by numpy, with no Python code per row.

- The sending side: the partition's rows, as (key, value) records, go in rounds of at most
  budget / SHARE bytes, each round grouped by worker (key % workers) in one guarded Alltoallv. The
  number of rounds comes from a first allgather (every worker's rows), so every worker takes part
  in every round until none has more. A reduction reduces each round's rows before they go.
- The receiving side holds what arrives, in arrival order, up to budget / SHARE bytes. A reduction
  then reduces what it holds first (few distinct keys stay in memory). Past that, the rows are split
  by a hash of the key into SPILL_FILES partitions and appended to a raw file per partition (and
  side), in a private folder under the scratch folder (spill.private_folder), counted with
  spill_counter.
- Nothing written: the held rows are joined or reduced in memory, as without a budget. Otherwise
  one partition at a time: a reduction reads its rows and reduces them; a join reads its right
  rows and streams its left rows past them, budget / SHARE**2 bytes at a time (a chunk's join holds
  a few times its rows).
- The output (ColumnsOut) is held up to budget / SHARE bytes; past that, it goes to two raw files
  (keys, values) and the partition is Columns of two read-only np.memmap of them, unlinked at once:
  their space is freed when the partition's last view goes, and nothing is left if the process is
  killed. A spilled reduction's keys come sorted per partition, not overall.
"""

from __future__ import annotations

import os
import shutil

from .npruns import joined, round_rows
from .spill import SHARE, SPILL_FILES, private_folder, spill_counter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from .errors import Where

_FIBONACCI = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: its product's top bits spread any keys


def partition_of(keys: Any) -> Any:
    """The spill partition of each integer key, 0..SPILL_FILES-1 (independent of key % workers)."""
    import numpy as np

    bits = SPILL_FILES.bit_length() - 1  # SPILL_FILES is a power of two
    spread = keys.astype(np.uint64, copy=False) * np.uint64(_FIBONACCI)  # wraps modulo 2**64
    return (spread >> np.uint64(64 - bits)).astype(np.uint8)


def record_dtype(part: Any) -> Any:
    """The dtype of a Columns' rows as (key, value) records (join._by_destination's)."""
    import numpy as np

    return np.dtype([("key", part.keys.dtype), ("value", part.values.dtype, part.values.shape[1:])])


class Partitions:
    """The receiving side of one kind of records (with a "key" field): held in arrival order up to
    budget / SHARE bytes; past that, shrunk first if it can be (a reduction), else split by
    partition_of(key) and appended to one raw file per partition."""

    def __init__(self, dtype: Any, budget: int, scratch_dir: str | None, on_spilled: Callable[[int], None]):
        self.dtype, self.limit, self.scratch_dir, self.on_spilled = (
            dtype,
            max(1, budget // SHARE),
            scratch_dir,
            on_spilled,
        )
        self.held: list[Any] = []
        self.held_bytes = 0
        self.folder: str | None = None
        self.rows_in = [0] * SPILL_FILES  # rows written to each partition's file
        self.shrink: Callable[[Any], Any] | None = None

    def add(self, rows: Any) -> None:
        if not len(rows):
            return
        self.held.append(rows)
        self.held_bytes += rows.nbytes
        if self.held_bytes <= self.limit:
            return
        if self.shrink is not None:
            fewer = self.shrink(self.all())
            self.held, self.held_bytes = [fewer], fewer.nbytes
            if self.held_bytes <= self.limit // 2:
                return
        self.spill()

    def all(self) -> Any:
        """What is held, in arrival order, as one array (and no longer held here)."""
        import numpy as np

        pieces, self.held, self.held_bytes = self.held, [], 0
        return joined(pieces) if pieces else np.empty(0, self.dtype)

    def spill(self) -> None:
        """What is held, split by partition, appended to the partitions' files."""
        import numpy as np

        if not self.held:
            return
        folder = self.folder = self.folder or private_folder(self.scratch_dir)
        pieces, self.held, self.held_bytes = self.held, [], 0
        written = 0
        while pieces:  # a piece at a time, in arrival order: no copy of all that was held
            rows = pieces.pop(0)
            parts = partition_of(rows["key"])
            rows = rows[np.argsort(parts, kind="stable")]  # 8-bit: a radix sort; each partition in arrival order
            at = 0
            for p, n in enumerate(np.bincount(parts, minlength=SPILL_FILES).tolist()):
                if n:
                    with open(os.path.join(folder, f"part-{p:02d}"), "ab") as f:
                        rows[at : at + n].tofile(f)
                    self.rows_in[p] += n
                at += n
            written += rows.nbytes
            del rows
        self.on_spilled(written)

    def chunks(self, p: int, per: int) -> Iterator[Any]:
        """Partition p's rows from its file, at most `per` rows at a time; the file is removed once read."""
        import numpy as np

        n = self.rows_in[p]
        if not n:
            return
        path = os.path.join(self.folder or "", f"part-{p:02d}")
        with open(path, "rb") as f:
            for at in range(0, n, per):
                yield np.fromfile(f, dtype=self.dtype, count=min(per, n - at))
        os.unlink(path)

    def whole(self, p: int) -> Any:
        import numpy as np

        pieces = list(self.chunks(p, max(1, self.rows_in[p])))
        return pieces[0] if pieces else np.empty(0, self.dtype)

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.held, self.held_bytes = [], 0


class ColumnsOut:
    """An operation's output Columns, a piece at a time: in memory up to budget / SHARE bytes, past
    that in two raw files (keys, values), mapped read-only at the end and unlinked at once."""

    def __init__(self, budget: int, scratch_dir: str | None, on_spilled: Callable[[int], None]):
        self.limit, self.scratch_dir, self.on_spilled = max(1, budget // SHARE), scratch_dir, on_spilled
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.held_bytes = 0
        self.folder: str | None = None
        self.rows = 0  # rows written to the files
        self.kinds: tuple[Any, Any] | None = None

    def add(self, keys: Any, values: Any) -> None:
        self.kinds = self.kinds or (keys.dtype, (values.dtype, values.shape[1:]))
        if not len(keys):
            return
        self.keys.append(keys)
        self.values.append(values)
        self.held_bytes += keys.nbytes + values.nbytes
        if self.held_bytes > self.limit:
            self._write()

    def _write(self) -> None:
        if not self.keys:
            return
        folder = self.folder = self.folder or private_folder(self.scratch_dir)
        for name, pieces in (("keys", self.keys), ("values", self.values)):
            with open(os.path.join(folder, name), "ab") as f:
                for piece in pieces:
                    piece.tofile(f)
        self.rows += sum(len(k) for k in self.keys)
        self.keys, self.values, written, self.held_bytes = [], [], self.held_bytes, 0
        self.on_spilled(written)

    def result(self) -> Any:
        import numpy as np

        from .columns import Columns

        key_dtype, (value_dtype, value_shape) = self.kinds
        if self.folder is None:
            if not self.keys:
                return Columns(np.empty(0, key_dtype), np.empty((0, *value_shape), value_dtype))
            return Columns(joined(self.keys), joined(self.values))
        self._write()
        try:
            if not self.rows:
                return Columns(np.empty(0, key_dtype), np.empty((0, *value_shape), value_dtype))
            keys = np.memmap(os.path.join(self.folder, "keys"), dtype=key_dtype, mode="r", shape=(self.rows,))
            values = np.memmap(
                os.path.join(self.folder, "values"), dtype=value_dtype, mode="r", shape=(self.rows, *value_shape)
            )
            return Columns(keys, values)
        finally:
            self.discard()  # the mappings keep the rows

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.keys, self.values = [], []


def most_rows(metas: list[Any]) -> tuple[int, ...]:
    """The most rows any worker holds, per side, from (kinds, rows per side) metas."""
    return tuple(max(rows) for rows in zip(*(m[1] for m in metas)))


def _send(
    ex: Any, where: Where, part: Any, rows: int, budget: int, store: Partitions, prepare: Callable[[Any], Any]
) -> None:
    """part's rows in rounds of budget / SHARE bytes (`rows`: the most any worker holds), each round's
    prepare(Columns) -> (records grouped by worker, counts) sent in one Alltoallv, kept by `store`."""
    per = round_rows(budget, store.dtype.itemsize)
    for r in range(-(-rows // per)):
        store.add(ex.alltoallv(where, lambda r=r: prepare(part.rows(r * per, (r + 1) * per))))


def spilling_columns_join(data: Any, where: Where, lpart: Any, rpart: Any, rows: tuple[int, int]) -> Any:
    """The inner join of this worker's Columns under data.memory_budget (rows: the most rows any
    worker holds on each side); the rounds run now (collectives). Returns the joined Columns."""
    from .join import _by_destination, _columns_inner

    ex, budget = data.exchange, data.memory_budget
    counter = spill_counter(data, ex)
    left = Partitions(record_dtype(lpart), budget, data.scratch_dir, counter)
    right = Partitions(record_dtype(rpart), budget, data.scratch_dir, counter)
    out = ColumnsOut(budget, data.scratch_dir, counter)
    try:
        _send(ex, where, lpart, rows[0], budget, left, lambda c: _by_destination(c, ex.size))
        _send(ex, where, rpart, rows[1], budget, right, lambda c: _by_destination(c, ex.size))
        if left.folder is None and right.folder is None:
            return _columns_inner(left.all(), right.all(), ex.size)
        left.spill()
        right.spill()  # both sides wholly on disk, partitioned alike
        empty = _columns_inner(left.all(), right.all())  # no rows: the output's dtypes
        out.add(empty.keys, empty.values)
        per = round_rows(budget // SHARE, left.dtype.itemsize)  # the join of a chunk holds ~4 x its rows
        for p in range(SPILL_FILES):
            rrows = right.whole(p)
            for lrows in left.chunks(p, per):
                piece = _columns_inner(lrows, rrows)
                out.add(piece.keys, piece.values)
        return out.result()
    finally:
        left.discard()
        right.discard()
        out.discard()


def columns_reduce(
    data: Any, where: Where, run: Callable[[], Any], create: Any, merge_value: Any, merge_combiners: Any, held: list
) -> Any:
    """Under a memory budget, reduce_by_key's numpy path: when every worker's partition (run(), made in
    one allgather) is Columns that reduce in numpy, of the same dtypes, the reduced Columns
    (spilling_columns_reduce); else None, and the partition is left in `held` for the object path."""
    from .columns import vectorisable

    def local():
        part = run()
        held.append(part)
        if vectorisable(part, create, merge_value, merge_combiners) is None:
            return (None, None)
        return ((part.keys.dtype.str, part.values.dtype.str, part.values.shape[1:]), (len(part),))

    metas = data.exchange.allgather(where, local)
    if metas[0][0] is None or len({m for m, _ in metas}) != 1:
        return None
    part = held.pop()
    ufunc = vectorisable(part, create, merge_value, merge_combiners)
    return spilling_columns_reduce(data, where, part, ufunc, most_rows(metas)[0])


def spilling_columns_reduce(data: Any, where: Where, part: Any, ufunc: Any, rows: int) -> Any:
    """The reduction of this worker's Columns by key with ufunc under data.memory_budget (rows: the
    most rows any worker holds); the rounds run now (collectives). Returns the reduced Columns."""
    from .columns import Columns, reduce_columns
    from .join import _by_destination

    ex, budget = data.exchange, data.memory_budget
    counter = spill_counter(data, ex)

    def reduced(rows: Any) -> Any:
        return Columns(*reduce_columns(rows["key"], rows["value"], ufunc))

    def prepare(chunk: Any) -> Any:
        return _by_destination(Columns(*reduce_columns(chunk.keys, chunk.values, ufunc)), ex.size)

    store = Partitions(record_dtype(part), budget, data.scratch_dir, counter)
    store.shrink = lambda rows: _by_destination(reduced(rows), 1)[0]
    out = ColumnsOut(budget, data.scratch_dir, counter)
    try:
        _send(ex, where, part, rows, budget, store, prepare)
        if store.folder is None:
            return reduced(store.all())
        store.spill()
        for p in range(SPILL_FILES):
            got = reduced(store.whole(p))
            out.add(got.keys, got.values)
        return out.result()
    finally:
        store.discard()
        out.discard()
