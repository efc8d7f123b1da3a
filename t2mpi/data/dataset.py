"""DataSet: a lazy, partitioned data set (Twister2's TSet). One partition per worker.

A data set is a plan: `_plan()` runs every collective its lineage needs (in the same order on every
worker) and returns a thunk; the thunk runs the user functions of the narrow stages, lazily, and gives
the partition (an iterator, or a numpy block). Keeping collectives out of the thunk means a worker whose
user code fails can still enter the next collective carrying its failure, instead of leaving the others
waiting. Keyed operations live in keyed.py; both sides meet in this class.
"""

from __future__ import annotations

import functools
import itertools
import operator

from . import join as joining
from . import keyed, known, narrow
from . import sort as sorting
from .errors import DataError, call_site

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .api import Data

_MPI_OPS = {operator.add: "SUM", operator.mul: "PROD", max: "MAX", min: "MIN"}


def _mpi_op(fn: Any) -> str | None:
    import numpy as np

    return _MPI_OPS.get(fn) or {np.add: "SUM", np.multiply: "PROD", np.maximum: "MAX", np.minimum: "MIN"}.get(fn)


def is_block(part: Any) -> bool:
    return type(part).__module__ == "numpy" and hasattr(part, "ndim") and part.ndim >= 1


def materialize(part: Any) -> Any:
    """A partition held whole: a numpy block as it is, anything else as a list."""
    return part if is_block(part) or type(part) is list else list(part)


def concat(parts: list[Any]) -> Any:
    """Partitions joined in worker order: one array when all are blocks, else one list."""
    if parts and all(is_block(p) for p in parts):
        import numpy as np

        return np.concatenate(parts)
    return list(itertools.chain.from_iterable(parts))


