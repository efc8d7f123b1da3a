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


def text_files(path: str, source: str = "text") -> list[tuple[str, int]]:
    """(file, size) of a file source: one file, the files a glob matches, or a folder's files (sorted;
    names starting with '.' or '_' are left out). `source` names the source in the error."""
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
        raise DataError(f"{source}: no file matches {path!r} (a file, a glob or a folder of files)")
    return [(f, os.path.getsize(f)) for f in files]


def byte_ranges(files: list[tuple[str, int]], index: int, count: int) -> list[tuple[str, int, int]]:
    """Worker `index`'s share of the files' bytes, taken as one sequence: (file, start, stop) pieces."""
    return region_ranges([(name, 0, size) for name, size in files], index, count)


def region_ranges(regions: list[tuple[str, int, int]], index: int, count: int) -> list[tuple[str, int, int]]:
    """Worker `index`'s share of the regions' bytes ((file, begin, end) each), taken as one sequence:
    (file, start, stop) pieces, offsets in the file."""
    total = sum(end - begin for _, begin, end in regions)
    start, stop = block_bounds(total, index, count)
    pieces, offset = [], 0
    for name, begin, end in regions:
        size = end - begin
        lo, hi = max(start, offset), min(stop, offset + size)
        if lo < hi:
            pieces.append((name, begin + lo - offset, begin + hi - offset))
        offset += size
    return pieces


def line_chunks(name: str, start: int, stop: int, chunk: int = 1 << 24) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of about `chunk` bytes, each of whole lines (with their line endings):
    together the lines of `name` whose first byte lies in [start, stop), as read_lines takes them."""
    with open(name, "rb") as f:
        pos = start
        f.seek(max(start - 1, 0))
        if start > 0 and f.read(1) != b"\n":  # a line began before start: it belongs to the previous range
            pos += len(f.readline())
        while pos < stop:
            buf = f.read(min(chunk, stop - pos))
            if not buf:
                break
            if not buf.endswith(b"\n"):
                buf += f.readline()  # the last line began before stop: it is ours whole
            yield pos, buf
            pos += len(buf)


CHUNK = 1 << 22  # bytes a text source reads at a time


def read_chunks(name: str, start: int, stop: int) -> Iterator[str]:
    """The lines of `name` whose first byte lies in [start, stop), as decoded chunks of whole lines
    (each ends with its line's newline, except perhaps the file's last)."""
    for _, buf in line_chunks(name, start, stop, CHUNK):
        yield buf.decode("utf-8")


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


# -- CSV: a header line per file, then rows split by byte ranges ------------------------------------
_SAMPLE_ROWS = 1000  # the rows (of the first file that has rows) a column's type is inferred from
_BOM = b"\xef\xbb\xbf"


class CsvPlan:
    """What every worker knows of a CSV source before reading it: the data regions of its files (the
    bytes after each header line), the columns, the type each is read as, and the key column."""

    __slots__ = ("path", "regions", "names", "dtypes", "inferred", "key", "first")

    def __init__(self, path: str, regions: list, names: list, dtypes: list, inferred: set, key: str | None, first):
        self.path, self.regions, self.names, self.dtypes = path, regions, names, dtypes
        self.inferred, self.key, self.first = inferred, key, first


def _header(name: str, line: bytes) -> list[str]:
    import csv

    try:
        text = line.removeprefix(_BOM).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError(f"csv: {name}:1: the header line is not UTF-8 text") from None
    names = next(csv.reader([text]), [])
    for i, col in enumerate(names):
        if not col:
            raise DataError(f"csv: {name}:1: column {i + 1} of the header has no name")
        if col in names[:i]:
            raise DataError(f"csv: {name}:1: column {col!r} appears twice in the header")
    if not names:
        raise DataError(f"csv: {name}:1: the header line is empty; a CSV file begins with a line of column names")
    return names


def _differs(name: str, got: list[str], first: str, want: list[str]) -> DataError:
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    if i < len(got) and i < len(want):
        what = f"column {i + 1} is {got[i]!r}, where {first}:1 has {want[i]!r}"
    elif i < len(got):
        what = f"it has column {got[i]!r} that {first}:1 has not"
    else:
        what = f"it lacks column {want[i]!r} of {first}:1"
    return DataError(f"csv: {name}:1: the header differs from the first file's: {what}")


def csv_plan(path: str, key: str | None, dtypes: dict[str, Any] | None) -> CsvPlan:
    """Read each file's header (the same in all files), check key and dtypes, infer the other types."""
    import numpy as np

    regions, names, first = [], None, None
    for name, size in text_files(path, "csv"):
        if size == 0:
            continue
        with open(name, "rb") as f:
            line = f.readline()
        got = _header(name, line)
        if names is None:
            names, first = got, name
        elif got != names:
            raise _differs(name, got, first, names)
        regions.append((name, len(line), size))
    if names is None:
        raise DataError(f"csv: every file of {path!r} is empty; a CSV file begins with a line of column names")
    columns = ", ".join(names)
    given = {}
    for col, dt in (dtypes or {}).items():
        if col not in names:
            raise DataError(f"csv: dtypes names {col!r}, which is not a column of {first} (columns: {columns})")
        try:
            given[col] = np.dtype(dt)
        except TypeError:
            raise DataError(
                f"csv: dtypes[{col!r}] = {dt!r} is not a numpy dtype (e.g. 'int64', 'float64', 'U16')"
            ) from None
    if key is not None:
        if key not in names:
            raise DataError(f"csv: key {key!r} is not a column of {first} (columns: {columns})")
        if len(names) == 1:
            raise DataError(f"csv: key {key!r} is the only column of {first}; there is no value column")
    sample = _sample(regions)
    inferred = {col for col in names if col not in given}
    types = [given[col] if col in given else _infer(sample, i) for i, col in enumerate(names)]
    return CsvPlan(path, regions, names, types, inferred, key, sample[0])


