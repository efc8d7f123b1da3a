"""The stream operators that are not windows: each a node of the dataflow that turns this round's
chunks from its inputs into its own. A chunk is (partition, records): the global index of the source
partition the records came from (the watermark needs it, through shuffles too), and either a list of
records or a dict of equal-length numpy columns (a batches source's rows).

Local nodes (map, filter, ...) run their user functions here; a node with a collective (key_by's
shuffle, broadcast) runs its local side inside one of the batch package's guarded collectives
(t2mpi/data/exchange.py), which carries a failure from any worker to every worker.
"""

from __future__ import annotations

import operator

from ..data.errors import DataError
from ..data.keyed import destination

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..data.errors import Where


class Node:
    """One operator. inputs: the nodes it reads; kind: "records", "pairs" ((key, record) lists after
    a key_by) or "columns" (dicts of numpy columns)."""

    collective = False

    def __init__(self, where: Where, inputs: list[Node], kind: str):
        self.where = where
        self.inputs = inputs
        self.kind = kind
        self.out: list[tuple[int, Any]] = []
        self.index = -1  # its place in the plan (set by the engine)
        self.key_column: str | None = None

    def sources(self) -> list[Any]:
        """The sources upstream of this node, each once, in plan order."""
        found: dict[int, Any] = {}
        for node in self.inputs:
            for s in node.sources():
                found[id(s)] = s
        return list(found.values())

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        raise NotImplementedError

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except DataError:
            raise
        except Exception as exc:
            raise self.where.failed(exc) from exc


class SourceNode(Node):
    def __init__(self, where: Where, source: Any, kind: str):
        super().__init__(where, [], kind)
        self.source = source

    def sources(self) -> list[Any]:
        return [self.source]

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        return self.source.read(engine.batch)


class Narrow(Node):
    """map / flat_map / filter: on records one by one; on columns, once per batch (fn(batch) ->
    batch for map, -> a boolean row mask for filter)."""

    def __init__(self, where: Where, parent: Node, op: str, fn: Callable[[Any], Any]):
        kind = "records" if parent.kind == "pairs" and op != "filter" else parent.kind
        super().__init__(where, [parent], kind)
        self.op, self.fn = op, fn

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        out = []
        for p, records in chunks:
            got = self._columns(records) if type(records) is dict else self._records(records)
            if got is not None and (type(got) is dict or got):
                out.append((p, got))
        return out

    def _records(self, records: list[Any]) -> list[Any]:
        fn = self.fn
        try:
            if self.op == "map":
                return list(map(fn, records))
            if self.op == "filter":
                return [r for r in records if fn(r)]
            return [y for r in records for y in fn(r)]
        except DataError:
            raise
        except Exception as exc:
            raise self.where.failed(exc) from exc

    def _columns(self, batch: dict[str, Any]) -> Any:
        got = self.call(self.fn, batch)
        if self.op == "filter":
            return {name: col[got] for name, col in batch.items()}
        if self.op == "flat_map":
            raise DataError(f"{self.where}: flat_map is for records; on numpy batches use map(batch -> batch)")
        if not isinstance(got, dict):
            raise DataError(
                f"{self.where}: map on numpy batches must return a dict of columns, got {type(got).__name__}"
            )
        return got


class Union(Node):
    def __init__(self, where: Where, parents: list[Node]):
        kinds = {p.kind for p in parents}
        if len(kinds) != 1:
            raise DataError(f"{where}: cannot union streams of {' and '.join(sorted(kinds))}")
        super().__init__(where, parents, kinds.pop())
        self.key_column = parents[0].key_column

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        return chunks


class Broadcast(Node):
    """Every worker gets every record (one allgather of the round's chunks)."""

    collective = True

    def __init__(self, where: Where, parent: Node):
        super().__init__(where, [parent], parent.kind)

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        got = engine.exchange.allgather(self.where, engine.guarded(lambda: chunks))
        return [c for part in got for c in part]


