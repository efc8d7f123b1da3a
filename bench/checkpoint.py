"""The cost of ctx.checkpoint(state) for a --mb MB state per worker against writing the same
bytes with a plain file write (open, write, close: no fsync, no rename, no commit), and with a
plain write followed by fsync (what makes a checkpoint survive a crash).

One `t2mpi run` of a --workers worker job; inside it each worker alternates the checkpoint and
the two plain writes, --rounds times each (interleaved, so the page cache and disk see all alike),
and the job returns the times. A checkpoint is timed twice from the same start: until
ctx.checkpoint returns (the state pickled into its file, fsynced and renamed; the master told),
and until the master has recorded the commit (checkpoints/committed.json names the version:
JobDir.committed_version()). The plain writes start only after the master's commit has ended
(its checkpoint_committed event, written after the previous version is deleted), so they do not
share the disk or the cores with it. Reported: the medians over all workers and rounds, and
their ratios.
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
from t2mpi.job.folder import JobDir

POLL = 0.001  # seconds between looks at the job folder
DEADLINE = 300.0  # seconds a commit may take before the benchmark gives up


def wait_until(ready, what):
    deadline = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {DEADLINE:g} s")
        time.sleep(POLL)


class Job(IWorker):
    def execute(self, ctx):
        jd = JobDir(ctx.job_dir)
        ended, at = set(), 0  # versions whose commit the master has finished; events.jsonl offset

        def commit_ended(version):
            nonlocal at
            events, at = jd.read_events(at)
            ended.update(e["version"] for e in events if e["event"] == "checkpoint_committed")
            return version in ended

        state = np.random.default_rng(ctx.worker_id).random(ctx.config["mb"] * (1 << 20) // 8)
        plain_file = os.path.join(ctx.persistent_dir, "plain.bin")
        times = {"call": [], "committed": [], "plain": [], "fsync": []}
        for _ in range(ctx.config["rounds"]):
            ctx.comm.barrier()
            start = time.perf_counter()
            version = ctx.checkpoint(state)
            times["call"].append(time.perf_counter() - start)
            wait_until(lambda: (jd.committed_version() or 0) >= version, f"checkpoint {version} committed")
            times["committed"].append(time.perf_counter() - start)
            wait_until(lambda: commit_ended(version), f"the master's commit of checkpoint {version}")
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

    def figures(key: str) -> list[float]:
        return [t for r in results.values() for t in r[key]]

    call, committed, plain, synced = figures("call"), figures("committed"), figures("plain"), figures("fsync")
    print(
        f"checkpoint of {args.mb} MB per worker, {args.workers} workers, {mpi_flavour()}, "
        f"{args.rounds} rounds (folder {work})"
    )
    print(describe("ctx.checkpoint(state) returns", call))
    print(describe("ctx.checkpoint(state) until committed", committed))
    print(describe("plain write of the same bytes", plain))
    print(describe("plain write + fsync", synced))
    print(ratio_line("committed / plain write", committed, plain, "(durability: fsyncs, rename, commit)"))
    print(ratio_line("committed / plain write + fsync", committed, synced, "(pickling, rename, the master's commit)"))
    print(ratio_line("returns / plain write + fsync", call, synced, "(pickling and rename; no commit yet)"))


if __name__ == "__main__":
    main()
