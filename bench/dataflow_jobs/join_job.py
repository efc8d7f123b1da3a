"""The t2mpi side of bench/dataflow.py's join + group sum, through the data API: both CSV files as
key columns, an inner join (numpy Columns with left/right fields), re-keyed by group in numpy,
summed per group (numpy), collected and sorted. Each worker
returns its peak RSS; worker 0 also the answer's summary."""

import operator

from tables import summary
from words import peak_rss_mib

from t2mpi import IWorker
from t2mpi.data.columns import Columns


class JoinGroupSum(IWorker):
    def execute(self, ctx):
        facts = ctx.data.csv(ctx.config["facts"], key="key")  # Columns: keys int64, values float64
        dims = ctx.data.csv(ctx.config["dims"], key="key")  # Columns: keys int64, values int64 (group)
        joined = facts.join(dims)  # inner: Columns of keys, values with fields left (value), right (group)
        by_group = joined.map_partitions(lambda c: Columns(c.values["right"], c.values["left"]))
        sums = by_group.reduce_by_key(operator.add)
        result = sorted(sums.collect())  # [(group, sum), ...]
        out = {"rss_mib": peak_rss_mib()}
        if ctx.worker_id == 0:
            out["answer"] = summary(result)
        return out
