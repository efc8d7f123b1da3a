"""Joins: both sides moved so that equal keys meet on one worker (a hash of the key), then joined
there, by hash (an index of the right side) or by sort (both sides sorted by key, then merged).

When both sides are Columns with integer keys on every worker, an inner join stays in numpy: each
side moves as one Alltoallv of (key, value) rows, the right side is sorted by key, and each left row
finds its matches with searchsorted. The result is Columns whose values are records with the fields
"left" and "right"; it iterates as (key, (left, right)) like any join.

With a memory budget on the Data, both paths send in rounds, partition on disk by a hash of the key
past the budget, and join a partition at a time: the numpy one in npgrace.py, the object one in
grace.py."""

from __future__ import annotations

import itertools

from .errors import DataError
from .keyed import buckets_of, destination
from .narrow import pairs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .dataset import DataSet
    from .errors import Where

HOWS = ("inner", "left", "right", "outer")
METHODS = ("hash", "sort")


def join(left: DataSet, right: DataSet, how: str, method: str, where: Where) -> DataSet:
    from .dataset import DataSet

    if how not in HOWS:
        raise DataError(f"{where}: how={how!r}; it must be inner, left, right or outer")
    if method not in METHODS:
        raise DataError(f"{where}: method={method!r}; it must be hash or sort")
    if not isinstance(right, DataSet) or right.data.comm is not left.data.comm:
        raise DataError(f"{where}: expects a data set of the same communicator to join with")
    ex = left.data.exchange
    dest = destination(where, None, ex.size)
    lplan, rplan = left._plan, right._plan

    def plan():
        lrun, rrun = lplan(), rplan()
        held: list[Any] = []

        def local():
            held[:] = [lrun(), rrun()]
            meta = _columns_meta(*held) if how == "inner" else None
            return (meta, (len(held[0]), len(held[1])) if meta else None)

        metas = ex.allgather(where, local)
        if metas[0][0] is not None and len({m for m, _ in metas}) == 1:
            lpart, rpart = held
            held.clear()
            if left.data.memory_budget is not None:  # sent in rounds, partitioned on disk past the budget
                from .npgrace import most_rows, spilling_columns_join

                joined = spilling_columns_join(left.data, where, lpart, rpart, most_rows(metas))
                return lambda: joined
            lrows = ex.alltoallv(where, lambda: _by_destination(lpart, ex.size))
            rrows = ex.alltoallv(where, lambda: _by_destination(rpart, ex.size))
            out = _columns_inner(lrows, rrows, ex.size)
            return lambda: out

        if left.data.memory_budget is not None:  # both sides cogrouped by a spilling combine
            lpart, rpart = held
            held.clear()
            from .grace import spilling_join

            return spilling_join(left.data, where, lpart, rpart, how, method, dest)

        def batches():
            lpart, rpart = held
            held.clear()
            lb = buckets_of(pairs(where, lpart), dest, ex.size)
            rb = buckets_of(pairs(where, rpart), dest, ex.size)
            return list(zip(lb, rb))

        got = ex.alltoall(where, batches)
        if method == "sort":
            return lambda: _sort_join(where, got, how)
        return lambda: _hash_join(got, how)

    return DataSet(left.data, plan, where.op)


# -- numpy columns ------------------------------------------------------------------------------
def _columns_meta(lpart: Any, rpart: Any) -> tuple | None:
    """What both sides' columns are, when an inner join of them can stay in numpy; else None."""
    from .columns import Columns

    if type(lpart) is not Columns or type(rpart) is not Columns:
        return None
    if lpart.keys.dtype.kind not in "iu" or rpart.keys.dtype != lpart.keys.dtype:
        return None
    return (lpart.keys.dtype.str, _field(lpart.values), _field(rpart.values))


def _field(values: Any) -> tuple:
    return (str(values.dtype), values.shape[1:])


def _by_destination(part: Any, size: int) -> tuple[Any, list[int]]:
    """Columns as one array of (key, value) records, grouped by worker (key % size), and the counts."""
    import numpy as np

    from .columns import destination_order

    rows = np.empty(len(part), dtype=[("key", part.keys.dtype), ("value", part.values.dtype, part.values.shape[1:])])
    order, counts = destination_order(part.keys, size)
    rows["key"] = part.keys if order is None else part.keys[order]
    rows["value"] = part.values if order is None else part.values[order]
    return rows, counts


