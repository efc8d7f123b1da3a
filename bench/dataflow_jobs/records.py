"""The sort input of bench/dataflow.py and its answer, shared by every side.

The input: a .npy file of dtype S100, each element one record: a 10-byte random key, then a 90-byte
random payload; sorted bytewise (unsigned) by key. The answer: a summary per sorted partition (the
count, an order-independent checksum, whether it is sorted, its first and last keys); partitions in
worker order must join to one sorted whole.
"""

from __future__ import annotations

import os

import numpy as np
from partitions import combined  # noqa: F401 (the sort sides take it from here)
from words import peak_rss_mib  # noqa: F401 (the sort sides take it from here)

RECORD = np.dtype("S100")  # one record; bytes 0..9 are the key
KEY_BYTES = 10
_WORD_MIX = np.arange(1, 2 * 25, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)


def make_records(path: str, count: int, seed: int, chunk: int = 1_000_000) -> int:
    """Write `count` random 100-byte records as a .npy file of dtype S100; returns its size."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=RECORD, shape=(count,))
    for start in range(0, count, chunk):
        m = min(chunk, count - start)
        out[start : start + m] = rng.integers(0, 256, size=(m, RECORD.itemsize), dtype=np.uint8).view(RECORD)[:, 0]
    out.flush()
    del out
    return os.path.getsize(path)


def as_bytes(block: np.ndarray) -> np.ndarray:
    """Records as an (n, 100) uint8 array (a view where the block is contiguous)."""
    if block.dtype == np.uint8 and block.ndim == 2:
        return block
    block = np.ascontiguousarray(block, dtype=RECORD)
    return block.view(np.uint8).reshape(len(block), RECORD.itemsize)


def key_ints(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys of (n, 100) uint8 rows as two integers, (bytes 0..7, bytes 8..9) big-endian, so that
    integer order is the keys' bytewise order."""
    hi = np.ascontiguousarray(rows[:, :8]).view(">u8").ravel().astype(np.uint64)
    lo = np.ascontiguousarray(rows[:, 8:KEY_BYTES]).view(">u2").ravel().astype(np.uint16)
    return hi, lo


def key_order(rows: np.ndarray) -> np.ndarray:
    """The permutation that sorts (n, 100) uint8 rows by key: one integer sort on the first 8 key
    bytes, and a lexicographic one only when two records share them."""
    hi, lo = key_ints(rows)
    order = np.argsort(hi)
    s = hi[order]
    if len(s) > 1 and np.any(s[1:] == s[:-1]):
        order = np.lexsort((lo, hi))
    return order


def checksum(rows: np.ndarray) -> int:
    """An order-independent checksum of (n, 100) uint8 rows: the sum of a per-record hash."""
    if not len(rows):
        return 0
    words = np.ascontiguousarray(rows).view("<u4")
    h = np.zeros(len(rows), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, mix in enumerate(_WORD_MIX):  # column by column: numpy sums short rows slowly
            h += words[:, j].astype(np.uint64) * mix
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        return int(h.sum(dtype=np.uint64))


def summary(block: np.ndarray) -> dict:
    """What a side reports for one sorted partition of records."""
    rows = as_bytes(block)
    hi, lo = key_ints(rows)
    ordered = bool(np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] >= lo[:-1]))))
    return {
        "count": len(rows),
        "checksum": checksum(rows),
        "sorted": ordered,
        "first": rows[0, :KEY_BYTES].tobytes().hex() if len(rows) else None,
        "last": rows[-1, :KEY_BYTES].tobytes().hex() if len(rows) else None,
    }