class KeyBy(Node):
    """A hash shuffle: each record goes to the worker of its key (the batch package's portable hash,
    so a key lands where ctx.data's keyed operations put it), as (key, record) pairs; numpy batches
    keyed by an integer column go by key % workers, as columns. One guarded alltoall per round."""

    collective = True

    def __init__(self, where: Where, parent: Node, key: Any, partitioner: Callable[[Any], int] | None, size: int):
        columns = parent.kind == "columns"
        if columns and not isinstance(key, str):
            raise DataError(f"{where}: on numpy batches key_by takes a column name, got {key!r}")
        if not columns and not (callable(key) or isinstance(key, str)):
            raise DataError(f"{where}: key_by expects a function or a field name, got {key!r}")
        super().__init__(where, [parent], "columns" if columns else "pairs")
        self.key = key
        self.key_column = key if columns else None
        self.dest = destination(where, partitioner, size)
        self.hashed = partitioner is None
        self.key_function = _field(key) if isinstance(key, str) else key
        self.size = size

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        got = engine.exchange.alltoall(self.where, engine.guarded(lambda: self._split(chunks)), keep_own=True)
        return [c for part in got for c in part]

    def _split(self, chunks: list[tuple[int, Any]]) -> list[list[tuple[int, Any]]]:
        out: list[list[tuple[int, Any]]] = [[] for _ in range(self.size)]
        for p, records in chunks:
            if type(records) is dict:
                self._split_columns(p, records, out)
                continue
            try:
                keys = list(map(self.key_function, records))
            except DataError:
                raise
            except Exception as exc:
                raise self.where.failed(exc) from exc
            self._split_pairs(p, keys, records, out)
        return out

    def _split_pairs(self, p: int, keys: list[Any], records: list[Any], out: list[list[tuple[int, Any]]]) -> None:
        """(key, record) pairs to their workers' lists: the destinations in one pass (an int key is
        its own portable hash), then the pairs grouped by destination, stable, in C."""
        import numpy as np

        pairs = list(zip(keys, records))
        size, n = self.size, len(pairs)
        if self.hashed and {type(k) for k in keys} == {int}:
            d = None if size == 1 else np.fromiter(map(hash, keys), dtype=np.int64, count=n) % size
        else:  # the portable hash, or the user's partitioner (checked)
            d = np.fromiter(map(self.dest, keys), dtype=np.int64, count=n)
        if size == 1 or n < 2:
            if n:
                out[0 if d is None else int(d[0])].append((p, pairs))
            return
        order = np.argsort(d, kind="stable").tolist()
        grouped = operator.itemgetter(*order)(pairs)
        start = 0
        for dest, count in enumerate(np.bincount(d, minlength=size).tolist()):
            if count:
                out[dest].append((p, list(grouped[start : start + count])))
            start += count

    def _split_columns(self, p: int, batch: dict[str, Any], out: list[list[tuple[int, Any]]]) -> None:
        from ..data.columns import destination_order

        keys = batch.get(self.key)
        if keys is None:
            raise DataError(f"{self.where}: the batch has no column {self.key!r} (it has {sorted(batch)})")
        if keys.dtype.kind not in "iu":
            raise DataError(
                f"{self.where}: key column {self.key!r} is {keys.dtype}; numpy batches are keyed by integers"
            )
        order, counts = destination_order(keys, self.size)
        start = 0
        for d, n in enumerate(counts):
            if n:
                rows = slice(start, start + n) if order is None else order[start : start + n]
                out[d].append((p, {name: col[rows] for name, col in batch.items()}))
            start += n


def _field(name: str) -> Callable[[Any], Any]:
    return lambda r: r[name]


class Partition(KeyBy):
    """partition(f): f(record) -> a worker's index; the records travel as they are (not keyed)."""

    def __init__(self, where: Where, parent: Node, fn: Callable[[Any], int], size: int):
        super().__init__(where, parent, lambda r: r, fn, size)
        self.kind = parent.kind

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        return [(p, [r for _, r in pairs]) for p, pairs in super().step(chunks, engine)]


class StatefulMap(Node):
    """Keyed running state: f(state, record) -> (state, out), with state = init() for a new key;
    out goes on as (key, out). A state of None forgets the key."""

    def __init__(self, where: Where, parent: Node, init: Callable[[], Any], fn: Callable[[Any, Any], Any]):
        if parent.kind != "pairs":
            raise DataError(f"{where}: stateful_map needs a keyed stream of records (key_by(fn) first)")
        super().__init__(where, [parent], "pairs")
        self.init, self.fn = init, fn
        self.states: dict[Any, Any] = {}

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        out = []
        states, init, fn = self.states, self.init, self.fn
        for p, pairs in chunks:
            got = []
            try:
                for k, r in pairs:
                    s = states[k] if k in states else init()
                    s, o = fn(s, r)
                    if s is None:
                        states.pop(k, None)
                    else:
                        states[k] = s
                    got.append((k, o))
            except DataError:
                raise
            except Exception as exc:
                raise self.where.failed(exc) from exc
            out.append((p, got))
        return out

    def state(self) -> Any:
        return self.states

    def restore(self, state: Any) -> None:
        self.states = state


_NONE = object()


def running_reduce(fn: Callable[[Any, Any], Any]) -> tuple[Callable[[], Any], Callable[[Any, Any], Any]]:
    """reduce(f) as a stateful_map: each record's output is its key's running value."""

    def step(acc: Any, r: Any) -> tuple[Any, Any]:
        acc = r if acc is _NONE else fn(acc, r)
        return acc, acc

    return (lambda: _NONE), step
