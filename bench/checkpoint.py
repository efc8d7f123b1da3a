"""The cost of ctx.checkpoint(state) for a --mb MB state per worker against writing the same
bytes with a plain file write (open, write, close: no fsync, no rename, no commit), and with a
plain write followed by fsync (what makes a checkpoint survive a crash).

One `t2mpi run` of a --workers worker job; inside it each worker alternates the two, --rounds
times each (interleaved, so the page cache and disk see both alike), and the job returns the
times. Reported: the medians over all workers and rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, describe, job_folder, mpi_flavour, ratio_line

WORKER = """
import os, time
import numpy as np
from t2mpi import IWorker

class Job(IWorker):
    def execute(self, ctx):
        state = np.random.default_rng(ctx.worker_id).random(ctx.config["mb"] * (1 << 20) // 8)
        plain_file = os.path.join(ctx.persistent_dir, "plain.bin")
        times = {"checkpoint": [], "plain": [], "fsync": []}
        for _ in range(ctx.config["rounds"]):
            ctx.comm.barrier()
            start = time.perf_counter()
            ctx.checkpoint(state)
            times["checkpoint"].append(time.perf_counter() - start)
            ctx.comm.barrier()
            start = time.perf_counter()
            with open(plain_file, "wb") as fh:
                fh.write(state.data)
            times["plain"].append(time.perf_counter() - start)
            ctx.comm.barrier()
            start = time.perf_counter()
            with open(plain_file, "wb") as fh:
                fh.write(state.data)
                fh.flush()
                os.fsync(fh.fileno())
            times["fsync"].append(time.perf_counter() - start)
        os.unlink(plain_file)
        return times
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="state per worker, MB (default 100)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = job_folder(
        "ckpt",
        WORKER,
        {
            "worker": "ckpt:Job",
            "workers": args.workers,
            "resources": {"memory": "2G"},
            "config": {"mb": args.mb, "rounds": args.rounds},
        },
    )
    done = subprocess.run(
        [os.path.join(BIN, "t2mpi"), "run", "ckpt.yaml", "-q"], cwd=work, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"the benchmark job failed:\n{done.stderr}")
    [job] = os.listdir(os.path.join(work, "t2mpi-jobs"))
    with open(os.path.join(work, "t2mpi-jobs", job, "results.pkl"), "rb") as fh:
        results = pickle.load(fh)
    ckpt = [t for r in results.values() for t in r["checkpoint"]]
    plain = [t for r in results.values() for t in r["plain"]]
    print(
        f"checkpoint of {args.mb} MB per worker, {args.workers} workers, {mpi_flavour()}, "
        f"{args.rounds} rounds (folder {work})"
    )
    print(describe("ctx.checkpoint(state)", ckpt))
    synced = [t for r in results.values() for t in r["fsync"]]
    print(describe("plain write of the same bytes", plain))
    print(describe("plain write + fsync", synced))
    print(ratio_line("checkpoint / plain write", ckpt, plain, "(durability: fsync before the rename)"))
    print(ratio_line("checkpoint / plain write + fsync", ckpt, synced, "(pickling, rename and commit)"))


if __name__ == "__main__":
    main()
