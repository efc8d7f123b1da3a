"""The t2mpi side of bench/dataflow.py's sort, through the data API: the records (.npy of S100, a
10-byte key first) memory-mapped and split by rows, then sort_by. A record's bytes order it by its
key, so the sort needs no key function; each worker returns the summary of its sorted partition
(built in numpy from the partition's elements) and its peak RSS."""

import numpy as np
from records import RECORD, peak_rss_mib, summary

from t2mpi import IWorker


def _summarise(records):
    return [summary(np.array(list(records), dtype=RECORD))]


class Sort(IWorker):
    def execute(self, ctx):
        ordered = ctx.data.npy(ctx.config["input"]).sort_by()
        (part,) = list(ordered.map_partitions(_summarise))  # this worker's partition
        return {"part": part, "rss_mib": peak_rss_mib()}
