"""The communication edges under every wide operation: guarded collectives of pickled batches, and
Alltoallv / Allreduce of numpy buffers.

A guarded collective runs the local side of an operation (`produce`, where user code runs), then always
enters its collective, carrying either the payload or the text of the local failure; every worker then
raises when any worker failed, so no worker is left waiting in the next collective. Python objects travel
as one pickled batch per destination, never one message per element.
"""

from __future__ import annotations

from .errors import DataError, RemoteFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .errors import Where


def _run(produce: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return produce(), None
    except Exception as exc:  # carried to the others, raised here after the collective
        return None, exc


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"


class Exchange:
    """The collectives of one communicator, each guarded (see the module's docstring)."""

    def __init__(self, comm: Any, on_step: Callable[[Where], None] | None = None):
        self.comm = comm
        self.on_step = on_step  # told of each guarded collective as it starts (the live status)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        try:
            from mpi4py import MPI

            self.mpi = MPI if isinstance(comm, MPI.Comm) else None  # buffer paths need a real communicator
        except ImportError:
            self.mpi = None

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

    def _step(self, where: Where) -> None:
        if self.on_step is not None:
            self.on_step(where)

    def _header(self, where: Where, exc: BaseException | None) -> tuple[int, str, str | None]:
        return (self.rank, where.op, None if exc is None else _describe(exc))

    def alltoall(self, where: Where, produce: Callable[[], Sequence[Any]]) -> list[Any]:
        """produce() -> one payload per worker; returns the payload each worker sent this one."""
        self._step(where)
        payloads, exc = _run(produce)
        if exc is None and len(payloads) != self.size:
            payloads, exc = None, DataError(f"{where}: {len(payloads)} batches for {self.size} workers")
        failure = self._header(where, exc)
        sent = [(failure, p) for p in payloads] if exc is None else [(failure, None)] * self.size
        got = self.comm.alltoall(sent)
        self._settle(where, exc, [f for f, _ in got])
        return [p for _, p in got]

    def allgather(self, where: Where, produce: Callable[[], Any]) -> list[Any]:
        self._step(where)
        value, exc = _run(produce)
        got = self.comm.allgather((self._header(where, exc), value))
        self._settle(where, exc, [f for f, _ in got])
        return [v for _, v in got]

    def gather(self, where: Where, produce: Callable[[], Any], root: int) -> list[Any] | None:
        """The values at `root` (None elsewhere); only root learns of the others' failures."""
        self._step(where)
        self.check_root(where, root)
        value, exc = _run(produce)
        got = self.comm.gather((self._header(where, exc), value), root=root)
        self._settle(where, exc, [f for f, _ in got] if got is not None else ())
        return None if got is None else [v for _, v in got]

    def bcast(self, where: Where, produce: Callable[[], Any], root: int) -> Any:
        self._step(where)
        self.check_root(where, root)
        value, exc = _run(produce) if self.rank == root else (None, None)
        failure, value = self.comm.bcast((self._header(where, exc), value), root=root)
        self._settle(where, exc, [failure])
        return value

    def check_root(self, where: Where, root: int) -> None:
        if not isinstance(root, int) or not 0 <= root < self.size:
            raise DataError(f"{where}: root {root!r} is not a worker (0..{self.size - 1})")

    def alltoallv(self, where: Where, produce: Callable[[], tuple[Any, list[int]]]) -> Any:
        """produce() -> (array grouped by destination along axis 0, rows for each worker); returns the
        rows every worker sent here, concatenated in worker order. One Alltoallv of the raw buffer."""
        self._step(where)
        import numpy as np

        result, exc = _run(produce)
        block, counts = result if exc is None else (None, None)
        if exc is None:
            block = np.ascontiguousarray(block)
            meta = (block.dtype.str, block.shape[1:], list(counts))
        failure = self._header(where, exc)
        got = self.comm.alltoall([(failure, None if exc else (meta[0], meta[1], meta[2][d])) for d in range(self.size)])
        self._settle(where, exc, [f for f, _ in got])
        shapes = {(m[0], tuple(m[1])) for _, m in got}
        if len(shapes) != 1:
            raise DataError(f"{where}: workers hold arrays of different dtypes or row shapes: {sorted(shapes)}")
        return self._rows(block, counts, [m[2] for _, m in got])

    def _rows(self, block: Any, counts: Sequence[int], rows_in: Sequence[int]) -> Any:
        """block's rows, grouped by destination (counts), sent; rows_in[d] rows come from worker d."""
        import numpy as np

        block = np.ascontiguousarray(block)
        if self.mpi is None:  # a stand-in communicator: pickled slices (numpy pickles its buffer whole)
            starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
            parts = self.comm.alltoall([block[starts[d] : starts[d + 1]] for d in range(self.size)])
            return np.concatenate(parts) if parts else block[:0]
        row_bytes = block.dtype.itemsize * int(np.prod(block.shape[1:], dtype=np.int64))
        send_counts = np.asarray(counts, dtype=np.int64) * row_bytes
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
        failure = self._header(where, exc)
        if exc is not None:
            sent = [(failure, "objects", None)] * self.size
        elif result[0] == "columns":
            _, keys, values, counts = result
            sent = [(failure, "columns", (int(counts[d]), keys.dtype.str, values.dtype.str)) for d in range(self.size)]
        else:
            sent = [(failure, "objects", batch) for batch in result[1]]
        got = self.comm.alltoall(sent)
        self._settle(where, exc, [f for f, _, _ in got])
        kinds = {kind for _, kind, _ in got}
        if kinds == {"columns"}:
            dtypes = {m[1:] for _, _, m in got}
            if len(dtypes) == 1:
                rows_in = [m[0] for _, _, m in got]
                return ("columns", self._rows(keys, counts, rows_in), self._rows(values, counts, rows_in))
        if "columns" in kinds:  # some workers hold columns, some objects: all go as objects
            mine = self.alltoall(where, to_objects if result[0] == "columns" else lambda: [[]] * self.size)
            return ("objects", [b if k == "objects" else m for (_, k, b), m in zip(got, mine)])
        return ("objects", [b for _, _, b in got])

    def allreduce_array(self, array: Any, mpi_op_name: str, root: int | None = None) -> Any:
        """The element-wise reduction of equal-shaped arrays with MPI's built-in op (to root, or all)."""
        import numpy as np

        send = np.ascontiguousarray(array)
        op = getattr(self.mpi, mpi_op_name)
        if root is None:
            out = np.empty_like(send)
            self.comm.Allreduce(send, out, op=op)
            return out
        out = np.empty_like(send) if self.rank == root else None
        self.comm.Reduce(send, out, op=op, root=root)
        return out


def _displs(counts: Any) -> Any:
    import numpy as np

    displs = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    return displs
