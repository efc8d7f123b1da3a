"""A join and a group sum through the data API: facts (key,value) joined with dims (key,group) on
key, the joined values summed per group. Both CSVs are read by byte ranges on every worker as
integer-keyed numpy columns, so the join (one Alltoallv of rows per side, then searchsorted) and the
sum per group (np.unique + reduceat, one Alltoallv) stay in numpy; past resources.data_memory both
go in rounds and spill by a hash of the key (t2mpi/data/npgrace.py). Worker 0 writes the CSV
`group,sum`, sorted by group."""

from __future__ import annotations

import operator
import os

from t2mpi import IWorker
from t2mpi.data.columns import Columns


def by_group(joined: Columns) -> Columns:
    """The joined rows (key, (value, group)) keyed by group instead."""
    return Columns(joined.values["right"], joined.values["left"])


def write_csv(path: str, sums: list[tuple[int, float]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("group,sum\n")
        f.writelines(f"{group},{total!r}\n" for group, total in sums)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Join(IWorker):
    def execute(self, ctx):
        config = ctx.config
        facts = ctx.data.csv(config["facts"], key="key", dtypes={"key": "int64", "value": "float64"})
        dims = ctx.data.csv(config["dims"], key="key", dtypes={"key": "int64", "group": "int64"})
        sums = facts.join(dims).map_partitions(by_group).reduce_by_key(operator.add)
        result = sums.collect(root=0)
        if result is None:
            return None
        ordered = sorted(result)
        write_csv(config["output"], ordered)
        return len(ordered)
