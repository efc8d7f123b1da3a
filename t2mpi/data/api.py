"""Data: the entry of the dataflow API on one communicator; its methods are the sources.

    data = Data(MPI.COMM_WORLD)            # in a job: ctx.data
    counts = (data.text("in/*.txt").flat_map(str.split)
              .map(lambda w: (w, 1)).reduce_by_key(operator.add))

Every worker of the communicator makes the same calls in the same order (SPMD); each holds one
partition of every data set.
"""

from __future__ import annotations

from . import sources
from .dataset import DataSet
from .errors import DataError, Where, call_site

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .exchange import OperationStats


class Data:
    """The dataflow API of one communicator: sources, and side inputs through broadcast.

    memory_budget (bytes, None: no bound) is how much a shuffle, sort or join may hold before it
    spills to scratch_dir (None: the system's temporary folder); see docs/data.md."""

    def __init__(
        self,
        comm: Any,
        scratch_dir: str | None = None,
        memory_budget: int | None = None,
        on_step: Callable[[Where], None] | None = None,
        job_dir: str | None = None,
        checkpoint_version: int = 0,
        on_end: Callable[[OperationStats], None] | None = None,
    ):
        """on_step(where) is told of each wide operation's step as it starts, and on_end(stats) gets
        each operation's figures when it has ended (exchange.OperationStats); a worker's context
        passes both on to the master, for the live status and events.jsonl. job_dir is the job
        folder that DataSet.persist() writes into (None outside a job: persist() is a DataError);
        checkpoint_version is the version the worker restored, for persist()'s default names."""
        from .exchange import Exchange
        from .persist import Names

        self.comm = comm
        self.exchange = Exchange(comm, on_step, on_end)
        self.rank = self.exchange.rank
        self.size = self.exchange.size
        self.scratch_dir = scratch_dir
        self.memory_budget = memory_budget
        self.spilled_bytes = 0  # what shuffles, sorts and joins wrote to scratch_dir past memory_budget, in all
        self.job_dir = job_dir
        self.persist_names = Names(checkpoint_version)
        try:
            import socket

            self.host = socket.gethostname()
        except OSError:
            self.host = "?"

    def __repr__(self) -> str:
        return f"<Data worker {self.rank} of {self.size}>"

    def checkpointed(self, version: int) -> None:
        """The worker wrote checkpoint `version`: persist()'s default names count from here (see
        t2mpi/data/persist.py), so that a restart from it finds the same names."""
        self.persist_names.checkpointed(version)

    def close(self) -> None:
        """End the operation running last (on_end gets its figures); the worker's context calls this
        when execute ends. The data sets stay usable: a later operation starts a new record."""
        self.exchange.finish()

    def where(self, op: str, site: str) -> Where:
        return Where(op, site, self.rank, self.size, self.host)

    def _source(self, name: str, part: Callable[[int, int], Any]) -> DataSet:
        rank, size = self.rank, self.size
        return DataSet(self, lambda: lambda: part(rank, size), name)

    def from_iterable(self, items: Iterable[Any]) -> DataSet:
        """A contiguous share of `items` per worker (every worker passes the same items)."""
        return self._source("from_iterable", lambda i, n: sources.iterable_part(items, i, n))

    def range(self, *args: int) -> DataSet:
        """range(stop) or range(start, stop[, step]), split in contiguous blocks."""
        return self.from_iterable(range(*args))

    def array(self, array: Any) -> DataSet:
        """A numpy array split by rows: each partition is a block (a view); elements are rows."""
        import numpy as np

        array = np.asarray(array)
        if array.ndim == 0:
            raise DataError("array: a 0-d array has no rows to split")
        return self._source("array", lambda i, n: sources.array_part(array, i, n))

    def columns(self, keys: Any, values: Any) -> DataSet:
        """Keyed numpy columns split by rows: each partition is a Columns (keys, values) block that
        iterates as (key, value) pairs; reduce_by_key(add|mul|max|min) on integer keys stays in numpy."""
        from .columns import Columns

        whole = Columns(keys, values)
        return self._source("columns", lambda i, n: whole.rows(*sources.block_bounds(len(whole), i, n)))

    def npy(self, path: str) -> DataSet:
        """A .npy file, memory-mapped and split by rows."""
        import os

        if not os.path.isfile(path):
            raise DataError(f"npy: no file {path!r}")
        return self._source("npy", lambda i, n: sources.npy_part(path, i, n))

    def text(self, path: str) -> DataSet:
        """The lines (UTF-8, without line endings) of a file, the files a glob matches or a folder's
        files, split by byte ranges on line boundaries (one large file is read in parallel)."""
        files = sources.text_files(str(path))
        return self._source("text", lambda i, n: sources.text_part(files, i, n))

    def csv(self, path: str, key: str | None = None, dtypes: dict[str, Any] | None = None) -> DataSet:
        """The rows of a CSV file, of the files a glob matches or of a folder's files, each file with a
        header line; split by byte ranges on line boundaries. Each partition is a numpy structured
        block, one field per column, typed by `dtypes` ({"column": "int64", ...}) or inferred from the
        first rows (int64, else float64, else str); with `key`, a Columns of that column and the rest."""
        plan = sources.csv_plan(str(path), key, dtypes)
        return self._source("csv", lambda i, n: sources.csv_part(plan, i, n))

    def records(self, path: str, size: int = 100, key_size: int = 10) -> DataSet:
        """Fixed-size binary records (gensort's: a 10-byte key, a 90-byte payload) of a file, a glob or
        a folder, split by whole records and memory-mapped; each partition is a block of dtype
        [("key", "S<key_size>"), ("value", "V<size - key_size>")]."""
        files = sources.record_files(str(path), size, key_size)
        return self._source("records", lambda i, n: sources.records_part(files, size, key_size, i, n))

    def from_function(self, fn: Callable[[int, int], Iterable[Any]]) -> DataSet:
        """fn(partition_index, num_partitions) -> this worker's elements."""
        if not callable(fn):
            raise DataError(f"from_function: expects a function, got {type(fn).__name__}")
        where = self.where("from_function", call_site())

        def part(i: int, n: int) -> Any:
            try:
                return fn(i, n)
            except DataError:
                raise
            except Exception as exc:
                raise where.failed(exc) from exc

        return self._source("from_function", part)

    def broadcast(self, value: Any = None, root: int = 0) -> Any:
        """A side input: root's value, on every worker."""
        return self.exchange.bcast(self.where("broadcast", call_site()), lambda: value, root)
