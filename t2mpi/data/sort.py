"""The global sort: a sample-based range partition, one exchange, then a local sort where the data
lands (Twister2's sort: a range partition plus a sorted keyed gather).

Three kinds of partitions sort in three ways:
- numbers: a 1-D numeric block (no key), or a structured block sorted by a numeric field, in numpy;
- byte records: a block of fixed-size records (dtype S or V, or a structured dtype whose fields are
  all bytes) with no key, or sorted by a bytes field: ordered bytewise unsigned, by 8-byte integer
  words (one integer sort, more words only where records tie), moved as raw rows by one Alltoallv;
- anything else: Python objects, sorted with sorted(key=), moved as pickled batches.
Every sort is stable: elements with equal keys keep their input order, ascending or not.
"""

from __future__ import annotations

import bisect
import itertools

from . import npruns, runs
from .errors import DataError
from .spill import spill_counter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .dataset import DataSet
    from .errors import Where

SAMPLES_PER_WORKER = 64


# -- the keys of a numpy block ------------------------------------------------------------------
def block_keys(where: Where, part: Any, key: Any) -> tuple[str, Any] | None:
    """("numbers", 1-D array) or ("bytes", (n, width) uint8 array): what a block sorts by; None
    when the block sorts as Python objects. key is None (the elements themselves) or a field name."""
    dtype = part.dtype
    if isinstance(key, str):
        if dtype.names is None or key not in dtype.names:
            fields = ", ".join(dtype.names or ()) or "none"
            raise DataError(
                f"{where}: key={key!r} names a field, but the partition's records have no such field "
                f"(fields: {fields}); give a function instead"
            )
        column = part[key]
        if column.ndim != 1:
            return None
        if column.dtype.kind in "iufb":
            return ("numbers", column)
        if column.dtype.kind in "SV":
            return ("bytes", _as_rows(column))
        return None
    if key is not None or part.ndim != 1:
        return None
    if dtype.names is None:
        if dtype.kind in "iufb":
            return ("numbers", part)
        if dtype.kind in "SV":
            return ("bytes", _as_rows(part))
        return None
    if _bytes_only(dtype):
        return ("bytes", _as_rows(part))
    return None


def _bytes_only(dtype: Any) -> bool:
    """A structured dtype whose raw bytes order like numpy orders its records: bytes fields only,
    packed, in offset order."""
    offset = 0
    for name in dtype.names:
        field, at = dtype.fields[name][:2]
        if field.kind not in "SV" or field.names is not None or field.shape or at != offset:
            return False
        offset += field.itemsize
    return offset == dtype.itemsize


def _as_rows(column: Any) -> Any:
    import numpy as np

    column = np.ascontiguousarray(column)
    width = column.dtype.itemsize
    return column.view(np.uint8).reshape(len(column), width)


def _word(rows: Any, i: int) -> Any:
    """Bytes [8i, 8i+8) of each row as one big-endian unsigned integer (zero-padded past the end)."""
    import numpy as np

    piece = rows[:, 8 * i : 8 * i + 8]
    if piece.shape[1] < 8:
        padded = np.zeros((len(rows), 8), dtype=np.uint8)
        padded[:, : piece.shape[1]] = piece
        piece = padded
    return np.ascontiguousarray(piece).view(">u8").ravel()


def byte_order(rows: Any) -> Any:
    """The stable permutation that sorts (n, width) uint8 rows bytewise: an integer sort of the
    first 8 bytes, and a lexicographic sort on more words only while sorted neighbours tie."""
    import numpy as np

    words = [_word(rows, 0)]
    order = np.argsort(words[0], kind="stable")
    width = rows.shape[1]
    while 8 * len(words) < width:
        ranked = [w[order] for w in words]
        tied = np.ones(len(order) - 1 if len(order) else 0, dtype=bool)
        for w in ranked:
            tied &= w[1:] == w[:-1]
        if not tied.any():
            break
        words.append(_word(rows, len(words)))
        order = np.lexsort(tuple(reversed(words)))
    return order


