"""Keyed and repartitioning operations. One mechanism: a local combine (or none), a destination per
element, one exchange of one batch per destination, and a lazy merge where the data lands."""

from __future__ import annotations

import operator
import zlib

from .errors import DataError
from .narrow import _short, pairs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .dataset import DataSet
    from .errors import Where

_MISSING = object()
_MASK = (1 << 61) - 1


def portable_hash(key: Any) -> int:
    """A hash that is the same in every process (str's hash() is salted per process)."""
    t = type(key)
    if t is str:
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if t is int or t is float or t is bool or key is None:
        return hash(key)
    if t is bytes:
        return zlib.crc32(key)
    if t is tuple:
        h = 0x345678
        for item in key:
            h = ((h * 1000003) ^ portable_hash(item)) & _MASK
        return h
    if t is frozenset:
        return sum(portable_hash(item) for item in key) & _MASK
    return hash(key)  # other types must hash alike in every process (or set PYTHONHASHSEED)


def unhashable(where: Where, key: Any) -> DataError:
    return DataError(
        f"{where}: a key of type {type(key).__name__} is not hashable ({_short(key)}); "
        f"use a hashable key (e.g. a tuple instead of a list)"
    )


def new_list(v: Any) -> list[Any]:
    return [v]


def append(c: list[Any], v: Any) -> list[Any]:
    c.append(v)
    return c


def extend(c: list[Any], d: list[Any]) -> list[Any]:
    c.extend(d)
    return c


def one(v: Any) -> int:
    return 1


def plus_one(c: int, v: Any) -> int:
    return c + 1


def first(a: Any, b: Any) -> Any:
    return a


def destination(where: Where, partitioner: Callable[[Any], int] | None, size: int) -> Callable[[Any], int]:
    """key -> worker: partitioner(key), checked to be a worker's index; or a portable hash."""
    if partitioner is None:

        def by_hash(key: Any) -> int:
            try:
                return portable_hash(key) % size
            except TypeError:
                raise unhashable(where, key) from None

        return by_hash

    def checked(key: Any) -> int:
        try:
            d = partitioner(key)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        if type(d) is not int or not 0 <= d < size:
            raise DataError(
                f"{where}: the partitioner gave {d!r} for {_short(key)}; "
                f"it must be an int in 0..{size - 1} (one per worker)"
            )
        return d

    return checked


def combine_local(
    where: Where, part: Any, create: Callable[[Any], Any] | None, merge_value: Callable[[Any, Any], Any]
) -> dict[Any, Any]:
    if create is None and merge_value is operator.add:
        return _sum_local(where, part)
    combined: dict[Any, Any] = {}
    get = combined.get
    for k, v in pairs(where, part):
        try:
            c = get(k, _MISSING)
        except TypeError:
            raise unhashable(where, k) from None
        try:
            combined[k] = (v if create is None else create(v)) if c is _MISSING else merge_value(c, v)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
    return combined


def _sum_local(where: Where, part: Any) -> dict[Any, Any]:
    """combine_local for reduce_by_key(operator.add): the same, with the pair check and the add inline."""
    combined: dict[Any, Any] = {}
    get = combined.get
    kv = None
    try:
        for kv in part:
            if type(kv) is not tuple or len(kv) != 2:
                next(pairs(where, (kv,)))  # raises unless kv is a (key, value) list
            k, v = kv
            c = get(k, _MISSING)
            combined[k] = v if c is _MISSING else c + v
    except DataError:
        raise
    except TypeError as exc:
        if kv is not None and not _hashable(kv[0]):
            raise unhashable(where, kv[0]) from None
        raise where.failed(exc) from exc
    return combined


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def count_local(where: Where, part: Any) -> dict[Any, int]:
    """Each element's count in the partition (collections.Counter: a loop in C)."""
    from collections import Counter

    try:
        return Counter(part)
    except DataError:
        raise
    except TypeError as exc:
        raise DataError(f"{where}: the elements must be hashable to be counted ({exc})") from None


def buckets_of(items: Any, dest: Callable[[Any], int], size: int) -> list[list[Any]]:
    """(key, value) items in one list per destination worker."""
    if size == 1:
        return [list(items)]
    out: list[list[Any]] = [[] for _ in range(size)]
    for kv in items:
        out[dest(kv[0])].append(kv)
    return out


