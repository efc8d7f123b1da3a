"""TeraSort through the data API: 100-byte records (a 10-byte key, a 90-byte payload, as gensort
makes them) read from a folder, or made from a seed (t2mpi.data.gensort); sorted by key bytewise
unsigned with a sample-based range partition; written as one part-NNNNN file of raw records per
worker. The part files, concatenated in name order, hold every input record, sorted by key. Past
resources.data_memory the sort goes in rounds and spills sorted runs (t2mpi/data/npruns.py)."""

from __future__ import annotations

from t2mpi import IWorker
from t2mpi.data import gensort


class TeraSort(IWorker):
    def execute(self, ctx):
        config = ctx.config
        if config.get("input"):
            records = ctx.data.records(config["input"], size=100, key_size=10)
        else:
            count, seed = int(config["generate"]), int(config.get("seed", 0))
            # record j is the same on any number of workers (gensort: blocks made from [seed, block])
            records = ctx.data.from_function(lambda i, n: gensort.records(count * i // n, count * (i + 1) // n, seed))
        ordered = records.sort_by("key").cache()  # written, then counted: sorted once
        ordered.write_records(config["output"])
        return ordered.count()
