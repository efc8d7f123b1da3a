"""The t2mpi side of bench/dataflow.py's sort, through the data API: the records (.npy of S100, a
10-byte key first) memory-mapped and split by rows, then sort_by. A record's bytes order it by its
key, so the sort needs no key function; each worker returns the summary of its sorted partition
(in numpy: the partition is a block) and its peak RSS."""

from records import peak_rss_mib, summary

from t2mpi import IWorker


def _summarise(records):
    return [summary(records)]  # the sorted partition: an S100 block


class Sort(IWorker):
    def execute(self, ctx):
        ordered = ctx.data.npy(ctx.config["input"]).sort_by()
        (part,) = list(ordered.map_partitions(_summarise))  # this worker's partition
        return {"part": part, "rss_mib": peak_rss_mib()}
