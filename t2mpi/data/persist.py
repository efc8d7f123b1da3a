"""DataSet.persist(): a data set written into the job folder, part by part, and read back from there; a
restarted job gets it back instead of running its lineage again.

persist() is an action of three guarded collectives (exchange.py), so that a worker whose side failed
still takes part, and every worker raises alike:

1. look: each worker checks that the job folder holds a complete record of this name and operation,
   written by as many workers, and that its own part's files are there at their recorded sizes. When
   every worker finds its part, the data set is read back and its lineage does not run.
2. write: otherwise the lineage runs, and each worker streams its partition into a new generation
   folder: a numpy block as one .npy, Columns as two, anything else as pickled batches of BATCH
   elements. Each file is written atomically.
3. commit: worker 0 writes the record (JobDir.commit_persisted: one atomic rename) once every worker
   has written its part. A write that stopped before that never counts: the next look finds the old
   record, or none.

The default name is '<file>:<line>#<k>' for the k-th persist() at that line of the user's code, and
'<file>:<line>#<k>@v<v>' after checkpoint version v was written or restored (the counters start again
at each version). A restart that goes on from checkpoint v makes the same calls after v, and so finds
the same names.
"""

from __future__ import annotations

import os
import pickle

from .errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from ..job.folder import JobDir
    from .dataset import DataSet

BATCH = 1024  # elements per pickled batch: a partition of objects is streamed, never one huge pickle


class Names:
    """persist()'s default names in one Data, and the names persisted in this run."""

    def __init__(self, version: int = 0):
        self.version = version  # the checkpoint version last written or restored
        self._calls: dict[str, int] = {}  # site -> persist() calls there since `version`
        self.taken: set[str] = set()

    def checkpointed(self, version: int) -> None:
        if version != self.version:
            self.version = version
            self._calls.clear()

    def default(self, site: str) -> str:
        k = self._calls.get(site, 0) + 1
        self._calls[site] = k
        return f"{site}#{k}" if not self.version else f"{site}#{k}@v{self.version}"


def persist(ds: DataSet, name: str | None, site: str) -> DataSet:
    """`ds` written into its job folder as `name` (default: see the module), or read back from there
    when a complete copy is there already; returns the data set that reads it."""
    from ..job.folder import JobDir
    from .dataset import DataSet

    data = ds.data
    where = data.where("persist", site)
    if data.job_dir is None:
        raise DataError(
            f"{where}: no job folder to persist into (this Data was made outside a job); "
            "use cache() to keep it in memory, or write_npy()/write_text() to keep it in files"
        )
    names = data.persist_names
    if name is None:
        name = names.default(site)
    elif not isinstance(name, str) or not name:
        raise DataError(f"{where}: the name must be a non-empty string, got {name!r}")
    if name in names.taken:
        raise DataError(
            f"{where}: {name!r} was persisted already in this run; give each persist() its own name "
            "(in a loop, one with the step in it)"
        )
    jd = JobDir(data.job_dir)
    key = JobDir.persisted_key(name)
    rank, size, ex = data.rank, data.size, data.exchange
    looks = ex.allgather(where, lambda: _look(jd, key, name, ds.name, rank, size))
    if all(found is not None for found, _ in looks):
        generation, part = looks[rank][0]
    else:
        generation = looks[0][1]  # worker 0's fresh token names the new generation
        run = ds._plan()
        parts = ex.allgather(where, lambda: _write(jd, key, generation, rank, run()))
        record = {"name": name, "op": ds.name, "site": site, "workers": size, "generation": generation}
        ex.bcast(where, lambda: jd.commit_persisted(key, dict(record, parts=parts)), 0)
        part = parts[rank]
    names.taken.add(name)
    return DataSet(data, lambda: lambda: _read(jd, key, generation, rank, part), f"persist({name})")


def _look(jd: JobDir, key: str, name: str, op: str, rank: int, size: int) -> tuple[Any, str | None]:
    """((generation, this worker's part) of a complete copy, or None; worker 0's fresh token)."""
    from ..errors import JobError

    token = os.urandom(6).hex() if rank == 0 else None
    try:
        record = jd.read_persisted(key)
    except JobError:  # an unreadable record is none: the data set is written again
        return None, token
    if record is None or (record.get("name"), record.get("op"), record.get("workers")) != (name, op, size):
        return None, token
    generation, part = record["generation"], record["parts"][rank]
    for suffix, length in part["files"].items():
        try:
            if os.path.getsize(jd.persisted_part(key, generation, rank, suffix)) != length:
                return None, token
        except OSError:
            return None, token
    return (generation, part), token


def _write(jd: JobDir, key: str, generation: str, rank: int, part: Any) -> dict[str, Any]:
    """This worker's partition in the generation's files; what the record keeps of it."""
    from ..job.folder import write_atomic
    from .columns import Columns
    from .dataset import is_block

    jd.begin_persisted(key, generation)

    def path(suffix: str) -> str:
        return jd.persisted_part(key, generation, rank, suffix)

    if is_block(part):
        arrays = {"npy": part}
        kind = "block"
    elif type(part) is Columns:
        arrays = {"keys.npy": part.keys, "values.npy": part.values}
        kind = "columns"
    else:
        rows = [0]
        write_atomic(path("pkl"), lambda fh: _dump_batches(part, fh, rows))
        jd.sync_persisted(key, generation)
        return {"kind": "objects", "rows": rows[0], "files": {"pkl": os.path.getsize(path("pkl"))}}
    import numpy as np

    pickled = any(a.dtype.hasobject for a in arrays.values())
    for suffix, array in arrays.items():
        write_atomic(path(suffix), lambda fh, a=array: np.save(fh, a, allow_pickle=pickled))
    jd.sync_persisted(key, generation)
    files = {suffix: os.path.getsize(path(suffix)) for suffix in arrays}
    return {"kind": kind, "rows": len(part), "pickled": pickled, "files": files}


def _dump_batches(items: Iterable[Any], fh: Any, rows: list[int]) -> None:
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) == BATCH:
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
            rows[0] += len(batch)
            batch = []
    if batch:
        pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
        rows[0] += len(batch)


def _read(jd: JobDir, key: str, generation: str, rank: int, part: dict[str, Any]) -> Any:
    """This worker's persisted partition: arrays memory-mapped, objects a lazy pass over the batches."""

    def path(suffix: str) -> str:
        return jd.persisted_part(key, generation, rank, suffix)

    if part["kind"] == "objects":
        return _objects(path("pkl"))
    import numpy as np

    def load(suffix: str) -> Any:
        mmap = None if part["pickled"] or not part["rows"] else "r"  # an empty array cannot be mapped
        return np.load(path(suffix), mmap_mode=mmap, allow_pickle=part["pickled"])

    if part["kind"] == "block":
        return load("npy")
    from .columns import Columns

    return Columns(load("keys.npy"), load("values.npy"))


def _objects(path: str) -> Iterator[Any]:
    from .spill import read_batches

    for batch in read_batches(path):
        yield from batch
