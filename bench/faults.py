"""How long t2mpi takes to end a job after a fault: a worker stopped (SIGSTOP), killed (SIGKILL),
or stuck in a C call that holds the GIL; with timeouts.heartbeat = --heartbeat seconds.

Each case: `t2mpi run` of a 2-worker job; once both workers run, the fault is made in worker 1;
the time is from the fault to the end of `t2mpi run`. Medians of --runs runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, job_folder, mpi_flavour

WORKER = """
import ctypes, threading
from t2mpi import IWorker

class Job(IWorker):
    def execute(self, ctx):
        ctx.progress(0.5, "running")
        if ctx.worker_id == 1 and ctx.config.get("hold_gil"):
            ctypes.PyDLL(None).sleep(600)      # keeps the GIL: the heartbeat thread starves
        threading.Event().wait(600)
"""


def one(work: str, how: str) -> float:
    before = set(glob.glob(os.path.join(work, "t2mpi-jobs", "*")))
    argv = [os.path.join(BIN, "t2mpi"), "run", "faults.yaml", "-q"]
    if how == "GIL":
        argv += ["--set", "config.hold_gil=true"]
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until both workers have said they run
        new = set(glob.glob(os.path.join(work, "t2mpi-jobs", "*"))) - before
        try:
            state = json.load(open(os.path.join(new.pop(), "state.json"))) if new else None
        except (OSError, ValueError):
            state = None
        if state and state["state"] == "RUNNING" and all(w.get("message") for w in state["workers"]):
            break
        time.sleep(0.02)
    else:
        proc.kill()
        sys.exit("the job did not start")
    start = time.monotonic()
    if how in ("SIGSTOP", "SIGKILL"):
        os.kill(state["workers"][1]["pid"], getattr(signal, how))
    proc.wait(timeout=120)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeat", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = job_folder(
        "faults", WORKER, {"worker": "faults:Job", "workers": 2, "timeouts": {"heartbeat": args.heartbeat}}
    )
    print(f"fault detection under {mpi_flavour()}: timeouts.heartbeat {args.heartbeat:g} s, {args.runs} runs")
    for how in ("SIGSTOP", "SIGKILL", "GIL"):
        times = [one(work, how) for _ in range(args.runs)]
        print(f"{how:<8} median {statistics.median(times):6.2f} s  (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
