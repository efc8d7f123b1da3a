"""The hand-written mpi4py WordCount of bench/dataflow.py: each rank counts the lines that start in
its byte range of the file (collections.Counter over str.split()), the counts are hash-partitioned by
word and exchanged in one alltoall of pickled dicts, each rank merges its words, and rank 0 gathers
the ranks' top tens; rank 0 prints RESULT {json}. Run: mpiexec -n W python wordcount_mpi.py TEXTFILE"""

import json
import os
import sys
import zlib
from collections import Counter

from mpi4py import MPI
from words import peak_rss_mib, top10

CHUNK = 1 << 24


def line_start(f, offset: int, size: int) -> int:
    """The offset of the first line that starts at or after `offset`."""
    if offset <= 0 or offset >= size:
        return max(0, min(offset, size))
    f.seek(offset - 1)
    return offset - 1 + len(f.readline())


def count_range(path: str, rank: int, ranks: int) -> Counter:
    size = os.path.getsize(path)
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        start = line_start(f, size * rank // ranks, size)
        stop = line_start(f, size * (rank + 1) // ranks, size)
        f.seek(start)
        while start < stop:
            chunk = f.read(min(CHUNK, stop - start))
            if start + len(chunk) < stop:
                chunk += f.readline()
            start += len(chunk)
            counts.update(chunk.decode("utf-8").split())
    return counts


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    counts = count_range(sys.argv[1], rank, ranks)
    batches: list[dict[str, int]] = [{} for _ in range(ranks)]
    for word, c in counts.items():
        batches[zlib.crc32(word.encode("utf-8")) % ranks][word] = c
    merged: Counter[str] = Counter()
    for batch in comm.alltoall(batches):
        merged.update(batch)
    tops = comm.gather((top10(merged.items()), sum(merged.values()), len(merged), peak_rss_mib()), root=0)
    if rank == 0:
        result = {
            "top": top10(kv for t in tops for kv in t[0]),
            "words": sum(t[1] for t in tops),
            "distinct": sum(t[2] for t in tops),
            "rss_mib": max(t[3] for t in tops),
        }
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
