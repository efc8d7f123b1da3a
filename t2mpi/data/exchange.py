"""The communication edges under every wide operation: guarded collectives of pickled batches, and
Alltoallv / Allreduce of numpy buffers; and what each operation moved.

A guarded collective runs the local side of an operation (`produce`, where user code runs), then always
enters its collective, carrying either the payload or the text of the local failure; every worker then
raises when any worker failed, so no worker is left waiting in the next collective. Python objects travel
as one pickled batch per destination (pickled here, protocol 5, and moved as bytes), never one message per
element; a batch that cannot be pickled is a failure the others hear of, not a hang.

An operation is one DataSet method the user called (reduce_by_key at wc.py:12): the guarded collectives
that share its `Where` object. Each is counted (`OperationStats`): when its first collective started and
its last one returned, the rows this worker put in and got out, the bytes it sent to other workers and
the bytes it spilled. `on_end` gets the record when the next operation starts, or at `finish()`.
"""

from __future__ import annotations

import pickle
import time
from collections import namedtuple

from .errors import DataError, RemoteFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .errors import Where

OperationStats = namedtuple("OperationStats", "op site start end rows_in rows_out bytes_shuffled bytes_spilled")
OperationStats.__doc__ = """One operation on one worker. start: time.monotonic() when its first guarded
collective began (its local side runs after that); end: when its last one returned. rows_in: the elements
this worker put into its exchanges (a list counts its length, a numpy array its rows, a tuple the rows of
the lists and arrays in it; counts, samples' metadata and reductions' partial results are no rows);
rows_out: the elements it received (its own share included); bytes_shuffled: the bytes it sent to other
workers (pickles with their headers, or nbytes of numpy buffers; to each receiver, as if sent directly);
bytes_spilled: what the shuffle wrote to disk (Exchange.spilled)."""


