"""The single-process side of bench/dataflow.py (plain Python and numpy, no MPI); it prints one line,
RESULT {json}. Run: python bench/dataflow_jobs/single.py (wordcount TEXTFILE | sort RECORDS.npy |
join FACTS.csv DIMS.csv | kmeans PARTS key=value...)"""

import json
import os
import sys
from collections import Counter

from words import peak_rss_mib, top10


def wordcount(path: str) -> dict:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as f:
        while chunk := f.read(1 << 24) + f.readline():  # whole lines, 16 MiB at a time
            counts.update(chunk.split())
    return {"top": top10(counts.items()), "words": sum(counts.values()), "distinct": len(counts)}


def sort(path: str) -> dict:
    import numpy as np
    from records import as_bytes, key_order, summary

    records = np.load(path)
    ordered = records[key_order(as_bytes(records))]
    return {"parts": [summary(ordered)]}


def join(facts_path: str, dims_path: str) -> dict:
    from tables import DIMS, FACTS, join_group_sums, read_share, summary_of_arrays

    return summary_of_arrays(*join_group_sums(read_share(facts_path, 0, 1, FACTS), read_share(dims_path, 0, 1, DIMS)))


def kmeans(parts: str, *settings: str) -> dict:
    """jobs/kmeans.py's sequential reference over the points of `parts` partitions (a partition's
    points depend on where it starts, so the data set is the one W workers make)."""
    sys.path.insert(
        0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "jobs")
    )
    from kmeans import kmeans_sequential

    cfg = {"seed": 42, "points": 200000, "dims": 8, "clusters": 16, "iterations": 50}
    cfg.update((k, int(v)) for k, v in (s.split("=") for s in settings))
    return {"centroids": kmeans_sequential(cfg, int(parts)).tolist()}


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    result = {"wordcount": wordcount, "sort": sort, "join": join, "kmeans": kmeans}[what](*args)
    print("RESULT " + json.dumps({**result, "rss_mib": peak_rss_mib()}), flush=True)
