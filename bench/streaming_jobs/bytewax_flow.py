"""The Bytewax 0.21 side of bench/streaming.py: the same job with Bytewax's own windowing operators.

DirSource over the text/part-*.txt files (one partition per file; Bytewax spreads them over its
workers) -> parse `<ts> <key>` -> count_window(EventClock(ts, wait_for_system_duration=1 s),
TumblingWindower(10 s, aligned to time 0)) per key; counts and late items go to a sink that writes
one .npz per worker (bench/streaming_data.save_output). Run by bytewax_side.py as
`python -m bytewax.run bytewax_flow:flow -i I -a ADDRESSES`, with BENCH_INPUT and BENCH_OUTPUT set.
With BENCH_GENERATE (a JSON config of streaming_data.generate) the source is that generator instead,
two partitions, and each worker also writes delay-WORKER.npz (when its windows' counts came).

Event times are shifted by BENCH_SHIFT seconds (bytewax_side.py: a day from now, rounded down to
a multiple of 10 s, so the windows stay aligned). Bytewax wakes a window's logic when the system
clock reaches the window's close time: with the input's times (1970) those are all long past, it
wakes every key's windows on each activation and ran 3 x slower here (BENCH_SHIFT=0 shows it); with
times from now on, the wall clock reaches them during the run and closes windows early (more late
items, and windows written twice). A day ahead, neither (yet 18 of 103,914 windows were written
twice in a 1 M-event run here: the `(written again: summed)` in the check).

Bytewax's EventClock watermark is per key (each key's window state has its own clock): the key's
largest event time minus the wait, plus the system time passed since it was seen. Items whose
window that watermark has passed come out on the `late` stream, which is counted here.
"""

import itertools
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import DirSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
from bytewax.outputs import DynamicSink, StatelessSinkPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streaming_data import DISORDER, WINDOW, Arrivals, generate, save_delays, save_output  # noqa: E402

STARTED = time.time()
SHIFT = float(os.environ.get("BENCH_SHIFT", "0"))
GENERATE = json.loads(os.environ.get("BENCH_GENERATE", "null"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(line: str):
    ts, key = line.split()
    return datetime.fromtimestamp(float(ts) + SHIFT, tz=UTC), key


class _Generated(StatefulSourcePartition):
    def __init__(self, partition: int, n: int):
        self.events = generate(GENERATE, partition, n, 0)

    def next_batch(self):
        batch = [(datetime.fromtimestamp(t + SHIFT, tz=UTC), str(k)) for t, k in itertools.islice(self.events, 256)]
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> None:
        return None


class Generated(FixedPartitionedSource):
    PARTITIONS = 2

    def list_parts(self):
        return [str(p) for p in range(self.PARTITIONS)]

    def build_part(self, step_id, for_part, resume_state):
        return _Generated(int(for_part), self.PARTITIONS)


class _Part(StatelessSinkPartition):
    def __init__(self, path: str, worker: int):
        self.path, self.worker, self.starts, self.keys, self.counts, self.late = path, worker, [], [], [], 0
        self.came = Arrivals()

    def write_batch(self, items) -> None:
        self.came.note([item[1] * WINDOW - SHIFT for item in items if item[0] == "c"])
        for item in items:
            if item[0] == "c":
                _, window_id, key, count = item
                self.starts.append(window_id * WINDOW - SHIFT)
                self.keys.append(int(key))
                self.counts.append(count)
            else:
                self.late += 1

    def close(self) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        save_output(
            self.path, self.starts, self.keys, self.counts, self.late, started=STARTED, ended=time.time(), rss_mib=rss
        )
        if GENERATE:
            save_delays(os.path.join(os.path.dirname(self.path), f"delay-{self.worker}.npz"), self.came)


class NpzSink(DynamicSink):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(os.path.join(os.environ["BENCH_OUTPUT"], f"bytewax-{worker_index}.npz"), worker_index)


flow = Dataflow("streaming_bench")
if GENERATE:
    events = op.input("generated", flow, Generated())
else:
    lines = op.input("lines", flow, DirSource(Path(os.environ["BENCH_INPUT"]) / "text", glob_pat="part-*.txt"))
    events = op.map("parse", lines, parse)
windows = count_window(
    "count",
    events,
    EventClock(lambda e: e[0], wait_for_system_duration=timedelta(seconds=DISORDER)),
    TumblingWindower(length=timedelta(seconds=WINDOW), align_to=EPOCH),
    key=lambda e: e[1],
)
counted = op.map("counted", windows.down, lambda kv: ("c", kv[1][0], kv[0], kv[1][1]))
late = op.map("late", windows.late, lambda kv: ("l",))
op.output("out", op.merge("both", counted, late), NpzSink())
