"""The t2mpi sides of bench/streaming.py, through the streaming API (ctx.stream, t2mpi.stream).

PerRecord: s.files(text/) .map(parse) .key_by(key) .window(tumbling 10 s, event_time, disorder 1 s)
           .count(), per-record Python functions (config.checkpoint_every: s.run's, or null).
Batches:   s.batches(numpy columns) .key_by("key") .window(..., event_time="ts") .count(): vectorised.
Generated: s.generator(a rate-limited source, config.speed events/s, 0: as fast as it goes) through
           PerRecord's plan; the sink notes when each output record came (emission delay) and can be
           slow (config.sink_pause seconds per 100 records: back-pressure, peak RSS).

Every side writes config.output/t2mpi-WORKER.npz (bench/streaming_data.save_output: the counts it
wrote, the late records it saw) and returns {"seconds": s.run's wall time, "rss_mib", "summary"}.
Generated also writes delay-WORKER.npz: when each window's output came (first, last record), and
when each source partition first read an event at or past each window end + disorder.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from functools import partial

import numpy as np

from t2mpi import IWorker

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from streaming_data import Arrivals, generate, load_part, save_delays, save_output  # noqa: E402


def parse(line: str) -> tuple[float, int]:
    ts, key = line.split()
    return float(ts), int(key)


def event_time(event: tuple[float, int]) -> float:
    return event[0]


def key_of(event: tuple[float, int]) -> int:
    return event[1]


class Cells:
    """A sink of whole chunks (sink(fn, batches=True): a list of (window_start, key, value)
    records, or numpy columns of those names): the counts this worker wrote; optionally slow (pause
    seconds per 100 records), and noting when each window's output came."""

    def __init__(self, pause: float = 0.0, timed: bool = False):
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pause = pause
        self.came = Arrivals() if timed else None

    def __call__(self, chunk) -> None:
        if isinstance(chunk, dict):
            cols = (np.asarray(chunk["window_start"]), np.asarray(chunk["key"]), np.asarray(chunk["value"]))
        else:
            cols = tuple(np.array(c) for c in zip(*chunk)) if len(chunk) else (np.empty(0),) * 3
        self.chunks.append(cols)
        if self.came is not None:
            self.came.note(np.unique(cols[0]).tolist())
        if self.pause:
            time.sleep(self.pause * len(cols[0]) / 100)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.chunks:
            return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
        return tuple(np.concatenate(c) for c in zip(*self.chunks))


class Late:
    """A sink of whole chunks counting the late side output's records."""

    def __init__(self):
        self.n = 0

    def __call__(self, chunk) -> None:
        self.n += len(next(iter(chunk.values()))) if isinstance(chunk, dict) else len(chunk)


def read_batches(folder: str, chunk: int, partition: int, n_partitions: int, offset: int):
    """The batches source's function: partition's numpy columns from row offset, chunk rows at a time."""
    part = load_part(folder, partition)
    for at in range(offset, len(part["ts"]), chunk):
        yield {name: np.asarray(col[at : at + chunk]) for name, col in part.items()}


def finish(ctx, cells: Cells, late: Late, summary, took: float) -> dict:
    out = ctx.config["output"]
    os.makedirs(out, exist_ok=True)
    save_output(os.path.join(out, f"t2mpi-{ctx.worker_id}.npz"), *cells.columns(), late.n)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": took, "rss_mib": rss, "summary": summary}


def count_windows(ctx, keyed, event_time, sink: Cells) -> tuple[Late, object, float]:
    """keyed .window(tumbling, event_time, disorder) .count() into sink, the late side output counted;
    run the stream: (late counter, run's summary, run's wall seconds)."""
    from t2mpi.stream import tumbling

    cfg = ctx.config
    counted = keyed.window(tumbling(seconds=cfg["window"]), event_time=event_time, disorder=cfg["disorder"]).count()
    late = Late()
    counted.sink(sink, batches=True)
    counted.late().sink(late, batches=True)
    ctx.comm.Barrier()  # the clock starts together on every worker, as the mpi4py side's does
    start = time.perf_counter()
    summary = ctx.stream.run(
        checkpoint_every=cfg.get("checkpoint_every"), batch=cfg.get("batch")
    )  # None: none, default
    return late, summary, time.perf_counter() - start


class PerRecord(IWorker):
    def execute(self, ctx):
        s, cells = ctx.stream, Cells()
        keyed = s.files(os.path.join(ctx.config["input"], "text")).map(parse).key_by(key_of)
        late, summary, took = count_windows(ctx, keyed, event_time, cells)
        return finish(ctx, cells, late, summary, took)


class Batches(IWorker):
    def execute(self, ctx):
        s, cells = ctx.stream, Cells()
        keyed = s.batches(partial(read_batches, ctx.config["input"], ctx.config["chunk"])).key_by("key")
        late, summary, took = count_windows(ctx, keyed, "ts", cells)
        return finish(ctx, cells, late, summary, took)


class Generated(IWorker):
    def execute(self, ctx):
        cfg = ctx.config
        s, cells = ctx.stream, Cells(pause=cfg.get("sink_pause", 0.0), timed=True)
        keyed = s.generator(partial(generate, cfg)).key_by(key_of)
        late, summary, took = count_windows(ctx, keyed, event_time, cells)
        result = finish(ctx, cells, late, summary, took)
        save_delays(os.path.join(cfg["output"], f"delay-{ctx.worker_id}.npz"), cells.came)
        return result
