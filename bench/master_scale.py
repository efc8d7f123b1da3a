"""The job master at scale: 10,000 simulated workers by default, two sides.

(pure Master) the master's decisions alone, without MPI, files or the loop. One round:
registration (worker_list + joined), the worker list (snapshot), one barrier that every worker
reaches, then every worker's result. Each phase and the round's total are timed; goal: a round
under 1 s. Also timed: snapshot() + json.dumps, what the master writes to state.json.

(serve loop) t2mpi.runtime.serve.serve, the master's loop as rank 0 runs it, over a stand-in
port and a real job folder (JobDir.create in a temporary folder). The port's receive() hands
over --batch messages at a time, each pickled beforehand (the workers' side) and unpickled on
receipt, as runtime.channel.MasterPort's improbe/recv delivers them; send() pickles every reply,
as MPI's send would. The messages are those real workers send, in this order: a report and a
heartbeat from every worker, a progress, one barrier (released by the master), and each result.
So the figure holds dispatch, unpickling, the serve loop, events.jsonl appends, state.json
writes (counted and timed) and results.pkl; not MPI's own cost. Each phase is timed from the
first batch of its kind to the first batch of the next (the last: until serve returns).

Both sides run in interleaved rounds. Usage: python bench/master_scale.py [--workers N] [--repeat R] [--batch B]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, describe

from t2mpi.job.folder import JobDir
from t2mpi.job.spec import load
from t2mpi.runtime.master import COMPLETED, Master, worker_list
from t2mpi.runtime.serve import new_master, serve

PER_HOST = 64


def registrations(n: int) -> list[tuple[str, int]]:
    return [(f"node{i // PER_HOST:04d}", 100_000 + i) for i in range(n)]


def one_round(n: int) -> dict[str, float]:
    took: dict[str, float] = {}

    start = time.perf_counter()
    master = Master("bench-job", "bench", n, time.time())
    master.joined(worker_list(registrations(n)), ("head", 1), time.time())
    took["registration (worker_list + joined)"] = time.perf_counter() - start

    t = time.perf_counter()
    snap = master.snapshot()
    took["worker list (snapshot)"] = time.perf_counter() - t
    assert len(snap["workers"]) == n

    t = time.perf_counter()
    now = time.time()
    released = 0
    for wid in range(n):
        released += len(master.barrier(wid, 1, 300.0, now))
    took["one barrier, every worker arrives"] = time.perf_counter() - t
    assert released == n, released

    t = time.perf_counter()
    now = time.time()
    for wid in range(n):
        master.finished_ok(wid, wid * 2, 1.0, now)
    took["every worker's result (finished_ok)"] = time.perf_counter() - t
    assert master.state == COMPLETED and len(master.results) == n

    took["total"] = time.perf_counter() - start
    return took


class TimedJobDir(JobDir):
    """A real job folder that counts and times its state.json writes."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.state_writes: list[float] = []

    def write_state(self, state: dict) -> None:
        t = time.perf_counter()
        super().write_state(state)
        self.state_writes.append(time.perf_counter() - t)


