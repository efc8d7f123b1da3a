"""The hand-written mpi4py baseline of bench/streaming.py: tumbling 10 s event-time windows, a count
per (window, key), over bench/streaming_data.py's numpy columns, one partition per rank.

Each rank reads its partition in chunks (memory-mapped .npy). Per chunk: the rows are hashed to
ranks by key (key % size) and travel in one Alltoallv (ts and key as one int64 buffer); the
watermark is MIN-allreduced (the smallest, over the partitions, of the largest event time read
there, minus the disorder); a received row whose window already ended at or before the watermark
in force when it was read is late (counted); the others are counted per (window, key) with numpy
(bincount); every window whose end the new watermark has passed is written. When every partition
ends, the open windows are written.

    mpiexec -n 2 python bench/streaming_mpi.py INPUT_FOLDER OUTPUT_FOLDER [--chunk ROWS]

Rank 0 prints `RESULT {json}`: seconds (from a barrier after start-up to a barrier after the last
window), events, late, rss_mib (the largest rank's peak). Each rank writes OUTPUT/mpi-RANK.npz.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from streaming_data import DISORDER, WINDOW, load_part, save_output  # noqa: E402


class Windows:
    """This rank's open windows: window index -> counts per local key (key // size)."""

    def __init__(self, keys: int, rank: int, size: int):
        self.rank, self.size = rank, size
        self.local = -(-keys // size)
        self.open: dict[int, np.ndarray] = {}
        self.out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, windows: np.ndarray, keys: np.ndarray) -> None:
        if len(windows) == 0:
            return
        lo, hi = int(windows.min()), int(windows.max())
        span = hi - lo + 1
        grid = np.bincount((windows - lo) * self.local + keys // self.size, minlength=span * self.local)
        for j, row in enumerate(grid.reshape(span, self.local)):
            if (w := lo + j) in self.open:
                self.open[w] += row
            else:
                self.open[w] = row

    def emit_until(self, watermark: float) -> None:
        """Write every window whose end is at or before the watermark."""
        for w in sorted(self.open):
            if (w + 1) * WINDOW > watermark:
                break
            row = self.open.pop(w)
            local = np.flatnonzero(row)
            self.out.append((np.full(len(local), w * WINDOW), local * self.size + self.rank, row[local]))

    def written(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.out:
            return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
        return tuple(np.concatenate(c) for c in zip(*self.out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--chunk", type=int, default=65536, help="rows a rank reads per step")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    with open(os.path.join(args.input, "workload.json")) as f:
        workload = json.load(f)
    if workload["partitions"] != size:
        sys.exit(
            f"streaming_mpi: {args.input} has {workload['partitions']} partitions, run with -n {workload['partitions']}"
        )
    comm.Barrier()
    start = time.perf_counter()
    part = load_part(args.input, rank)
    n = len(part["ts"])
    steps = comm.allreduce(-(-n // args.chunk), op=MPI.MAX)
    windows = Windows(workload["keys"], rank, size)
    largest = -np.inf  # the largest event time read in this partition
    watermark = -np.inf
    late = 0
    for step in range(steps):
        ts = np.asarray(part["ts"][step * args.chunk : (step + 1) * args.chunk])
        keys = np.asarray(part["key"][step * args.chunk : (step + 1) * args.chunk])
        if len(ts):
            largest = max(largest, float(ts.max()))
        dest = keys % size
        order = np.argsort(dest, kind="stable")
        send = np.empty((len(ts), 2), np.int64)
        send[:, 0] = ts[order].view(np.int64)
        send[:, 1] = keys[order]
        counts = np.bincount(dest, minlength=size) * 2
        got_counts = np.empty(size, np.int64)
        comm.Alltoall(counts, got_counts)
        recv = np.empty((int(got_counts.sum()) // 2, 2), np.int64)
        comm.Alltoallv([send, (counts, None), MPI.INT64_T], [recv, (got_counts, None), MPI.INT64_T])
        got_ts = recv[:, 0].view(np.float64)
        win = np.floor(got_ts / WINDOW).astype(np.int64)
        on_time = (win + 1) * WINDOW > watermark
        late += int(len(win) - on_time.sum())
        windows.add(win[on_time], recv[on_time, 1])
        watermark = comm.allreduce(largest, op=MPI.MIN) - DISORDER
        windows.emit_until(watermark)
    windows.emit_until(np.inf)
    comm.Barrier()
    took = time.perf_counter() - start
    os.makedirs(args.output, exist_ok=True)
    save_output(os.path.join(args.output, f"mpi-{rank}.npz"), *windows.written(), late)
    rss = comm.reduce(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, op=MPI.MAX)
    late_all = comm.reduce(late, op=MPI.SUM)
    events = comm.reduce(n, op=MPI.SUM)
    if rank == 0:
        print("RESULT " + json.dumps({"seconds": took, "events": events, "late": late_all, "rss_mib": rss}), flush=True)


if __name__ == "__main__":
    main()