def _sample(regions: list[tuple[str, int, int]]) -> tuple[str | None, bytes]:
    """(file, bytes) of the first _SAMPLE_ROWS non-blank rows of the first file that has any."""
    for name, begin, _end in regions:
        rows = []
        with open(name, "rb") as f:
            f.seek(begin)
            while len(rows) < _SAMPLE_ROWS and (line := f.readline()):
                if line.strip():
                    rows.append(line)
        if rows:
            return name, b"".join(rows)
    return None, b""


def _loadtxt(data: bytes, dtype: Any, usecols: Any = None) -> Any:
    import io
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data"
        return np.loadtxt(
            io.BytesIO(data),
            delimiter=",",
            quotechar='"',
            comments=None,
            dtype=dtype,
            usecols=usecols,
            ndmin=1,
            encoding="utf-8",
        )


def _infer(sample: tuple[str | None, bytes], column: int) -> Any:
    """int64 when every sampled value parses as an integer, else float64 when every one parses as a
    number, else str (numpy 'U', as wide as the partition's longest value)."""
    import numpy as np

    for dt in (np.int64, np.float64):
        try:
            _loadtxt(sample[1], dt, usecols=[column])
            return np.dtype(dt)
        except ValueError:
            continue
    return np.dtype("U")


def _read_as(dt: Any) -> Any:
    """The dtype loadtxt reads a column as: strings of no given width (and bytes) as objects."""
    return dt if dt.kind != "S" and not (dt.kind == "U" and dt.itemsize == 0) else "O"


def _parse(plan: CsvPlan, name: str, offset: int, buf: bytes) -> Any:
    import numpy as np

    read = np.dtype([(col, _read_as(dt)) for col, dt in zip(plan.names, plan.dtypes)])
    try:
        rows = _loadtxt(buf, read)
    except ValueError as exc:
        raise _located(plan, name, offset, buf, read, exc) from None
    if read == np.dtype(list(zip(plan.names, plan.dtypes))):
        return rows
    fields = []
    for col, dt in zip(plan.names, plan.dtypes):
        values = rows[col]
        if dt.kind == "U" and values.dtype.kind == "O":
            values = values.astype(str) if len(values) else np.empty(0, "U1")
        elif dt.kind == "S":
            values = np.char.encode(values.astype(str), "utf-8") if len(values) else np.empty(0, "S1")
            values = values if dt.itemsize == 0 else values.astype(dt)
        fields.append((col, values))
    out = np.empty(len(rows), [(col, v.dtype) for col, v in fields])
    for col, values in fields:
        out[col] = values
    return out