class StandInPort:
    """runtime.channel.MasterPort's two calls, without MPI: receive() unpickles the next batch of
    pickled worker messages (worker ids as MasterPort gives them), send() pickles each reply."""

    def __init__(self, batches: list[tuple[str, list[tuple[int, bytes]]]]) -> None:
        self.batches = batches
        self.marks: list[tuple[str, float]] = []  # (kind, when its batch was handed over)
        self.replies = 0
        self.reply_bytes = 0

    def receive(self, wait: float) -> list[tuple[int, tuple]]:
        if not self.batches:
            raise RuntimeError("the stand-in port ran out of messages, and the master did not end")
        kind, batch = self.batches.pop(0)
        self.marks.append((kind, time.perf_counter()))
        return [(source, pickle.loads(blob)) for source, blob in batch]

    def send(self, worker_id: int, message: tuple) -> None:
        self.reply_bytes += len(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        self.replies += 1


PHASES = (  # (the kind of message, what every worker sends)
    ("report", lambda wid: ("report", wid, {"network": {"OMPI_MCA_btl": "self,sm,tcp", "UCX_TLS": "tcp"}})),
    ("heartbeat", lambda wid: ("heartbeat", wid)),
    ("progress", lambda wid: ("progress", wid, 0.5, "halfway")),
    ("barrier", lambda wid: ("barrier", wid, 1, 300.0)),
    ("completed", lambda wid: ("completed", wid, wid * 2, 1.0)),
)


def pickled_batches(n: int, size: int) -> list[tuple[str, list[tuple[int, bytes]]]]:
    out = []
    for kind, message in PHASES:
        blobs = [(wid, pickle.dumps(message(wid), protocol=pickle.HIGHEST_PROTOCOL)) for wid in range(n)]
        out += [(kind, blobs[i : i + size]) for i in range(0, n, size)]
    return out


def serve_round(n: int, batch: int, jobs_dir: str) -> tuple[dict[str, float], dict[str, float]]:
    """One job served from join to end; the phases' times, and the loop's counts."""
    spec = load(os.path.join(ROOT, "jobs", "hello.yaml"), workers=n)
    jd = TimedJobDir(JobDir.create(jobs_dir, "bench", spec.to_dict()).path)
    port = StandInPort(pickled_batches(n, batch))
    messages = sum(len(b) for _, b in port.batches)
    start = time.perf_counter()
    master = new_master(spec, jd)
    master.joined(worker_list(registrations(n)), ("head", 1), time.time())
    joined = time.perf_counter()
    final = serve(port, master, jd)
    end = time.perf_counter()
    assert final["state"] == COMPLETED and len(jd.read_results()) == n, final["reason"]
    assert port.replies == n, port.replies  # every worker released from the barrier
    took = {"registration (worker_list + joined)": joined - start}
    firsts: dict[str, float] = {}
    for kind, when in port.marks:
        firsts.setdefault(kind, when)
    bounds = [*firsts.values(), end]
    for (kind, _), begin, until in zip(firsts.items(), bounds, bounds[1:], strict=False):
        took[f"{kind}: every worker's, dispatched"] = until - begin
    took["serve() from join to end"] = end - joined
    took["total (registration to end; no goal)"] = end - start
    counts = {
        "messages": messages,
        "batches": len(port.marks),
        "state.json writes": len(jd.state_writes),
        "state.json seconds": sum(jd.state_writes),
        "state.json MiB": os.path.getsize(jd.state_file) / 2**20,
        "events.jsonl MiB": os.path.getsize(jd.events_file) / 2**20,
    }
    shutil.rmtree(jd.path)
    return took, counts


def state_file_cost(n: int) -> tuple[float, int]:
    """Seconds for snapshot() + json.dumps as JobDir.write_state does it, and the bytes written."""
    master = Master("bench-job", "bench", n, time.time())
    master.joined(worker_list([(f"node{i // PER_HOST:04d}", i) for i in range(n)]), ("head", 1), time.time())
    for wid in range(0, n, 2):
        master.progress(wid, 0.5, "halfway", time.time())
    start = time.perf_counter()
    data = json.dumps(master.snapshot(), indent=1, default=str).encode()
    return time.perf_counter() - start, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="messages per receive() on the serve side")
    args = parser.parse_args()

    jobs_dir = tempfile.mkdtemp(prefix="t2mpi-bench-")
    pure, served = [], []
    try:
        for _ in range(args.repeat):  # interleaved
            pure.append(one_round(args.workers))
            served.append(serve_round(args.workers, args.batch, jobs_dir))
    finally:
        shutil.rmtree(jobs_dir)
    print(
        f"job master, {args.workers} simulated workers ({PER_HOST} per host), {args.repeat} interleaved rounds; "
        f"python {sys.version.split()[0]}"
    )
    print("pure Master (decisions only):")
    for phase in pure[0]:
        print(describe(f"  {phase}", [r[phase] for r in pure]))
    total = statistics.median(r["total"] for r in pure)
    print(f"{'  round total':<44} median {total:8.4f} s  goal: under 1 s  ({'met' if total < 1.0 else 'NOT met'})")

    took, counts = zip(*served, strict=True)
    c = counts[0]
    print(
        f"serve loop over a stand-in port (pickled messages, {args.batch} per receive) and a real job folder: "
        f"{c['messages']} messages in {c['batches']} batches"
    )
    for phase in took[0]:
        print(describe(f"  {phase}", [r[phase] for r in took]))
    print(describe("  state.json writes, their time in all", [r["state.json seconds"] for r in counts]))
    print(
        f"{'  state.json writes per round':<44} median {statistics.median(r['state.json writes'] for r in counts):8.1f}"
        f"     (last {c['state.json MiB']:.2f} MiB; events.jsonl {c['events.jsonl MiB']:.2f} MiB)"
    )

    costs = [state_file_cost(args.workers) for _ in range(args.repeat)]
    print(describe("state.json: snapshot() + json.dumps", [c[0] for c in costs]))
    print(f"{'state.json size':<44} {costs[0][1] / 2**20:8.2f} MiB")


if __name__ == "__main__":
    main()
