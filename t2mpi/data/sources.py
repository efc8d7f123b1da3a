"""Sources: where a data set's partitions come from. Each function gives worker `index` of `count` its
partition, lazily: an iterator (or a numpy block), nothing read before it is iterated."""

from __future__ import annotations

import os

from .errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

_GLOB_CHARS = frozenset("*?[")


def block_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """Rows [start, stop) of `n` for worker `index` of `count`: contiguous, sizes differ by at most one."""
    return n * index // count, n * (index + 1) // count


def iterable_part(items: Iterable[Any], index: int, count: int) -> Iterable[Any]:
    """A contiguous share of `items` (a range or sequence is sliced without copying; others are listed)."""
    if not hasattr(items, "__len__") or not hasattr(items, "__getitem__"):
        items = list(items)
    start, stop = block_bounds(len(items), index, count)
    return items[start:stop]


def array_part(array: Any, index: int, count: int) -> Any:
    """Rows of a numpy array (or a memory map): a view, not a copy."""
    start, stop = block_bounds(len(array), index, count)
    return array[start:stop]


def npy_part(path: str, index: int, count: int) -> Any:
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(f"npy: no file {path!r}") from None
    except ValueError as exc:
        raise DataError(f"npy: {path!r} is not a .npy file: {exc}") from None
    if array.ndim == 0:
        raise DataError(f"npy: {path!r} holds a 0-d array; it has no rows to split")
    return array_part(array, index, count)


def text_files(path: str) -> list[tuple[str, int]]:
    """(file, size) of a text source: one file, the files a glob matches, or a folder's files (sorted)."""
    import glob

    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith((".", "_")))
        files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
    elif any(c in _GLOB_CHARS for c in path):
        files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    if not files:
        raise DataError(f"text: no file matches {path!r} (a file, a glob or a folder of files)")
    return [(f, os.path.getsize(f)) for f in files]


def byte_ranges(files: list[tuple[str, int]], index: int, count: int) -> list[tuple[str, int, int]]:
    """Worker `index`'s share of the files' bytes, taken as one sequence: (file, start, stop) pieces."""
    total = sum(size for _, size in files)
    start, stop = block_bounds(total, index, count)
    pieces, offset = [], 0
    for name, size in files:
        lo, hi = max(start, offset), min(stop, offset + size)
        if lo < hi:
            pieces.append((name, lo - offset, hi - offset))
        offset += size
    return pieces


CHUNK = 1 << 22  # bytes a text source reads at a time


def line_start(f: Any, offset: int) -> int:
    """The offset of the first line that starts at or after `offset` (f is open in binary)."""
    if offset <= 0:
        return 0
    f.seek(offset - 1)
    return offset - 1 + len(f.readline())


def read_chunks(name: str, start: int, stop: int) -> Iterator[str]:
    """The lines of `name` whose first byte lies in [start, stop), as decoded chunks of whole lines
    (each ends with its line's newline, except perhaps the file's last)."""
    with open(name, "rb") as f:
        pos = line_start(f, start)
        f.seek(pos)
        while pos < stop:
            chunk = f.read(min(CHUNK, stop - pos))
            if not chunk:
                break
            if not chunk.endswith(b"\n"):
                chunk += f.readline()  # the rest of the last line (it may run past stop)
            pos += len(chunk)
            yield chunk.decode("utf-8")


def read_lines(name: str, start: int, stop: int) -> Iterator[str]:
    """The lines of `name` whose first byte lies in [start, stop), without their line ending."""
    for chunk in read_chunks(name, start, stop):
        lines = chunk.split("\n")
        if lines[-1] == "":
            lines.pop()
        if "\r" in chunk:
            lines = [line.rstrip("\r") for line in lines]
        yield from lines


class TextPart:
    """A text source's partition: an iterator of lines. chunks(), called before any line is taken,
    gives the same text as decoded chunks of whole lines, so that a stage that splits on whitespace
    (flat_map(str.split)) runs on big strings in C instead of line by line."""

    __slots__ = ("pieces", "_lines")

    def __init__(self, pieces: list[tuple[str, int, int]]):
        self.pieces = pieces
        self._lines: Iterator[str] | None = None

    def __iter__(self) -> TextPart:
        return self

    def __next__(self) -> str:
        if self._lines is None:
            self._lines = (line for name, start, stop in self.pieces for line in read_lines(name, start, stop))
        return next(self._lines)

    def chunks(self) -> Iterator[str]:
        if self._lines is not None:
            raise RuntimeError("TextPart.chunks() after lines were taken")
        for name, start, stop in self.pieces:
            yield from read_chunks(name, start, stop)


def text_part(files: list[tuple[str, int]], index: int, count: int) -> TextPart:
    return TextPart(byte_ranges(files, index, count))


def function_part(fn: Callable[[int, int], Iterable[Any]], index: int, count: int) -> Iterable[Any]:
    return fn(index, count)
