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
    """{key: combiner} of a partition's (key, value) pairs."""
    combined: dict[Any, Any] = {}
    combine_step(where, create, merge_value)(combined, part)
    return combined


def combine_step(
    where: Where, create: Callable[[Any], Any] | None, merge_value: Callable[[Any, Any], Any]
) -> Callable[[dict[Any, Any], Any], None]:
    """step(combined, pairs): the pairs folded into `combined` (reduce_by_key(add) with the add inline)."""
    if create is None and merge_value is operator.add:
        return lambda combined, part: _sum_into(where, combined, part)

    def step(combined: dict[Any, Any], part: Any) -> None:
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

    return step


def _sum_into(where: Where, combined: dict[Any, Any], part: Any) -> None:
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


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def count_step(where: Where) -> Callable[[dict[Any, Any], Any], None]:
    """step(combined, elements): each element's count added to `combined` (Counter.update: a loop
    in C, into the dict as it is)."""
    from collections import Counter

    def step(combined: dict[Any, Any], part: Any) -> None:
        if isinstance(part, dict):  # a partition that is a dict holds its keys (update would add its values)
            part = iter(part)
        try:
            Counter.update(combined, part)
        except DataError:
            raise
        except TypeError as exc:
            raise DataError(f"{where}: the elements must be hashable to be counted ({exc})") from None

    return step


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
    counting: bool = False,
) -> DataSet:
    """counting=True: the elements themselves are counted (count_by_value), not (key, value) pairs.
    With a memory budget on the Data, the object path sends in rounds and spills (spill.py)."""
    from .dataset import DataSet

    ex = ds.data.exchange
    dest = destination(where, partitioner, ex.size)
    parent = ds._plan
    step = count_step(where) if counting else combine_step(where, create, merge_value)
    budget = ds.data.memory_budget

    def plan():
        from . import columns

        run = parent()
        held: list[Any] = []
        if budget is not None and not counting:  # Columns reduced in numpy, in rounds, spilling past it
            from .npgrace import columns_reduce

            reduced = columns_reduce(ds.data, where, run, create, merge_value, merge_combiners, held)
            if reduced is not None:
                return lambda: reduced
            made = held.pop()

            def run():  # the partition, as columns_reduce's allgather made it
                return made

        def local():
            part = run()
            ufunc = None if counting else columns.vectorisable(part, create, merge_value, merge_combiners)
            if ufunc is not None:
                keys, values = columns.reduce_columns(part.keys, part.values, ufunc)
                held.append(columns.Columns(keys, values))
                return ("columns", *columns.by_destination(keys, values, ex.size))
            if budget is None:
                combined: dict[Any, Any] = {}
                step(combined, part)
                return ("objects", buckets_of(combined.items(), dest, ex.size))
            from .spill import Rounds

            held.append(Rounds(where, part, step, budget))
            return ("objects", _round(held[0], dest, ex.size))

        def to_objects():
            batches = buckets_of(iter(held[0]), dest, ex.size)
            return batches if budget is None else [(False, b) for b in batches]

        got = ex.shuffle(where, local, to_objects)
        if got[0] == "columns":
            ufunc = columns.ufunc_of(merge_combiners)
            return lambda: columns.Columns(*columns.reduce_columns(got[1], got[2], ufunc))
        if budget is None:
            return lambda: _merged(where, got[1], merge_combiners)
        return _spilled(ds.data, where, got[1], held, dest, merge_combiners)

    return DataSet(ds.data, plan, where.op)


def _round(rounds: Any, dest: Callable[[Any], int], size: int) -> list[tuple[bool, list[Any]]]:
    """The next round of a bounded combine: (more to come, batch) for each destination."""
    if not rounds.more:
        return [(False, [])] * size
    combined = rounds.next_round()
    return [(rounds.more, b) for b in buckets_of(combined.items(), dest, size)]


def _spilled(data: Any, where: Where, first: list[Any], held: list[Any], dest: Any, merge: Any) -> Any:
    """The receiving side under a memory budget: rounds until no worker has more, merged and
    spilled by a Spiller; the partition is its merged items, read back one spill file at a time."""
    from .spill import Spiller, spill_counter

    ex = data.exchange
    spiller = Spiller(where, merge, data.memory_budget, data.scratch_dir, portable_hash, spill_counter(data, ex))
    got = first
    rounds = held[0] if held and hasattr(held[0], "more") else None
    try:
        while True:
            for _more, batch in got:
                spiller.add(batch)
            if not any(more for more, _ in got):
                break
            got = ex.alltoall(where, lambda: _round(rounds, dest, ex.size) if rounds else [(False, [])] * ex.size)
        if spiller.folder is not None:
            spiller.spill()  # the rest, now: within this operation, for its figures
    except BaseException:
        spiller.discard()
        raise
    held.clear()
    return spiller.items


def _merged(where: Where, batches: list[list[Any]], merge: Callable[[Any, Any], Any]) -> Any:
    out: dict[Any, Any] = {}
    for batch in batches:
        merge_into(where, out, batch, merge)
    return iter(out.items())


def merge_into(where: Where, held: dict[Any, Any], batch: Any, merge: Callable[[Any, Any], Any]) -> None:
    """(key, combiner) pairs folded into `held` with merge (operator.add inline)."""
    get = held.get
    if merge is operator.add:
        try:
            for k, c in batch:
                old = get(k, _MISSING)
                held[k] = c if old is _MISSING else old + c
        except TypeError as exc:
            raise where.failed(exc) from exc
        return
    for k, c in batch:
        old = get(k, _MISSING)
        if old is _MISSING:
            held[k] = c
            continue
        try:
            held[k] = merge(old, c)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc


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
