"""The single-process side of bench/dataflow.py (plain Python and numpy, no MPI); it prints one line,
RESULT {json}. Run: python bench/dataflow_jobs/single.py (wordcount TEXTFILE | sort RECORDS.npy)"""

import json
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


if __name__ == "__main__":
    what, path = sys.argv[1:3]
    result = {"wordcount": wordcount, "sort": sort}[what](path)
    print("RESULT " + json.dumps({**result, "rss_mib": peak_rss_mib()}), flush=True)
