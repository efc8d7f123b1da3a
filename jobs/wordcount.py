"""WordCount through the data API: lines split by byte ranges, words counted on each worker before
one shuffle, one part file of `word<TAB>count` lines per worker; returns the ten most frequent."""

import operator

from t2mpi import IWorker


class WordCount(IWorker):
    def execute(self, ctx):
        words = ctx.data.text(ctx.config["input"]).flat_map(str.split)
        counts = words.map(lambda w: (w, 1)).reduce_by_key(operator.add).cache()
        counts.map(lambda kv: f"{kv[0]}\t{kv[1]}").write_text(ctx.config["output"])
        return counts.top(10, key=lambda kv: (kv[1], kv[0]))