def _run(produce: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return produce(), None
    except Exception as exc:  # carried to the others, raised here after the collective
        return None, exc


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"


def rows(payload: Any) -> int:
    """The elements in one payload (see OperationStats)."""
    if type(payload) is list:
        return len(payload)
    if type(payload) is tuple:
        return sum(rows(p) for p in payload if type(p) is not tuple)
    shape = getattr(payload, "shape", None)
    if type(payload).__module__ == "numpy" and shape:
        return int(shape[0])
    return 0


class _Operation:
    __slots__ = ("where", "start", "end", "rows_in", "rows_out", "sent", "spilled")

    def __init__(self, where: Where, now: float):
        self.where, self.start, self.end = where, now, now
        self.rows_in = self.rows_out = self.sent = self.spilled = 0

    def stats(self) -> OperationStats:
        w = self.where
        return OperationStats(w.op, w.site, self.start, self.end, self.rows_in, self.rows_out, self.sent, self.spilled)


class Exchange:
    """The collectives of one communicator, each guarded (see the module's docstring)."""

    def __init__(
        self,
        comm: Any,
        on_step: Callable[[Where], None] | None = None,
        on_end: Callable[[OperationStats], None] | None = None,
    ):
        self.comm = comm
        self.on_step = on_step  # told of each guarded collective as it starts (the live status)
        self.on_end = on_end  # given each operation's OperationStats when it has ended
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._current: _Operation | None = None
        try:
            from mpi4py import MPI

            self.mpi = MPI if isinstance(comm, MPI.Comm) else None  # buffer paths need a real communicator
        except ImportError:
            self.mpi = None

    # -- operations and their figures -------------------------------------------------------------
    def _step(self, where: Where) -> None:
        if self._current is None or self._current.where is not where:
            self.finish()
            self._current = _Operation(where, time.monotonic())
        if self.on_step is not None:
            self.on_step(where)

    def _moved(self, rows_in: int, rows_out: int, sent: int) -> None:
        """A collective of the current operation returned, having moved this."""
        op = self._current
        if op is not None:
            op.end = time.monotonic()
            op.rows_in += rows_in
            op.rows_out += rows_out
            op.sent += sent

    def spilled(self, nbytes: int) -> None:
        """Add `nbytes` written to disk to the current operation's spilled bytes (a spilling shuffle
        calls this, as often as it spills)."""
        if type(nbytes) is not int or nbytes < 0:
            raise DataError(f"spilled: expects a number of bytes >= 0, got {nbytes!r}")
        if self._current is None:
            raise DataError("spilled: no data operation is running on this worker")
        self._current.spilled += nbytes

    def finish(self) -> None:
        """End the current operation (the worker's data API closes): on_end gets its record."""
        op, self._current = self._current, None
        if op is not None and self.on_end is not None:
            self.on_end(op.stats())

    # -- guarded collectives ----------------------------------------------------------------------
    def _settle(self, where: Where, exc: BaseException | None, headers: Sequence[tuple[int, str, str | None]]) -> None:
        """Raise here if any worker failed, or is in another operation than this one."""
        if exc is not None:
            if isinstance(exc, DataError):
                raise exc
            raise where.failed(exc) from exc
        for worker, _op, text in headers:
            if text is not None:
                raise RemoteFailure(f"{where}: worker {worker} failed: {text}")
        for worker, op, _ in headers:
            if op != where.op:
                raise DataError(
                    f"{where}: worker {worker} is in {op} instead; every worker must call the "
                    f"same operations in the same order (a data-dependent branch?)"
                )

    def _header(self, where: Where, exc: BaseException | None) -> tuple[int, str, str | None]:
        return (self.rank, where.op, None if exc is None else _describe(exc))

    def _pickled(self, where: Where, messages: list[Any]) -> tuple[list[bytes], BaseException | None]:
        """One pickle per message; a message that cannot be pickled fails the operation here (the
        others hear of it) instead of in the middle of the collective."""
        try:
            return [pickle.dumps(m, protocol=5) for m in messages], None
        except Exception as exc:
            why = DataError(f"{where}: cannot pickle the data to send: {type(exc).__name__}: {exc}")
            failure = self._header(where, why)
            return [pickle.dumps((failure, None), protocol=5)] * len(messages), why

    def alltoall(self, where: Where, produce: Callable[[], Sequence[Any]], keep_own: bool = False) -> list[Any]:
        """produce() -> one payload per worker; returns the payload each worker sent this one.
        keep_own: this worker's own payload is handed back as it is, not pickled (the caller does
        not share it with anything it changes later)."""
        self._step(where)
        payloads, exc = _run(produce)
        if exc is None and len(payloads) != self.size:
            payloads, exc = None, DataError(f"{where}: {len(payloads)} batches for {self.size} workers")
        own = None
        if keep_own and exc is None:
            own, payloads = payloads[self.rank], [None if d == self.rank else p for d, p in enumerate(payloads)]
        got = self._alltoall_objects(where, payloads, exc)
        if own is not None:
            got[self.rank] = (got[self.rank][0], own)
            payloads[self.rank] = own
        self._moved(0 if exc else sum(map(rows, payloads)), sum(rows(p) for _, p in got), 0)
        self._settle(where, exc if exc is not None else got.failed, [f for f, _ in got])
        return [p for _, p in got]

    def _alltoall_objects(self, where: Where, payloads: Any, exc: BaseException | None) -> _Got:
        """(header, payload) to each worker, pickled here and moved as bytes; counts the bytes."""
        failure = self._header(where, exc)
        blobs, bad = self._pickled(where, [(failure, p) for p in payloads] if exc is None else [(failure, None)])
        if len(blobs) == 1:
            blobs = blobs * self.size
        self._moved(0, 0, sum(len(b) for d, b in enumerate(blobs) if d != self.rank))
        return _Got([pickle.loads(b) for b in self._alltoall_bytes(blobs)], bad)

    def _alltoall_bytes(self, blobs: list[bytes]) -> list[Any]:
        """Each worker's bytes for each: one Alltoall of the sizes, one Alltoallv of the bytes (plain
        arrays, not numpy: a small exchange costs ~10 us more than comm.alltoall, a large one less)."""
        if self.mpi is None:  # a stand-in communicator: its own alltoall
            return self.comm.alltoall(blobs)
        from array import array
        from itertools import accumulate

        send_counts, recv_counts = array("q", map(len, blobs)), array("q", bytes(8 * self.size))
        self.comm.Alltoall(send_counts, recv_counts)
        sdispls, rdispls = list(accumulate(send_counts, initial=0)), list(accumulate(recv_counts, initial=0))
        recv = bytearray(rdispls[-1])
        self.comm.Alltoallv(
            [b"".join(blobs), (send_counts, sdispls[:-1]), self.mpi.BYTE],
            [recv, (recv_counts, rdispls[:-1]), self.mpi.BYTE],
        )
        view = memoryview(recv)
        return [view[rdispls[d] : rdispls[d + 1]] for d in range(self.size)]

    def allgather(self, where: Where, produce: Callable[[], Any]) -> list[Any]:
        self._step(where)
        value, exc = _run(produce)
        (blob,), bad = self._pickled(where, [(self._header(where, exc), value)])
        got = [pickle.loads(b) for b in self._allgather_bytes(blob)]
        self._moved(rows(value), sum(rows(v) for _, v in got), len(blob) * (self.size - 1))
        self._settle(where, exc or bad, [f for f, _ in got])
        return [v for _, v in got]

    def _allgather_bytes(self, blob: bytes) -> list[Any]:
        if self.mpi is None:
            return self.comm.allgather(blob)
        import numpy as np

        counts = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([len(blob)], dtype=np.int64), counts)
        recv = np.empty(int(counts.sum()), dtype=np.uint8)
        displs = _displs(counts)
        self.comm.Allgatherv(
            [np.frombuffer(blob, dtype=np.uint8), self.mpi.BYTE],
            [recv, (counts.tolist(), displs.tolist()), self.mpi.BYTE],
        )
        view = memoryview(recv)
        return [view[int(a) : int(a) + int(n)] for a, n in zip(displs, counts)]

    def gather(self, where: Where, produce: Callable[[], Any], root: int) -> list[Any] | None:
        """The values at `root` (None elsewhere); only root learns of the others' failures."""
        self._step(where)
        self.check_root(where, root)
        value, exc = _run(produce)
        (blob,), bad = self._pickled(where, [(self._header(where, exc), value)])
        # a pickle per worker; few and small beside a shuffle's, so mpi4py moves them
        got = self.comm.gather(blob, root=root)
        got = None if got is None else [pickle.loads(b) for b in got]
        out = sum(rows(v) for _, v in got) if got is not None else 0
        self._moved(rows(value), out, len(blob) if self.rank != root else 0)
        self._settle(where, exc or bad, [f for f, _ in got] if got is not None else ())
        return None if got is None else [v for _, v in got]

    def bcast(self, where: Where, produce: Callable[[], Any], root: int) -> Any:
        self._step(where)
        self.check_root(where, root)
        value, exc = _run(produce) if self.rank == root else (None, None)
        bad = None
        if self.rank == root:
            (blob,), bad = self._pickled(where, [(self._header(where, exc), value)])
        failure, value = pickle.loads(self.comm.bcast(blob if self.rank == root else None, root=root))
        sent = len(blob) * (self.size - 1) if self.rank == root else 0
        self._moved(rows(value) if self.rank == root else 0, rows(value), sent)
        self._settle(where, exc or bad, [failure])
        return value

    def check_root(self, where: Where, root: int) -> None:
        if not isinstance(root, int) or not 0 <= root < self.size:
            raise DataError(f"{where}: root {root!r} is not a worker (0..{self.size - 1})")

    def alltoallv(self, where: Where, produce: Callable[[], tuple[Any, list[int]]], by_source: bool = False) -> Any:
        """produce() -> (array grouped by destination along axis 0, rows for each worker); returns the
        rows every worker sent here, concatenated in worker order (by_source=True: and the rows
        from each worker). One Alltoallv of the raw buffer."""
        self._step(where)
        import numpy as np

        result, exc = _run(produce)
        block, counts = result if exc is None else (None, None)
        if exc is None:
            block = np.ascontiguousarray(block)
            meta = (block.dtype.str, block.shape[1:], list(counts))
        metas = None if exc else [(meta[0], meta[1], meta[2][d]) for d in range(self.size)]
        got = self._alltoall_objects(where, metas, exc)
        self._settle(where, exc or got.failed, [f for f, _ in got])
        shapes = {(m[0], tuple(m[1])) for _, m in got}
        if len(shapes) != 1:
            raise DataError(f"{where}: workers hold arrays of different dtypes or row shapes: {sorted(shapes)}")
        rows_in = [m[2] for _, m in got]
        out = self._rows(block, counts, rows_in)
        return (out, rows_in) if by_source else out

    def _rows(self, block: Any, counts: Sequence[int], rows_in: Sequence[int], count_rows: bool = True) -> Any:
        """block's rows, grouped by destination (counts), sent; rows_in[d] rows come from worker d.
        count_rows=False: the rows are counted already (a shuffle's values travel beside its keys)."""
        import numpy as np

        block = np.ascontiguousarray(block)
        row_bytes = block.dtype.itemsize * int(np.prod(block.shape[1:], dtype=np.int64))
        send_counts = np.asarray(counts, dtype=np.int64) * row_bytes
        moved = (int(sum(counts)), int(sum(rows_in))) if count_rows else (0, 0)
        self._moved(*moved, int(send_counts.sum() - send_counts[self.rank]))
        if self.mpi is None:  # a stand-in communicator: pickled slices (numpy pickles its buffer whole)
            starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
            parts = self.comm.alltoall([block[starts[d] : starts[d + 1]] for d in range(self.size)])
            return np.concatenate(parts) if parts else block[:0]
        recv_counts = np.asarray(rows_in, dtype=np.int64) * row_bytes
        out = np.empty((int(sum(rows_in)),) + tuple(block.shape[1:]), dtype=block.dtype)
        send = block.reshape(-1).view(np.uint8) if block.size else np.empty(0, np.uint8)
        recv = out.reshape(-1).view(np.uint8) if out.size else np.empty(0, np.uint8)
        self.comm.Alltoallv(
            [send, (send_counts.tolist(), _displs(send_counts).tolist()), self.mpi.BYTE],
            [recv, (recv_counts.tolist(), _displs(recv_counts).tolist()), self.mpi.BYTE],
        )
        return out

    def shuffle(self, where: Where, produce: Callable[[], tuple], to_objects: Callable[[], list[Any]]) -> tuple:
        """A keyed exchange that takes the buffer path when every worker can. produce() gives
        ("columns", keys, values, counts): numpy columns grouped by destination, or ("objects", batches):
        one list per destination. Every worker with columns: one small alltoall of counts and dtypes,
        then one Alltoallv per column; returns ("columns", keys, values). Otherwise the batches travel
        pickled in that same first alltoall (a worker with columns sends to_objects() in a second one);
        returns ("objects", batches)."""
        self._step(where)
        result, exc = _run(produce)
        if exc is not None:
            sent = None
        elif result[0] == "columns":
            _, keys, values, counts = result
            sent = [("columns", (int(counts[d]), keys.dtype.str, values.dtype.str)) for d in range(self.size)]
        else:
            sent = [("objects", batch) for batch in result[1]]
        got = self._alltoall_objects(where, sent, exc)
        self._moved(sum(map(rows, sent)) if sent else 0, sum(rows(m) for _, m in got), 0)  # the object batches
        self._settle(where, exc or got.failed, [f for f, _ in got])
        got = [(f, kind, b) for f, (kind, b) in got]
        kinds = {kind for _, kind, _ in got}
        if kinds == {"columns"}:
            dtypes = {m[1:] for _, _, m in got}
            if len(dtypes) == 1:
                rows_in = [m[0] for _, _, m in got]
                keys_in = self._rows(keys, counts, rows_in)
                return ("columns", keys_in, self._rows(values, counts, rows_in, count_rows=False))
        if "columns" in kinds:  # some workers hold columns, some objects: all go as objects
            mine = self.alltoall(where, to_objects if result[0] == "columns" else lambda: [[]] * self.size)
            return ("objects", [b if k == "objects" else m for (_, k, b), m in zip(got, mine)])
        return ("objects", [b for _, _, b in got])

    def allreduce_array(self, array: Any, mpi_op_name: str, root: int | None = None) -> Any:
        """The element-wise reduction of equal-shaped arrays with MPI's built-in op (to root, or all).
        It belongs to the operation running now; its bytes are the array's nbytes (no rows)."""
        import numpy as np

        send = np.ascontiguousarray(array)
        op = getattr(self.mpi, mpi_op_name)
        if root is None:
            out = np.empty_like(send)
            self.comm.Allreduce(send, out, op=op)
        else:
            out = np.empty_like(send) if self.rank == root else None
            self.comm.Reduce(send, out, op=op, root=root)
        self._moved(0, 0, send.nbytes if self.size > 1 else 0)
        return out


class _Got(list):
    """What an alltoall of objects brought, and this worker's pickling failure (or None)."""

    def __init__(self, items: list[Any], failed: BaseException | None):
        super().__init__(items)
        self.failed = failed


def _displs(counts: Any) -> Any:
    import numpy as np

    displs = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    return displs