def _columns_inner(lrows: Any, rrows: Any, stride: int = 1) -> Any:
    """The inner join of (key, value) record arrays: each left row with every right row of its key,
    left rows in arrival order, each one's matches in the right side's arrival order. stride: the
    spacing the right keys likely keep (a worker's keys are its rank modulo the workers)."""
    import numpy as np

    from .columns import Columns

    lkeys, lvalues, rvalues = lrows["key"], lrows["value"], rrows["value"]
    lpick_rpick = _table_lookup(rrows["key"], lkeys, stride)
    if lpick_rpick is not None:
        lpick, rpick = lpick_rpick
    else:
        order = np.argsort(rrows["key"], kind="stable")
        rkeys, rvalues = rrows["key"][order], rvalues[order]
        lo = np.searchsorted(rkeys, lkeys, side="left")
        if len(rkeys) < 2 or not np.any(rkeys[1:] == rkeys[:-1]):  # unique right keys: one match at most
            np.minimum(lo, max(0, len(rkeys) - 1), out=lo)
            lpick = rkeys[lo] == lkeys if len(rkeys) else np.zeros(len(lkeys), dtype=bool)
            rpick = lo[lpick]
        else:
            counts = np.searchsorted(rkeys, lkeys, side="right") - lo
            lpick = np.repeat(np.arange(len(lkeys)), counts)
            # the right row of each output row: its left row's first match, plus its place among them
            starts = np.repeat(lo, counts)
            within = np.arange(len(lpick)) - np.repeat(np.cumsum(counts) - counts, counts)
            rpick = starts + within
    values = np.empty(
        len(rpick), dtype=[("left", lvalues.dtype, lvalues.shape[1:]), ("right", rvalues.dtype, rvalues.shape[1:])]
    )
    values["left"], values["right"] = lvalues[lpick], rvalues[rpick]
    return Columns(lkeys[lpick], values)


def _table_lookup(rkeys: Any, lkeys: Any, stride: int) -> tuple[Any, Any] | None:
    """(a mask of the left rows that match, each one's right row) through a table indexed by
    (key - lowest) // stride, when the right keys are unique and fill at least a quarter of its
    slots (a gather per left row instead of a binary search); else None."""
    import numpy as np

    n = len(rkeys)
    if not n or not len(lkeys):
        return None
    low, high = int(rkeys.min()), int(rkeys.max())
    span = (high - low) // stride + 1
    if span > 4 * n + 1024:
        return None
    table = np.full(span, -1, dtype=np.intp)
    table[(rkeys - low) // stride] = np.arange(n)
    if np.count_nonzero(table >= 0) != n:  # equal keys (or keys off the stride) share a slot
        return None
    inside = (lkeys >= low) & (lkeys <= high)
    at = table[(np.where(inside, lkeys, low) - low) // stride]
    found = inside & (at >= 0)
    rpick = at[found]
    if stride > 1:  # a left key off the stride lands in its neighbour's slot
        same = rkeys[rpick] == lkeys[found]
        found[found] = same
        rpick = rpick[same]
    return found, rpick


# -- Python objects -----------------------------------------------------------------------------
def _hash_join(batches: list[tuple[list[Any], list[Any]]], how: str) -> Any:
    index: dict[Any, list[Any]] = {}
    for _, rb in batches:
        for k, w in rb:
            index.setdefault(k, []).append(w)
    keep_left, keep_right = how in ("left", "outer"), how in ("right", "outer")
    matched = set()
    for lb, _ in batches:
        for k, v in lb:
            ws = index.get(k)
            if ws is None:
                if keep_left:
                    yield k, (v, None)
                continue
            if keep_right:
                matched.add(k)
            for w in ws:
                yield k, (v, w)
    if keep_right:
        for k, ws in index.items():
            if k not in matched:
                for w in ws:
                    yield k, (None, w)


def _sort_join(where: Where, batches: list[tuple[list[Any], list[Any]]], how: str) -> Any:
    """A sort-merge join: both sides sorted by key (stably), then walked together, a key group at a
    time; the output comes in key order. The keys must be orderable."""
    first = _key
    try:
        lsorted = sorted(itertools.chain.from_iterable(lb for lb, _ in batches), key=first)
        rsorted = sorted(itertools.chain.from_iterable(rb for _, rb in batches), key=first)
    except TypeError as exc:
        raise DataError(f"{where}: a sort join needs keys that can be ordered ({exc}); use method='hash'") from None
    keep_left, keep_right = how in ("left", "outer"), how in ("right", "outer")
    lgroups = itertools.groupby(lsorted, key=first)
    rgroups = itertools.groupby(rsorted, key=first)
    lk, lg = next(lgroups, (None, None))
    rk, rg = next(rgroups, (None, None))
    while lg is not None or rg is not None:
        if rg is None or (lg is not None and lk < rk):
            if keep_left:
                for _, v in lg:
                    yield lk, (v, None)
            lk, lg = next(lgroups, (None, None))
        elif lg is None or rk < lk:
            if keep_right:
                for _, w in rg:
                    yield rk, (None, w)
            rk, rg = next(rgroups, (None, None))
        else:
            ws = [w for _, w in rg]
            for _, v in lg:
                for w in ws:
                    yield lk, (v, w)
            lk, lg = next(lgroups, (None, None))
            rk, rg = next(rgroups, (None, None))


def _key(kv: Any) -> Any:
    return kv[0]
