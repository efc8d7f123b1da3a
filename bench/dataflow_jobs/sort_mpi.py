"""The hand-written mpi4py sort of bench/dataflow.py: each rank reads its slice of the records
(numpy memory map), splitters come from an allgather of random key samples, np.searchsorted gives
each record's rank, one Alltoallv moves the raw bytes, and each rank sorts what it got by key (an
integer sort of the key's first 8 bytes, lexicographic only on ties); rank 0 prints RESULT {json} of
every rank's summary. Run: mpiexec -n W python sort_mpi.py RECORDS.npy"""

import json
import sys

import numpy as np
from mpi4py import MPI
from records import RECORD, as_bytes, key_ints, key_order, peak_rss_mib, summary

SAMPLES_PER_RANK = 1024


def displacements(counts: np.ndarray) -> list[int]:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    records = np.load(sys.argv[1], mmap_mode="r")
    n = len(records)
    mine = as_bytes(np.array(records[n * rank // ranks : n * (rank + 1) // ranks]))
    hi, _ = key_ints(mine)
    rng = np.random.default_rng(rank)
    sample = hi[rng.integers(0, len(hi), size=min(len(hi), SAMPLES_PER_RANK))] if len(hi) else hi
    pool = np.sort(np.concatenate(comm.allgather(sample)))
    splitters = pool[[len(pool) * d // ranks for d in range(1, ranks)]] if len(pool) else pool
    dest = np.searchsorted(splitters, hi, side="right").astype(np.int16)
    send = mine[np.argsort(dest, kind="stable")]
    send_counts = np.bincount(dest, minlength=ranks)
    recv_counts = np.empty(ranks, dtype=send_counts.dtype)
    comm.Alltoall(send_counts, recv_counts)
    got = np.empty((int(recv_counts.sum()), RECORD.itemsize), dtype=np.uint8)
    row = MPI.BYTE.Create_contiguous(RECORD.itemsize).Commit()
    comm.Alltoallv(
        [send, (send_counts.tolist(), displacements(send_counts)), row],
        [got, (recv_counts.tolist(), displacements(recv_counts)), row],
    )
    row.Free()
    del send, mine
    ordered = got[key_order(got)]
    parts = comm.gather((summary(ordered), peak_rss_mib()), root=0)
    if rank == 0:
        result = {"parts": [p for p, _ in parts], "rss_mib": max(r for _, r in parts)}
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
