"""The baseline for bench/pingpong.py, and the measuring code both sides share: ping-pong latency
(8-byte messages), bandwidth (4 MiB messages) and Allreduce (1M float64) between ranks 0 and 1 of
a communicator. Run bare: mpiexec -n 2 python bench/pingpong_mpi.py [key=value...]; it prints
rank 0's figures as one JSON line. A t2mpi worker calls measure(ctx.comm, ...) instead.
With 3 ranks, rank 2 idles as a job master does (a look every 25 ms, asleep between)
while ranks 0 and 1 measure on a communicator of their own: the shape of a t2mpi job's world."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from mpi4py import MPI

DEFAULTS = {
    "latency_iters": 20000,
    "latency_warmup": 2000,
    "bw_iters": 64,
    "bw_window": 8,
    "bw_warmup": 8,
    "allreduce_iters": 40,
    "allreduce_warmup": 5,
}
LATENCY_BYTES = 8
BW_BYTES = 4 * 2**20
ALLREDUCE_COUNT = 2**20


def latency_us(comm: MPI.Intracomm, iters: int, warmup: int) -> float:
    """Half the round-trip time of an 8-byte Send/Recv between ranks 0 and 1, in microseconds."""
    buf = np.zeros(LATENCY_BYTES, dtype=np.uint8)
    rank = comm.Get_rank()
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            comm.Barrier()
            start = time.perf_counter()
        if rank == 0:
            comm.Send(buf, dest=1, tag=1)
            comm.Recv(buf, source=1, tag=1)
        elif rank == 1:
            comm.Recv(buf, source=0, tag=1)
            comm.Send(buf, dest=0, tag=1)
    return (time.perf_counter() - start) / iters / 2 * 1e6


def bandwidth_mib_s(comm: MPI.Intracomm, iters: int, window: int, warmup: int) -> float:
    """Rank 0 streams 4 MiB messages to rank 1, `window` in flight (as osu_bw does), rank 1 acks
    each window; MiB/s over `iters` windows after `warmup` windows."""
    rank = comm.Get_rank()
    send = np.ones(BW_BYTES, dtype=np.uint8)
    recv = [np.empty(BW_BYTES, dtype=np.uint8) for _ in range(window)] if rank == 1 else []
    ack = np.zeros(1, dtype=np.uint8)
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            comm.Barrier()
            start = time.perf_counter()
        if rank == 0:
            MPI.Request.Waitall([comm.Isend(send, dest=1, tag=2) for _ in range(window)])
            comm.Recv(ack, source=1, tag=3)
        elif rank == 1:
            MPI.Request.Waitall([comm.Irecv(buf, source=0, tag=2) for buf in recv])
            comm.Send(ack, dest=0, tag=3)
    took = time.perf_counter() - start
    return iters * window * BW_BYTES / 2**20 / took


def allreduce_ms(comm: MPI.Intracomm, iters: int, warmup: int) -> float:
    """Milliseconds per Allreduce (SUM) of 1M float64 over the whole communicator (the slowest rank)."""
    send = np.ones(ALLREDUCE_COUNT)
    recv = np.empty(ALLREDUCE_COUNT)
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            comm.Barrier()
            start = time.perf_counter()
        comm.Allreduce(send, recv, op=MPI.SUM)
    took = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    return took / iters * 1e3


def measure(comm: MPI.Intracomm, **options: int) -> dict[str, float] | None:
    """All three figures; rank 0 gets them, the other ranks None."""
    cfg = dict(DEFAULTS, **options)
    figures = {
        "latency_us": latency_us(comm, cfg["latency_iters"], cfg["latency_warmup"]),
        "bandwidth_mib_s": bandwidth_mib_s(comm, cfg["bw_iters"], cfg["bw_window"], cfg["bw_warmup"]),
        "allreduce_ms": allreduce_ms(comm, cfg["allreduce_iters"], cfg["allreduce_warmup"]),
    }
    return figures if comm.Get_rank() == 0 else None


if __name__ == "__main__":
    options = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        sys.exit(f"pingpong_mpi.py: unknown option(s) {', '.join(sorted(unknown))}; use {', '.join(DEFAULTS)}")
    world = MPI.COMM_WORLD
    if world.Get_size() > 2:
        idle = world.Get_rank() >= 2
        comm = world.Split(MPI.UNDEFINED if idle else 0, world.Get_rank())
        if idle:
            while not world.iprobe(source=0, tag=99):
                time.sleep(0.025)
            world.recv(source=0, tag=99)
            sys.exit(0)
    else:
        comm = world
    result = measure(comm, **options)
    if result is not None:  # rank 0 lets the idle ranks go
        for idle_rank in range(2, world.Get_size()):
            world.send(None, dest=idle_rank, tag=99)
    if result is not None:
        print(json.dumps(result), flush=True)
