"""The hand-written mpi4py join + group sum of bench/dataflow.py: each rank parses the lines that
start in its byte range of both CSV files (numpy.loadtxt), hash-partitions both by key % ranks with
one Alltoallv per column, joins what it got (sorted dimension keys, np.searchsorted), sums the
values per group (np.bincount), and the per-group sums and counts are reduced to rank 0, which
prints RESULT {json}. Run: mpiexec -n W python join_mpi.py FACTS.csv DIMS.csv"""

import json
import sys

import numpy as np
from mpi4py import MPI
from tables import DIMS, FACTS, join_group_sums, read_share, summary_of_arrays
from words import peak_rss_mib


def displacements(counts: np.ndarray) -> list[int]:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()


def shuffle(comm, rows: np.ndarray) -> np.ndarray:
    """`rows` (a structured array with a 'key' field) moved to rank key % size, one Alltoallv a column."""
    ranks = comm.Get_size()
    dest = rows["key"] % ranks
    order = np.concatenate([np.flatnonzero(dest == r) for r in range(ranks)])  # a pass per rank beats a sort
    send_counts = np.bincount(dest, minlength=ranks)
    recv_counts = np.empty(ranks, dtype=send_counts.dtype)
    comm.Alltoall(send_counts, recv_counts)
    got = np.empty(int(recv_counts.sum()), dtype=rows.dtype)
    send_spec = (send_counts.tolist(), displacements(send_counts))
    recv_spec = (recv_counts.tolist(), displacements(recv_counts))
    for name in rows.dtype.names:
        column = np.empty(len(got), dtype=rows.dtype[name])
        comm.Alltoallv([np.ascontiguousarray(rows[name][order]), send_spec], [column, recv_spec])
        got[name] = column
    return got


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    facts = shuffle(comm, read_share(sys.argv[1], rank, ranks, FACTS))
    dims = shuffle(comm, read_share(sys.argv[2], rank, ranks, DIMS))
    sums, counts = join_group_sums(facts, dims)
    total_sums = np.empty_like(sums) if rank == 0 else None
    total_counts = np.empty_like(counts) if rank == 0 else None
    comm.Reduce(sums, total_sums, op=MPI.SUM, root=0)
    comm.Reduce(counts, total_counts, op=MPI.SUM, root=0)
    rss = comm.reduce(peak_rss_mib(), op=MPI.MAX, root=0)
    if rank == 0:
        print("RESULT " + json.dumps({**summary_of_arrays(total_sums, total_counts), "rss_mib": rss}), flush=True)


if __name__ == "__main__":
    main()
