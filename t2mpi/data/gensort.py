"""gensort-like records made from a seed: the input of the terasort example, of tests and benchmarks.

Record i of a seed's sequence is the same whatever range is asked for, so each worker can make its own
share: records come in blocks of BLOCK, block b from numpy's default_rng([seed, b]). With ascii=True
(gensort -a) every byte is printable: the key random in ' '..'~', the payload the record's index as 16
hex digits (as much of it as fits) then random printable bytes; with ascii=False every byte is random.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BLOCK = 1 << 16
_HEX = b"0123456789ABCDEF"


def records(start: int, stop: int, seed: int = 0, size: int = 100, key_size: int = 10, ascii: bool = True) -> Any:
    """Records [start, stop) of the seed's sequence: a 1-D block of dtype [("key", S<key_size>),
    ("value", V<size - key_size>)], as Data.records reads them."""
    import numpy as np

    from .sources import record_dtype

    if not 0 <= start <= stop or not 0 < key_size < size:
        raise ValueError(
            f"gensort.records: needs 0 <= start <= stop and 0 < key_size < size, got {start}, {stop}, {key_size}, {size}"
        )
    out = np.empty((stop - start, size), np.uint8)
    lo, hi = (32, 127) if ascii else (0, 256)
    for b in range(start // BLOCK, -(-stop // BLOCK)):
        first, last = max(start, b * BLOCK), min(stop, (b + 1) * BLOCK)
        block = np.random.default_rng([seed, b]).integers(lo, hi, size=(BLOCK, size), dtype=np.uint8)
        out[first - start : last - start] = block[first - b * BLOCK : last - b * BLOCK]
    if ascii:
        digits = min(16, size - key_size)
        index = np.arange(start, stop, dtype=np.uint64)
        for j in range(digits):
            nibble = (index >> np.uint64(4 * (15 - j))) & np.uint64(15)
            out[:, key_size + j] = np.frombuffer(_HEX, np.uint8)[nibble.astype(np.intp)]
    return out.view(record_dtype(size, key_size)).reshape(-1)


def write(path: str, count: int, seed: int = 0, size: int = 100, key_size: int = 10, ascii: bool = True) -> str:
    """Write records [0, count) of the seed's sequence to `path` (atomically); returns path."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        for start in range(0, count, BLOCK):
            f.write(records(start, min(count, start + BLOCK), seed, size, key_size, ascii).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
