"""The t2mpi side of bench/dataflow.py's WordCount, through the data API (jobs/wordcount.py's plan
without its output files). Each worker returns its peak RSS; worker 0 also the answer."""

import operator
from collections import Counter

from words import peak_rss_mib, top_key

from t2mpi import IWorker


def _result(ctx, top) -> dict:
    out = {"rss_mib": peak_rss_mib()}
    if ctx.worker_id == 0:
        out["top"] = [(w, int(c)) for w, c in top]
    return out


class WordCount(IWorker):
    """The issue's plan: text -> flat_map(str.split) -> (w, 1) -> reduce_by_key(add) -> top(10)."""

    def execute(self, ctx):
        words = ctx.data.text(ctx.config["input"]).flat_map(str.split)
        counts = words.map(lambda w: (w, 1)).reduce_by_key(operator.add)
        return _result(ctx, counts.top(10, key=top_key))


def _count_lines(lines):
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line.split())
    return counts.items()


class WordCountByPartition(IWorker):
    """The same through map_partitions: a Counter per partition, then reduce_by_key(add) merges."""

    def execute(self, ctx):
        counts = ctx.data.text(ctx.config["input"]).map_partitions(_count_lines).reduce_by_key(operator.add)
        return _result(ctx, counts.top(10, key=top_key))


class WordCountByValue(IWorker):
    """The same with count_by_value: each worker counts its words (a Counter), then one shuffle."""

    def execute(self, ctx):
        counts = ctx.data.text(ctx.config["input"]).flat_map(str.split).count_by_value()
        return _result(ctx, counts.top(10, key=top_key))