def combine_by_key(
    ds: DataSet,
    where: Where,
    create: Callable[[Any], Any] | None,
    merge_value: Callable[[Any, Any], Any],
    merge_combiners: Callable[[Any, Any], Any],
    partitioner: Callable[[Any], int] | None,
    combine: Callable[[Where, Any], dict[Any, Any]] | None = None,
) -> DataSet:
    """combine(where, part) -> {key: combiner}, when given, replaces the local create/merge_value pass."""
    from .dataset import DataSet

    ex = ds.data.exchange
    dest = destination(where, partitioner, ex.size)
    parent = ds._plan

    def plan():
        from . import columns

        run = parent()
        held: list[Any] = []

        def local():
            part = run()
            if combine is not None:
                return ("objects", buckets_of(combine(where, part).items(), dest, ex.size))
            ufunc = columns.vectorisable(part, create, merge_value, merge_combiners)
            if ufunc is not None:
                keys, values = columns.reduce_columns(part.keys, part.values, ufunc)
                held.append(columns.Columns(keys, values))
                return ("columns", *columns.by_destination(keys, values, ex.size))
            return ("objects", buckets_of(combine_local(where, part, create, merge_value).items(), dest, ex.size))

        got = ex.shuffle(where, local, lambda: buckets_of(iter(held[0]), dest, ex.size))
        if got[0] == "columns":
            ufunc = columns.ufunc_of(merge_combiners)
            return lambda: columns.Columns(*columns.reduce_columns(got[1], got[2], ufunc))
        return lambda: _merged(where, got[1], merge_combiners)

    return DataSet(ds.data, plan, where.op)


def _merged(where: Where, batches: list[list[Any]], merge: Callable[[Any, Any], Any]) -> Any:
    out: dict[Any, Any] = {}
    get = out.get
    if merge is operator.add:
        try:
            for batch in batches:
                for k, c in batch:
                    old = get(k, _MISSING)
                    out[k] = c if old is _MISSING else old + c
        except TypeError as exc:
            raise where.failed(exc) from exc
        return iter(out.items())
    for batch in batches:
        for k, c in batch:
            old = get(k, _MISSING)
            if old is _MISSING:
                out[k] = c
                continue
            try:
                out[k] = merge(old, c)
            except DataError:
                raise
            except Exception as exc:
                raise where.failed(exc) from exc
    return iter(out.items())


def partition_by_key(ds: DataSet, where: Where, partitioner: Callable[[Any], int] | None) -> DataSet:
    from .dataset import DataSet

    ex = ds.data.exchange
    dest = destination(where, partitioner, ex.size)
    parent = ds._plan

    def plan():
        run = parent()
        got = ex.alltoall(where, lambda: buckets_of(pairs(where, run()), dest, ex.size))
        return lambda: (kv for batch in got for kv in batch)

    return DataSet(ds.data, plan, where.op)


def repartition(ds: DataSet, n: Any, where: Where) -> DataSet:
    from .dataset import DataSet, concat, is_block, materialize

    ex = ds.data.exchange
    parent = ds._plan
    if callable(n):
        dest = destination(where, n, ex.size)

        def by_function():
            run = parent()

            def local():
                out: list[list[Any]] = [[] for _ in range(ex.size)]
                for x in run():
                    out[dest(x)].append(x)
                return out

            got = ex.alltoall(where, local)
            return lambda: (x for batch in got for x in batch)

        return DataSet(ds.data, by_function, where.op)
    n = ex.size if n is None else n
    if type(n) is not int or not 1 <= n <= ex.size:
        raise DataError(f"{where}: n must be a number of workers in 1..{ex.size}, or a partitioner; got {n!r}")

    def rebalance():
        run = parent()
        held = []
        metas = ex.allgather(where, lambda: (held.append(materialize(run())), (len(held[0]), is_block(held[0])))[1])
        part, sizes = held[0], [m[0] for m in metas]
        total, before = sum(sizes), sum(sizes[: ex.rank])
        # element with global index g goes to worker g * n // total: contiguous, order kept
        cuts = [0] + [min(len(part), max(0, -(-(d * total) // n) - before)) for d in range(1, n)] + [len(part)]
        counts = [cuts[d + 1] - cuts[d] for d in range(n)] + [0] * (ex.size - n)
        if all(m[1] for m in metas):
            block = ex.alltoallv(where, lambda: (part, counts))
            return lambda: block
        got = ex.alltoall(where, lambda: [list(part[cuts[d] : cuts[d + 1]]) if d < n else [] for d in range(ex.size)])
        held_out = concat(got)
        return lambda: held_out

    return DataSet(ds.data, rebalance, where.op)