def key_order(kind: str, keys: Any) -> Any:
    import numpy as np

    return np.argsort(keys, kind="stable") if kind == "numbers" else byte_order(keys)


def searchable(kind: str, keys: Any) -> Any:
    """Sorted keys in a form np.searchsorted takes: numbers as they are, byte rows as one S column."""
    if kind == "numbers":
        return keys
    return keys.view(f"S{keys.shape[1]}").ravel() if keys.shape[1] else keys[:, :0].ravel()


def stable_sorted(block: Any, kind_keys: Callable[[Any], tuple[str, Any]], ascending: bool) -> Any:
    """block sorted by its keys, equal keys in input order, ascending or descending."""
    if ascending:
        kind, keys = kind_keys(block)
        return block[key_order(kind, keys)]
    flipped = block[::-1]
    kind, keys = kind_keys(flipped)
    return flipped[key_order(kind, keys)][::-1]


# -- splitters ----------------------------------------------------------------------------------
def sample(sorted_keys: Any, size: int) -> list[Any]:
    return runs.evenly(sorted_keys, SAMPLES_PER_WORKER * size)


def splitters(samples: list[list[Any]], size: int) -> list[Any]:
    merged = sorted(s for run in samples for s in run)
    if not merged:
        return []
    return [merged[len(merged) * d // size] for d in range(1, size)]


def _cuts(positions: list[int], total: int, size: int) -> list[int]:
    cuts = [0] + [int(p) for p in positions]
    return cuts + [total] * (size + 1 - len(cuts))  # no samples anywhere: nothing to cut


# -- the operation ------------------------------------------------------------------------------
def sort_by(ds: DataSet, key: Any, ascending: bool, where: Where) -> DataSet:
    from .dataset import DataSet, is_block, materialize

    if key is not None and not callable(key) and not isinstance(key, str):
        raise DataError(f"{where}: key must be a function or a field name, got {type(key).__name__}")
    ex = ds.data.exchange
    parent = ds._plan
    budget = ds.data.memory_budget

    def kind_keys(block: Any) -> tuple[str, Any]:
        return block_keys(where, block, key)

    def plan():
        run = parent()
        held: list[Any] = []
        files = runs.RunFiles(ds.data.scratch_dir, spill_counter(ds.data, ex)) if budget is not None else None

        def local():
            part = run()
            if files is not None and not is_block(part) and not isinstance(key, str):  # runs go to disk
                stream, picked = runs.local_stream(
                    where, part, key, ascending, budget, files, SAMPLES_PER_WORKER * ex.size
                )
                held.append(stream)
                return ("objects", None, None, picked)
            part = materialize(part)
            found = block_keys(where, part, key) if is_block(part) else None
            if found is not None and files is not None:  # sent in rounds, sorted where it lands
                kind = found[0]
                held[:] = [part]
                picked = npruns.samples(part, kind_keys, SAMPLES_PER_WORKER * ex.size)
                picked = picked if kind == "numbers" else [r.tobytes() for r in picked]
                return ("block", kind, part.dtype.str, picked, len(part))
            if found is not None:
                kind, keys = found
                order = key_order(kind, keys)
                ordered = keys[order]
                held[:] = [part[order], ordered]
                picked = sample(ordered, ex.size)
                return ("block", kind, part.dtype.str, picked if kind == "numbers" else [r.tobytes() for r in picked])
            if isinstance(key, str):
                raise DataError(f"{where}: key={key!r} names a field; only numpy record blocks have fields")
            elements = part.tolist() if is_block(part) and part.ndim == 1 else part
            held.append(runs.sorted_run(where, elements, key, True))
            return ("objects", None, None, sample([key(x) for x in held[0]] if key else held[0], ex.size))

        try:
            metas = ex.allgather(where, local)
            try:
                cut_at = splitters([m[3] for m in metas], ex.size)
            except TypeError as exc:
                raise where.unorderable(exc) from exc
        except BaseException:
            if files is not None:
                files.discard()
            raise
        if len({m[:3] for m in metas}) == 1 and metas[0][0] == "block":
            if files is None:
                return _blocks(ex, where, held, metas[0][1], cut_at, kind_keys, ascending)
            per = npruns.round_rows(budget, held[0].dtype.itemsize)
            rounds = max(-(-m[4] // per) for m in metas)
            block = held.pop()
            out = npruns.exchange_sorted(
                ex, where, block, kind_keys, cut_at, ascending, budget, rounds, ds.data.scratch_dir, files.on_spilled
            )
            return lambda: out
        objects = metas[ex.rank][0] == "objects"
        if files is None:
            return _objects(ex, where, held[0] if objects else held[0].tolist(), key, cut_at, ascending)
        stream = held.pop() if objects else runs.sorted_run(where, held.pop(0).tolist(), key, ascending)
        held.clear()
        return runs.exchange_sorted(ex, where, stream, key, cut_at, ascending, budget, files)

    return DataSet(ds.data, plan, where.op)


def _blocks(
    ex: Any, where: Where, held: list[Any], kind: str, cut_at: list[Any], kind_keys: Any, ascending: bool
) -> Any:
    """Sorted blocks: cut by the splitters, one Alltoallv of raw rows, a stable sort where they land."""
    import numpy as np

    block, keys = held
    held.clear()
    keys = searchable(kind, keys)
    probe = np.array(cut_at, dtype=keys.dtype) if kind == "bytes" else np.asarray(cut_at)
    cuts = _cuts(list(np.searchsorted(keys, probe, side="right")), len(block), ex.size)
    del keys
    counts = np.diff(cuts).tolist()
    if not ascending:  # worker d takes the d-th range from the top; each range stays in input order
        block = np.concatenate([block[cuts[d] : cuts[d + 1]] for d in reversed(range(ex.size))])
        counts = counts[::-1]
    sending = [(block, counts)]
    del block  # held only by `sending` until it is sent
    got = ex.alltoallv(where, sending.pop)
    out = stable_sorted(got, kind_keys, ascending)
    return lambda: out


def _objects(ex: Any, where: Where, items: list[Any], key: Any, cut_at: list[Any], ascending: bool) -> Any:
    """Sorted Python objects: cut by the splitters (bisect on the key), one exchange of pickled
    batches, then sorted() where they land: its merge of the arriving sorted runs is near-linear."""
    positions = [bisect.bisect_right(items, s, key=key) for s in cut_at]
    cuts = _cuts(positions, len(items), ex.size)
    batches = [items[cuts[d] : cuts[d + 1]] for d in range(ex.size)]
    if not ascending:
        batches = batches[::-1]
    got = ex.alltoall(where, lambda: batches)
    arrived = list(itertools.chain.from_iterable(got))
    if ascending:
        out = sorted(arrived, key=key)
    else:  # the runs arrive top range first; reverse=True keeps equal keys in input order
        out = sorted(arrived, key=key, reverse=True)
    return lambda: iter(out)


def sorted_groups(ds: DataSet, where: Where) -> DataSet:
    """group_by_key(sort=True): local groups, range-partitioned by key, merged in key order."""
    from .dataset import DataSet
    from .keyed import append, combine_local, new_list

    parent = ds._plan

    def local_groups():
        run = parent()
        return lambda: iter(combine_local(where, run(), new_list, append).items())

    by_key = sort_by(DataSet(ds.data, local_groups, where.op), _first, True, where)
    sorted_plan = by_key._plan

    def plan():
        run = sorted_plan()

        def merged():
            for k, grouped in itertools.groupby(run(), key=_first):
                values: list[Any] = []
                for _, vs in grouped:
                    values.extend(vs)
                yield k, values

        return merged

    return DataSet(ds.data, plan, where.op)


def _first(kx: Any) -> Any:
    return kx[0]
