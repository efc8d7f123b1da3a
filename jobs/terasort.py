"""TeraSort through the data API: 100-byte records (a 10-byte key, a 90-byte payload, as gensort
makes them) read from a folder (or made from a seed), sorted by key bytewise unsigned with a
sample-based range partition, written as one part-NNNNN file of raw records per worker. The part
files, concatenated in name order, hold every input record, sorted by key."""

from __future__ import annotations

import numpy as np

from t2mpi import IWorker

RECORD = np.dtype([("key", "S10"), ("value", "V90")])
BLOCK = 100_000  # records made from one seed; record j is the same whatever the number of workers


def generate(count: int, seed: int, start: int, stop: int) -> np.ndarray:
    """Records start..stop-1 of `count` made from `seed`: random key and payload bytes."""
    out = np.empty(max(0, stop - start), dtype=RECORD)
    raw = out.view(np.uint8).reshape(len(out), RECORD.itemsize)
    for b in range(start // BLOCK, -(-stop // BLOCK)):
        lo, hi = b * BLOCK, min(count, (b + 1) * BLOCK)
        rows = np.random.default_rng([seed, b]).integers(0, 256, size=(hi - lo, RECORD.itemsize), dtype=np.uint8)
        a, z = max(lo, start), min(hi, stop)
        raw[a - start : z - start] = rows[a - lo : z - lo]
    return out


class TeraSort(IWorker):
    def execute(self, ctx):
        config = ctx.config
        if config.get("input"):
            records = ctx.data.records(config["input"], size=RECORD.itemsize, key_size=10)
        else:
            count, seed = int(config["generate"]), int(config.get("seed", 0))
            records = ctx.data.from_function(lambda i, n: generate(count, seed, count * i // n, count * (i + 1) // n))
        ordered = records.sort_by("key").cache()  # written, then counted: sorted once
        ordered.write_records(config["output"])
        return ordered.count()