def _located(plan: CsvPlan, name: str, offset: int, buf: bytes, read: Any, exc: ValueError) -> DataError:
    """The error of the first line of `buf` that does not parse, named by file:line and column."""
    lines = buf.split(b"\n")

    def failure(lo: int, hi: int) -> ValueError | None:
        try:
            _loadtxt(b"\n".join(lines[lo:hi]), read)
        except ValueError as e:
            return e
        return None

    lo, hi, err = 0, len(lines), exc
    while hi - lo > 1:  # bisect: [lo, hi) holds a line that fails
        mid = (lo + hi) // 2
        if (e := failure(lo, mid)) is not None:
            hi, err = mid, e
        elif (e := failure(mid, hi)) is not None:
            lo, err = mid, e
        else:
            break
    return DataError(f"csv: {name}:{_lines_before(name, offset) + lo + 1}: {_describe(plan, err)}")


def _describe(plan: CsvPlan, err: ValueError) -> str:
    import re

    if isinstance(err, UnicodeDecodeError):
        return "the line is not UTF-8 text"
    text = str(err)
    if m := re.search(r"could not convert string (.*) to (\w+) at row \d+, column (\d+)", text):
        col = plan.names[int(m[3]) - 1]
        what = f"column {col!r}: {m[1]} does not parse as {m[2]}"
        if col in plan.inferred:
            what += f" (the type inferred from the first rows of {plan.first}; set dtypes={{{col!r}: ...}})"
        return what
    if m := re.search(r"requires (\d+) columns but (\d+) were found", text):
        return f"{m[2]} fields, but the header has {m[1]} columns ({', '.join(plan.names)})"
    return re.sub(r" at row \d+", "", text)


def _lines_before(name: str, offset: int) -> int:
    """The number of line endings in the first `offset` bytes of `name`."""
    count = 0
    with open(name, "rb") as f:
        while offset > 0 and (block := f.read(min(offset, 1 << 24))):
            count += block.count(b"\n")
            offset -= len(block)
    return count


def csv_part(plan: CsvPlan, index: int, count: int) -> Any:
    """Worker `index`'s rows: a structured block (one field per column), or Columns on plan.key."""
    import numpy as np

    blocks = [
        _parse(plan, name, offset, buf)
        for name, start, stop in region_ranges(plan.regions, index, count)
        for offset, buf in line_chunks(name, start, stop)
    ]
    if blocks:
        block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    else:
        block = np.empty(
            0,
            [
                (c, dt if dt.itemsize or dt.kind not in "SU" else f"{dt.kind}1")
                for c, dt in zip(plan.names, plan.dtypes)
            ],
        )
    if plan.key is None:
        return block
    from numpy.lib import recfunctions

    from .columns import Columns

    others = [c for c in plan.names if c != plan.key]
    keys = block[plan.key]  # a view into the parsed block, as the values are: no copy
    if len(others) == 1:
        return Columns(keys, block[others[0]])
    return Columns(keys, recfunctions.repack_fields(block[others]))


# -- fixed-size binary records (gensort's: a key, then a payload) ------------------------------------
def record_dtype(size: int, key_size: int) -> Any:
    import numpy as np

    return np.dtype([("key", f"S{key_size}"), ("value", f"V{size - key_size}")])


def record_files(path: str, size: int, key_size: int) -> list[tuple[str, int]]:
    """(file, records) of a records source; every file must hold whole records."""
    if type(size) is not int or type(key_size) is not int or not 0 < key_size < size:
        raise DataError(f"records: size={size!r}, key_size={key_size!r}; they must be ints with 0 < key_size < size")
    files = []
    for name, nbytes in text_files(path, "records"):
        if nbytes % size:
            raise DataError(f"records: {name} is {nbytes} bytes, not a whole number of {size}-byte records")
        files.append((name, nbytes // size))
    return files


def records_part(files: list[tuple[str, int]], size: int, key_size: int, index: int, count: int) -> Any:
    """Worker `index`'s whole records: a memory map of one file's, or one block joining several files'."""
    import numpy as np

    dtype = record_dtype(size, key_size)
    start, stop = block_bounds(sum(n for _, n in files), index, count)
    pieces, offset = [], 0
    for name, n in files:
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(np.memmap(name, dtype=dtype, mode="r", offset=(lo - offset) * size, shape=(hi - lo,)))
        offset += n
    if not pieces:
        return np.empty(0, dtype)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