class DataSet:
    """A partitioned data set. Narrow operations return a new DataSet at no cost; wide ones return a
    DataSet whose exchange runs when an action needs it; actions run everything and return values."""

    __slots__ = ("data", "_plan", "name", "_cached", "_mapped")

    def __init__(self, data: Data, plan: Callable[[], Callable[[], Any]], name: str):
        self.data = data
        self._plan = plan
        self.name = name
        self._cached = None
        self._mapped: tuple[Callable[[Any], Any], DataSet] | None = None  # map(fn) of a data set

    def __repr__(self) -> str:
        return f"<DataSet {self.name} on worker {self.data.rank} of {self.data.size}>"

    def _where(self, op: str, site: str):
        return self.data.where(op, site)

    def partition(self) -> Any:
        """This worker's partition (an iterator or a numpy block); runs the plan's exchanges."""
        return self._plan()()

    def __iter__(self):
        return iter(self.partition())

    # -- narrow operations: one generator pass per partition ------------------------------------
    def _narrow(self, op: str, stage: Callable[..., Any], fn: Callable[..., Any]) -> DataSet:
        if not callable(fn):
            raise DataError(f"{op}: expects a function, got {type(fn).__name__}")
        where = self._where(op, call_site())
        parent = self._plan

        def plan():
            run = parent()
            return lambda: stage(where, fn, run())

        return DataSet(self.data, plan, op)

    def map(self, fn: Callable[[Any], Any]) -> DataSet:
        mapped = self._narrow("map", narrow.map_stage, fn)
        mapped._mapped = (fn, self)  # a keyed operation after it may run fn its own way (known.py)
        return mapped

    def flat_map(self, fn: Callable[[Any], Iterable[Any]]) -> DataSet:
        return self._narrow("flat_map", narrow.flat_map_stage, fn)

    def filter(self, pred: Callable[[Any], Any]) -> DataSet:
        return self._narrow("filter", narrow.filter_stage, pred)

    def map_partitions(self, fn: Callable[[Any], Any]) -> DataSet:
        """fn(partition) -> iterable or numpy block; the partition is an iterator, or a block for
        array sources (and for what a previous map_partitions returned as a block)."""
        return self._narrow("map_partitions", narrow.map_partitions_stage, fn)

    def key_by(self, fn: Callable[[Any], Any]) -> DataSet:
        return self._narrow("key_by", narrow.key_by_stage, fn)

    def map_values(self, fn: Callable[[Any], Any]) -> DataSet:
        return self._narrow("map_values", narrow.map_values_stage, fn)

    def keys(self) -> DataSet:
        return self._narrow("keys", narrow.map_stage, operator.itemgetter(0))

    def values(self) -> DataSet:
        return self._narrow("values", narrow.map_stage, operator.itemgetter(1))

    def cache(self) -> DataSet:
        """The same data, kept in memory after its first use, so that a loop reuses it."""
        result = DataSet(self.data, None, f"cache({self.name})")
        parent = self._plan

        def plan():
            if result._cached is not None:
                held = result._cached
                return lambda: held[0]
            run = parent()

            def fill():
                if result._cached is None:
                    result._cached = (materialize(run()),)
                return result._cached[0]

            return fill

        result._plan = plan
        return result

    def uncache(self) -> None:
        self._cached = None

    def persist(self, name: str | None = None) -> DataSet:
        """The same data, written now into the job folder (an action), and read back from there
        (arrays memory-mapped) instead of recomputed. A restarted job's persist() of the same name
        finds the complete copy and returns it without running the lineage. The name defaults to
        the call site and its occurrence (t2mpi/data/persist.py); outside a job, a DataError."""
        from .persist import persist

        return persist(self, name, call_site())

    # -- collective operations ------------------------------------------------------------------
    def union(self, *others: DataSet) -> DataSet:
        """This data set's partition followed by the others' on each worker (no data moves)."""
        for other in others:
            if not isinstance(other, DataSet) or other.data.comm is not self.data.comm:
                raise DataError("union: expects data sets of the same communicator")
        plans = [self._plan] + [o._plan for o in others]

        def plan():
            runs = [p() for p in plans]
            return lambda: itertools.chain.from_iterable(run() for run in runs)

        return DataSet(self.data, plan, "union")

    def broadcast(self, root: int = 0) -> DataSet:
        """Every worker gets root's partition (Twister2's replicate)."""
        where = self._where("broadcast", call_site())
        parent = self._plan

        def plan():
            run = parent()
            held = self.data.exchange.bcast(where, lambda: materialize(run()), root)
            return lambda: held

        return DataSet(self.data, plan, "broadcast")

    def gather(self, root: int = 0) -> DataSet:
        """All elements on `root` (in worker order); the other workers' partitions are empty."""
        where = self._where("gather", call_site())
        parent = self._plan

        def plan():
            run = parent()
            parts = self.data.exchange.gather(where, lambda: materialize(run()), root)
            held = concat(parts) if parts is not None else []
            return lambda: held

        return DataSet(self.data, plan, "gather")

    def all_gather(self) -> DataSet:
        """All elements on every worker, in worker order."""
        where = self._where("all_gather", call_site())
        parent = self._plan

        def plan():
            run = parent()
            held = concat(self.data.exchange.allgather(where, lambda: materialize(run())))
            return lambda: held

        return DataSet(self.data, plan, "all_gather")

    def repartition(self, n: int | Callable[[Any], int] | None = None) -> DataSet:
        """Rebalance over the first `n` workers (default all), keeping the global order; or, given a
        partitioner fn(element) -> worker, send each element to the worker it names."""
        return keyed.repartition(self, n, self._where("repartition", call_site()))

    def _local_reduce(self, where: Any, fn: Callable[[Any, Any], Any], part: Any) -> tuple[bool, Any]:
        if is_block(part):
            op = _mpi_op(fn)
            if op is not None and len(part):
                import numpy as np

                ufunc = {"SUM": np.add, "PROD": np.multiply, "MAX": np.maximum, "MIN": np.minimum}[op]
                return True, ufunc.reduce(part, axis=0)
        it = iter(part)
        first = next(it, _EMPTY)
        if first is _EMPTY:
            return False, None
        try:
            return True, functools.reduce(fn, it, first)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc

    def _reduce(self, op: str, fn: Callable[[Any, Any], Any], root: int | None, site: str) -> Any:
        """reduce/all_reduce: a per-partition reduction, then one collective: MPI's built-in op on the
        buffers when every worker holds an equal-shaped array and fn is add/mul/max/min; otherwise the
        partial results are gathered (pickled, one each) and reduced in worker order."""
        where = self._where(op, site)
        ex = self.data.exchange
        if root is not None:
            ex.check_root(where, root)
        run = self._plan()
        partial = [False, None]

        def local():
            partial[:] = self._local_reduce(where, fn, run())
            has, value = partial
            if is_block(value) and ex.mpi is not None and _mpi_op(fn):
                return ("array", value.shape, value.dtype.str)
            return ("value", has, value)

        metas = ex.allgather(where, local)
        if all(m[0] == "array" for m in metas) and len({m[1:] for m in metas}) == 1:
            return ex.allreduce_array(partial[1], _mpi_op(fn), root)
        if any(m[0] == "array" for m in metas):  # some arrays stayed home: send them now
            values = ex.allgather(where, lambda: (partial[0], partial[1]))
        else:
            values = [(m[1], m[2]) for m in metas]
        if root is not None and ex.rank != root:
            return None
        present = [v for has, v in values if has]
        if not present:
            raise DataError(f"{where}: the data set is empty, there is nothing to reduce")
        try:
            return functools.reduce(fn, present)
        except Exception as exc:
            raise where.failed(exc) from exc

    def reduce(self, fn: Callable[[Any, Any], Any], root: int = 0) -> Any:
        """fn folded over all elements; the value on `root`, None on the other workers."""
        return self._reduce("reduce", fn, root, call_site())

    def all_reduce(self, fn: Callable[[Any, Any], Any]) -> Any:
        """fn folded over all elements, on every worker."""
        return self._reduce("all_reduce", fn, None, call_site())

    # -- keyed operations (keyed.py): a local combine, then one exchange --------------------------
    def combine_by_key(
        self,
        create: Callable[[Any], Any],
        merge_value: Callable[[Any, Any], Any],
        merge_combiners: Callable[[Any, Any], Any],
        partitioner: Callable[[Any], int] | None = None,
    ) -> DataSet:
        """The mechanism under the keyed reductions: per key, create(v) then merge_value(c, v) on each
        worker, one shuffle, then merge_combiners(c1, c2) where the key lands."""
        return keyed.combine_by_key(
            self, self._where("combine_by_key", call_site()), create, merge_value, merge_combiners, partitioner
        )

    def reduce_by_key(self, fn: Callable[[Any, Any], Any], partitioner: Callable[[Any], int] | None = None) -> DataSet:
        """Per key, the values folded with fn: on each worker first, then where the key lands.
        map(lambda x: (x, 1)).reduce_by_key(add) counts the elements in C (known.py)."""
        where = self._where("reduce_by_key", call_site())
        fn = known.operator_of(fn)
        if fn is operator.add and self._mapped is not None and known.pairs_with_one(self._mapped[0]):
            return keyed.combine_by_key(self._mapped[1], where, None, fn, fn, partitioner, counting=True)
        return keyed.combine_by_key(self, where, None, fn, fn, partitioner)

    def group_by_key(self, sort: bool = False) -> DataSet:
        """(key, [values]) per key; with sort=True, keys in global order (a range partition)."""
        where = self._where("group_by_key", call_site())
        if sort:
            return sorting.sorted_groups(self, where)
        return keyed.combine_by_key(self, where, keyed.new_list, keyed.append, keyed.extend, None)

    def count_by_key(self) -> DataSet:
        """(key, count) per key."""
        return keyed.combine_by_key(
            self, self._where("count_by_key", call_site()), keyed.one, keyed.plus_one, operator.add, None
        )

    def count_by_value(self) -> DataSet:
        """(element, count) per distinct element: counted on each worker (collections.Counter),
        then one shuffle; the elements must be hashable."""
        return keyed.combine_by_key(
            self, self._where("count_by_value", call_site()), None, operator.add, operator.add, None, counting=True
        )

    def distinct(self) -> DataSet:
        where = self._where("distinct", call_site())
        marked = DataSet(self.data, _pairs_of(self._plan), self.name)
        return keyed.combine_by_key(marked, where, None, keyed.first, keyed.first, None).keys()

    def partition_by_key(self, partitioner: Callable[[Any], int] | None = None) -> DataSet:
        """(key, value) pairs moved so that each key lands on partitioner(key) (default: a hash)."""
        return keyed.partition_by_key(self, self._where("partition_by_key", call_site()), partitioner)

    def join(self, other: DataSet, how: str = "inner", method: str = "hash") -> DataSet:
        """(key, (left, right)) for keys of both sides (inner); left/right/outer keep unmatched keys of
        that side with None on the other. Both sides move in one exchange so that equal keys meet;
        method="hash" joins there through an index of the right side, method="sort" by sorting both
        sides and merging (its output comes in key order). An inner join of integer-keyed Columns
        stays in numpy: Columns whose values have the fields "left" and "right" (see join.py)."""
        return joining.join(self, other, how, method, self._where("join", call_site()))

    def sort_by(self, key: Callable[[Any], Any] | str | None = None, ascending: bool = True) -> DataSet:
        """A global sort, stable: a sample-based range partition, then a local sort; partitions in
        worker order concatenate to the sorted whole. key: a function, or for numpy record blocks a
        field name. Numeric blocks and blocks of fixed-size byte records (dtype S, V, or bytes
        fields, ordered bytewise unsigned) sort in numpy and move as raw rows (see sort.py); past
        the memory budget they go in rounds and merge from sorted runs on disk into a read-only
        np.memmap partition (npruns.py)."""
        return sorting.sort_by(self, key, ascending, self._where("sort_by", call_site()))

    # -- actions ----------------------------------------------------------------------------------
    def collect(self, root: int | None = None) -> Any:
        """All elements in worker order: a list (one array when every partition is a numpy block),
        on every worker, or only on `root` (None elsewhere)."""
        where = self._where("collect", call_site())
        run = self._plan()
        if root is None:
            return concat(self.data.exchange.allgather(where, lambda: materialize(run())))
        parts = self.data.exchange.gather(where, lambda: materialize(run()), root)
        return None if parts is None else concat(parts)

    def count(self) -> int:
        where = self._where("count", call_site())
        run = self._plan()

        def local():
            part = run()
            return len(part) if is_block(part) or type(part) is list else sum(1 for _ in part)

        return sum(self.data.exchange.allgather(where, local))

    def take(self, n: int) -> list[Any]:
        """The first `n` elements in worker order, on every worker."""
        where = self._where("take", call_site())
        run = self._plan()
        firsts = self.data.exchange.allgather(where, lambda: list(itertools.islice(run(), n)))
        return list(itertools.islice(itertools.chain.from_iterable(firsts), n))

    def top(self, n: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        """The `n` largest elements (by key), largest first, on every worker."""
        import heapq

        where = self._where("top", call_site())
        run = self._plan()

        def local():
            try:
                return heapq.nlargest(n, run(), key=key)
            except DataError:
                raise
            except Exception as exc:
                raise where.failed(exc) from exc

        bests = self.data.exchange.allgather(where, local)
        return heapq.nlargest(n, itertools.chain.from_iterable(bests), key=key)

    def for_each(self, fn: Callable[[Any], Any]) -> None:
        """fn(element) for every element, on the worker holding it; returns when all workers are done."""
        where = self._where("for_each", call_site())
        run = self._plan()

        def local():
            for _ in narrow.map_stage(where, fn, run()):
                pass

        self.data.exchange.allgather(where, local)

    def write_text(self, folder: str) -> list[str]:
        """One file per worker, folder/part-NNNNN, of str(element) lines (written atomically);
        returns every part's path, on every worker."""

        where = self._where("write_text", call_site())
        run = self._plan()

        def local():
            def write(f: Any) -> None:
                for x in run():
                    f.write((x if type(x) is str else str(x)).encode("utf-8"))
                    f.write(b"\n")

            return _write_atomically(folder, f"part-{self.data.rank:05d}", write)

        return self.data.exchange.allgather(where, local)

    def write_records(self, folder: str) -> list[str]:
        """One file per worker, folder/part-NNNNN, of its partition's raw bytes: a numpy block of
        fixed-size records as it lies in memory (what Data.records reads back); written atomically;
        returns every part's path, on every worker."""
        where = self._where("write_records", call_site())
        run = self._plan()

        def local():
            part = run()
            if not is_block(part):
                raise DataError(f"{where}: expects numpy record blocks, got {type(part).__name__}")
            return _write_atomically(folder, f"part-{self.data.rank:05d}", lambda f: part.tofile(f))

        return self.data.exchange.allgather(where, local)

    def write_npy(self, folder: str) -> list[str]:
        """One .npy file per worker, folder/part-NNNNN.npy, of its partition as an array (a block as it
        is; other elements through numpy.asarray); returns every part's path, on every worker."""

        import numpy as np

        where = self._where("write_npy", call_site())
        run = self._plan()

        def local():
            part = materialize(run())
            block = part if is_block(part) else np.asarray(part)
            return _write_atomically(folder, f"part-{self.data.rank:05d}.npy", lambda f: np.save(f, block))

        return self.data.exchange.allgather(where, local)


_EMPTY = object()


def _write_atomically(folder: str, name: str, write: Callable[[Any], None]) -> str:
    """folder/name written by write(f) through a temporary file, fsync and rename; returns its path.
    (job.folder.write_atomic makes private files for the job folder; these are the user's outputs,
    made with the user's umask.)"""
    import os

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _pairs_of(parent: Callable[[], Callable[[], Any]]) -> Callable[[], Callable[[], Any]]:
    def plan():
        run = parent()
        return lambda: ((x, None) for x in run())

    return plan
