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


def read_lines(name: str, start: int, stop: int) -> Iterator[str]:
    """The lines of `name` whose first byte lies in [start, stop), without their line ending."""
    with open(name, "rb") as f:
        pos = start
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":  # a line began before start: it belongs to the previous range
                pos += len(f.readline())
        while pos < stop:
            line = f.readline()
            if not line:
                break
            pos += len(line)
            yield line.rstrip(b"\r\n").decode("utf-8")


def text_part(files: list[tuple[str, int]], index: int, count: int) -> Iterator[str]:
    for name, start, stop in byte_ranges(files, index, count):
        yield from read_lines(name, start, stop)


def function_part(fn: Callable[[int, int], Iterable[Any]], index: int, count: int) -> Iterable[Any]:
    return fn(index, count)
