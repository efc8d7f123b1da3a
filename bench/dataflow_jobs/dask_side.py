"""The Dask sides of bench/dataflow.py, run in the side venv .venv-dask (never a dependency of t2mpi);
each prints one line, RESULT {json}, the same answer as the single process's.

Dask runs a distributed LocalCluster of W worker processes with one thread each (processes, not
threads: the work is CPU-bound Python, and the GIL would serialise threads), no dashboard, the
workers' memory limit left to Dask (system memory / W), shuffles by Dask's default (p2p). Inputs are
split into W partitions. rss_mib is the largest peak RSS of the worker processes (client.run).

Run: python dask_side.py WORKLOAD API WORKERS SCRATCH INPUT...
  wordcount df|bag TEXTFILE;  sort df RECORDS.npy;  join df FACTS.csv DIMS.csv
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blocksize(path: str, workers: int) -> int:
    return max(1 << 16, -(-os.path.getsize(path) // workers))


def wordcount_df(workers: int, path: str) -> dict:
    import csv

    import dask.dataframe as dd
    from words import top10

    lines = dd.read_csv(
        path, header=None, names=["line"], sep="\x1f", quoting=csv.QUOTE_NONE, blocksize=blocksize(path, workers)
    )
    counts = lines["line"].str.split().explode().value_counts().compute()
    return {"top": top10(counts.items()), "words": int(counts.sum()), "distinct": len(counts)}


def wordcount_bag(workers: int, path: str) -> dict:
    import dask.bag as db
    from words import top10

    counts = db.read_text(path, blocksize=blocksize(path, workers)).str.split().flatten().frequencies().compute()
    return {"top": top10(counts), "words": sum(c for _, c in counts), "distinct": len(counts)}


def _records_frame(path: str, part: int, parts: int):
    """Partition `part` of `parts` of the records: the key as two integers (hi, lo: bytewise order)
    and the whole 100-byte record as an Arrow binary column."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from records import as_bytes, key_ints

    records = np.load(path, mmap_mode="r")
    rows = as_bytes(np.array(records[len(records) * part // parts : len(records) * (part + 1) // parts]))
    hi, lo = key_ints(rows)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(100), len(rows), [None, pa.py_buffer(rows)])
    record = pd.Series(fixed.cast(pa.binary()), dtype=pd.ArrowDtype(pa.binary()))
    return pd.DataFrame({"hi": hi, "lo": lo, "record": record})


def _summarise(frame):
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from records import summary

    fixed = pa.chunked_array(pa.array(frame["record"])).combine_chunks().cast(pa.binary(100))
    data = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)[fixed.offset * 100 : (fixed.offset + len(fixed)) * 100]
    return pd.DataFrame({"summary": [json.dumps(summary(data.reshape(len(fixed), 100)))]})


def sort_df(workers: int, path: str) -> dict:
    import dask.dataframe as dd

    frames = dd.from_map(_records_frame, [path] * workers, range(workers), [workers] * workers)
    ordered = frames.sort_values(["hi", "lo"], npartitions=workers)
    parts = ordered.map_partitions(_summarise, meta={"summary": "object"}).compute()
    return {"parts": [json.loads(s) for s in parts["summary"]]}


def join_df(workers: int, facts_path: str, dims_path: str) -> dict:
    import dask.dataframe as dd
    from tables import summary

    facts = dd.read_csv(
        facts_path, dtype={"key": "int64", "value": "float64"}, blocksize=blocksize(facts_path, workers)
    )
    dims = dd.read_csv(dims_path, dtype={"key": "int64", "group": "int64"}, blocksize=blocksize(dims_path, workers))
    sums = facts.merge(dims, on="key").groupby("group")["value"].sum().compute().sort_index()
    return summary(sums.items())


SIDES = {
    ("wordcount", "df"): wordcount_df,
    ("wordcount", "bag"): wordcount_bag,
    ("sort", "df"): sort_df,
    ("join", "df"): join_df,
}


def main() -> None:
    workload, api, workers, scratch, *inputs = sys.argv[1:]
    side = SIDES.get((workload, api))
    if side is None:
        sys.exit(f"dask_side.py: no side {workload} {api}; there are {', '.join(' '.join(k) for k in SIDES)}")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None, local_directory=scratch
    )
    with cluster, Client(cluster) as client:
        result = side(int(workers), *inputs)
        rss = max(client.run(_peak_rss_mib).values())
    print("RESULT " + json.dumps({**result, "rss_mib": rss}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
