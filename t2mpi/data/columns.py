"""Columns: a keyed partition held as two numpy arrays (keys, values) instead of Python pairs.

A partition of Columns iterates as (key, value) pairs of Python scalars, so every operation accepts it;
reduce_by_key with add, mul, max or min over integer keys takes the vectorised path: a local
np.unique + ufunc.reduceat, a hash partition by key % workers, and one Alltoallv per column (under a
memory budget, in rounds that spill past it: npgrace.py)."""

from __future__ import annotations

import operator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Columns:
    """keys and values: 1-D numpy arrays of one length (a key per row)."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: Any, values: Any):
        import numpy as np

        keys, values = np.asarray(keys), np.asarray(values)
        if keys.ndim != 1 or len(values) != len(keys):
            raise ValueError(f"Columns: keys must be 1-D and values as long (got {keys.shape} and {values.shape})")
        self.keys, self.values = keys, values

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        values = self.values.tolist() if self.values.ndim == 1 else list(self.values)
        return zip(self.keys.tolist(), values)

    def __repr__(self) -> str:
        return f"Columns({len(self)} rows, keys {self.keys.dtype}, values {self.values.dtype})"

    def rows(self, start: int, stop: int) -> Columns:
        return Columns(self.keys[start:stop], self.values[start:stop])


def ufunc_of(fn: Any) -> Any:
    """The numpy ufunc that does what fn does to two values, or None."""
    import numpy as np

    return {
        operator.add: np.add,
        np.add: np.add,
        operator.mul: np.multiply,
        np.multiply: np.multiply,
        max: np.maximum,
        np.maximum: np.maximum,
        min: np.minimum,
        np.minimum: np.minimum,
    }.get(fn)


def vectorisable(part: Any, create: Any, merge_value: Any, merge_combiners: Any) -> Any:
    """The ufunc of a reduce_by_key this partition can do in numpy, or None."""
    if type(part) is not Columns or create is not None or merge_value is not merge_combiners:
        return None
    if part.keys.dtype.kind not in "iu" or part.values.dtype.kind not in "iufb":
        return None
    return ufunc_of(merge_value)


def reduce_columns(keys: Any, values: Any, ufunc: Any) -> tuple[Any, Any]:
    """One row per distinct key (sorted), values reduced with ufunc."""
    import numpy as np

    if not len(keys):
        return keys, values
    if ufunc is np.add and values.ndim == 1 and values.dtype == np.float64 and keys.dtype.kind in "iu":
        low, high = int(keys.min()), int(keys.max())
        if low >= 0 and high < max(1 << 16, 2 * len(keys)):  # small dense keys: sums by bincount
            counts = np.bincount(keys, minlength=high + 1)
            present = np.flatnonzero(counts)
            sums = np.bincount(keys, weights=values, minlength=high + 1)
            return present.astype(keys.dtype), sums[present].astype(values.dtype)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts], ufunc.reduceat(values, starts, axis=0)


def by_destination(keys: Any, values: Any, size: int) -> tuple[Any, Any, list[int]]:
    """The rows ordered by worker (key % size), and the rows for each worker."""
    import numpy as np

    order, counts = destination_order(keys, size)
    if order is None:
        return np.ascontiguousarray(keys), np.ascontiguousarray(values), counts
    return keys[order], values[order], counts


def destination_order(keys: Any, size: int) -> tuple[Any, list[int]]:
    """(the stable permutation that groups rows by worker, key % size; the rows for each worker).
    The permutation is None for one worker (the rows stay as they are)."""
    import numpy as np

    if size == 1:
        return None, [len(keys)]
    dest = keys % size
    counts = np.bincount(dest, minlength=size).tolist()
    if size <= 32:  # a pass per worker beats a sort (a comparison sort of int64 is ~10x slower)
        return np.concatenate([np.flatnonzero(dest == d) for d in range(size)]), counts
    narrow = dest.astype(np.uint16 if size <= 1 << 16 else np.int64)  # 16-bit: numpy's radix sort
    return np.argsort(narrow, kind="stable"), counts
