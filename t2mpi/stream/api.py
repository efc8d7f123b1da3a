"""The streaming API in a worker (ctx.stream): sources, operators that build a plan of nodes, and
run(). Every worker makes the same calls in the same order (SPMD), as with ctx.data.

    s = ctx.stream
    (s.files(ctx.config["input"]).map(parse).key_by(lambda e: e["user"])
      .window(tumbling(seconds=10), event_time=lambda e: e["ts"], lateness=2).count()
      .sink_files(ctx.persistent_dir + "/counts"))
    return s.run()
"""

from __future__ import annotations

import math
import time as _time

from ..data.errors import DataError, Where, call_site
from . import aggregates, operators, sinks, sources
from .windowing import LateOut, Window
from .windows import CountWindow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .engine import Hooks


class StreamContext:
    """ctx.stream: the sources of one stream job, and run(). batch: the records a round reads from
    each source partition (numpy batches: one batch per round)."""

    def __init__(self, comm: Any, hooks: Hooks | None = None, batch: int = 1_000):
        from ..data.exchange import Exchange
        from .engine import Hooks

        self.exchange = Exchange(comm)
        self.rank, self.size = self.exchange.rank, self.exchange.size
        self.hooks = hooks or Hooks()
        self.batch = batch
        self.clock: Callable[[], float] = _time.time  # the processing-time clock (read on worker 0)
        self.nodes: list[operators.Node] = []
        self.sources: list[sources.Source] = []
        self.run_site = "?"
        self.ran = False
        try:
            import socket

            self.host = socket.gethostname()
        except OSError:
            self.host = "?"

    def __repr__(self) -> str:
        return f"<StreamContext worker {self.rank} of {self.size}: {len(self.nodes)} operators>"

    def where(self, op: str, site: str) -> Where:
        return Where(op, site, self.rank, self.size, self.host)

    def add(self, node: operators.Node) -> Stream:
        node.index = len(self.nodes)
        self.nodes.append(node)
        return Stream(self, node)

    def _source(self, op: str, make: Callable[[Where], sources.Source], kind: str) -> Stream:
        where = self.where(op, call_site())
        source = make(where)
        source.index = len(self.sources)
        self.sources.append(source)
        return self.add(operators.SourceNode(where, source, kind))

    # -- sources -------------------------------------------------------------------------------
    def _files(self, op: str, path: str, follow: bool) -> Stream:
        def make(where: Where) -> sources.Source:
            listing = self.exchange.bcast(where, lambda: sources.file_list(where, str(path)), 0)
            return sources.FilesSource(where, str(path), follow, self.rank, self.size, listing)

        return self._source(op, make, "records")

    def files(self, folder: str, follow: bool = False) -> Stream:
        """The lines of the files in `folder` (a partition per file, spread over the workers; worker
        0 lists them, and every worker reads that list)."""
        return self._files("files", folder, follow)

    def log(self, path: str, follow: bool = False) -> Stream:
        """A replayable append-only log: a file, or a folder of them, read by byte offsets."""
        return self._files("log", path, follow)

    def generator(self, fn: Callable[[int, int, int], Any]) -> Stream:
        """fn(partition, n_partitions, offset) -> an iterator of records (one partition per worker)."""
        _callable("generator", fn)
        return self._source("generator", lambda w: sources.GeneratorSource(w, fn, self.rank, self.size), "records")

    def batches(self, fn: Callable[[int, int, int], Any]) -> Stream:
        """fn(partition, n_partitions, offset) -> an iterator of dicts of numpy columns; offset: rows."""
        _callable("batches", fn)
        return self._source("batches", lambda w: sources.BatchesSource(w, fn, self.rank, self.size), "columns")

    # -- running -------------------------------------------------------------------------------
    def run(
        self, checkpoint_every: float | None = 5.0, batch: int | None = None, clock: Callable[[], float] | None = None
    ) -> dict[str, Any]:
        """Run every round until every source ends (or a stop request: checkpoint, then PREEMPTED).
        clock: the processing-time windows' clock, seconds (time.time by default; worker 0 reads
        it). Returns a summary: events in/out per worker, late records, rounds, checkpoints, collected."""
        from .engine import Engine

        self.run_site = call_site()
        if self.ran:
            raise DataError(f"run at {self.run_site}: this stream ran already; make a new job for another")
        if clock is not None:
            if not callable(clock):
                raise DataError(f"run at {self.run_site}: clock must be a function giving seconds, got {clock!r}")
            self.clock = clock
        if batch is not None:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise DataError(f"run at {self.run_site}: batch must be an int >= 1, got {batch!r}")
            self.batch = batch
        if checkpoint_every is not None and not checkpoint_every > 0:
            raise DataError(f"run at {self.run_site}: checkpoint_every must be > 0 seconds or None")
        self.ran = True
        return Engine(self).run(self.nodes, checkpoint_every, self.hooks)


def _processing_only(where: Where, windower: Any, event_time: Any, *options: Any) -> None:
    """A processing-time window's definition: none of the event clock's options (at their defaults)."""
    if isinstance(windower, CountWindow):
        raise DataError(f"{where}: {windower!r} counts records and needs no clock; leave out time='processing'")
    given = [
        name
        for name, value, default in zip(
            ("event_time", "disorder", "lateness", "idle_timeout", "on_bad"),
            (event_time, *options),
            (None, 0.0, 0.0, None, "side"),
        )
        if value != default
    ]
    if given:
        raise DataError(
            f"{where}: a processing-time window takes no {', '.join(given)} (each record is in the window of the "
            "time it reaches the window, and nothing is late); leave it out, or use time='event'"
        )


def _callable(op: str, fn: Any) -> None:
    if not callable(fn):
        raise DataError(f"{op} at {call_site()}: expects a function, got {type(fn).__name__}")


class Stream:
    """A stream of records (or of numpy batches, or of (key, record) pairs once keyed)."""

    def __init__(self, ctx: StreamContext, node: operators.Node):
        self.ctx, self.node = ctx, node

    def __repr__(self) -> str:
        return f"<Stream {self.node.where.op} at {self.node.where.site} ({self.node.kind})>"

    def _where(self, op: str) -> Where:
        return self.ctx.where(op, call_site())

    def _narrow(self, op: str, fn: Any) -> Stream:
        where = self._where(op)
        if not callable(fn):
            raise DataError(f"{where}: expects a function, got {type(fn).__name__}")
        return self.ctx.add(operators.Narrow(where, self.node, op, fn))

    def map(self, fn: Callable[[Any], Any]) -> Stream:
        return self._narrow("map", fn)

    def flat_map(self, fn: Callable[[Any], Any]) -> Stream:
        return self._narrow("flat_map", fn)

    def filter(self, fn: Callable[[Any], Any]) -> Stream:
        return self._narrow("filter", fn)

    def union(self, *others: Stream) -> Stream:
        return self.ctx.add(operators.Union(self._where("union"), [self.node] + [o.node for o in others]))

    def broadcast(self) -> Stream:
        return self.ctx.add(operators.Broadcast(self._where("broadcast"), self.node))

    def key_by(self, key: Any, partitioner: Callable[[Any], int] | None = None) -> KeyedStream:
        """A shuffle by key (a function of the record, or a field or column name)."""
        node = operators.KeyBy(self._where("key_by"), self.node, key, partitioner, self.ctx.size)
        return KeyedStream(self.ctx, self.ctx.add(node).node)

    def partition(self, fn: Callable[[Any], int]) -> Stream:
        """Each record to worker fn(record)."""
        return self.ctx.add(operators.Partition(self._where("partition"), self.node, fn, self.ctx.size))

    def window(
        self,
        windower: Any,
        event_time: Any = None,
        disorder: float = 0.0,
        lateness: float = 0.0,
        idle_timeout: float | None = None,
        on_bad: str = "side",
        time: str = "event",
    ) -> WindowBuilder:
        """Windows by event time (event_time=, the watermark), or by processing time
        (time="processing": the time each record reaches the window, on the stream's clock)."""
        where = self._where("window")
        if not hasattr(windower, "kind"):
            raise DataError(
                f"{where}: expects tumbling(...), sliding(...), session(...) or count_window(...), got {windower!r}"
            )
        if time not in ("event", "processing"):
            raise DataError(f"{where}: time must be 'event' or 'processing', got {time!r}")
        processing = time == "processing"
        if processing:
            _processing_only(where, windower, event_time, disorder, lateness, idle_timeout, on_bad)
        elif event_time is None and not isinstance(windower, CountWindow):
            raise DataError(
                f"{where}: {windower!r} is an event-time window; give event_time= (a function or a field name)"
            )
        for what, value in (("disorder", disorder), ("lateness", lateness)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
                raise DataError(f"{where}: {what} must be a number of seconds >= 0, got {value!r}")
        if idle_timeout is not None and not (isinstance(idle_timeout, (int, float)) and idle_timeout > 0):
            raise DataError(f"{where}: idle_timeout must be a number of seconds > 0 or None, got {idle_timeout!r}")
        if on_bad not in ("side", "fail"):
            raise DataError(f"{where}: on_bad must be 'side' or 'fail', got {on_bad!r}")
        node = self.node
        if node.kind == "records":  # one window for the whole stream: every record under key None
            node = self.ctx.add(operators.KeyBy(where, node, lambda r: None, None, self.ctx.size)).node
        elif node.kind == "columns" and node.key_column is None:
            raise DataError(f"{where}: a window on numpy batches needs key_by(column) first")
        options = (event_time, float(disorder), float(lateness), idle_timeout, on_bad, processing)
        return WindowBuilder(self.ctx, where, node, windower, options)

    # -- sinks ---------------------------------------------------------------------------------
    def sink_files(self, folder: Any) -> None:
        """part-<worker>-<epoch> files of lines in `folder` (str records as they are, tuples joined
        by tabs), each committed with its checkpoint: exactly once over restarts."""
        self.ctx.add(sinks.FileSink(self._where("sink_files"), self.node, folder, self.ctx.rank))

    def sink(self, fn: Callable[[Any], Any], batches: bool = False) -> None:
        """fn(record) for every record; batches=True: fn(chunk) for every chunk of a round (a list
        of records, or a dict of numpy columns). At least once over restarts."""
        where = self._where("sink")
        if not callable(fn):
            raise DataError(f"{where}: expects a function, got {type(fn).__name__}")
        self.ctx.add(sinks.FunctionSink(where, self.node, fn, batches))

    def collect(self) -> sinks.Collect:
        """Small results: after run(), .records holds every worker's records (and run()'s summary
        has them under "collected")."""
        collect = sinks.Collect(self._where("collect"), self.node)
        self.ctx.add(collect)
        return collect


class KeyedStream(Stream):
    """A stream of (key, record) pairs, each key on one worker."""

    def stateful_map(self, init: Callable[[], Any], fn: Callable[[Any, Any], Any]) -> KeyedStream:
        """fn(state, record) -> (state, out) per record of a key, state = init() at first; gives (key, out)."""
        where = self._where("stateful_map")
        for f in (init, fn):
            if not callable(f):
                raise DataError(f"{where}: expects functions init() and fn(state, record), got {type(f).__name__}")
        return KeyedStream(self.ctx, self.ctx.add(operators.StatefulMap(where, self.node, init, fn)).node)

    def reduce(self, fn: Callable[[Any, Any], Any]) -> KeyedStream:
        """The running reduce of each key's records: (key, value so far) per record."""
        init, step = operators.running_reduce(fn)
        return KeyedStream(
            self.ctx, self.ctx.add(operators.StatefulMap(self._where("reduce"), self.node, init, step)).node
        )

    def join(self, other: KeyedStream, windower: Any, event_time: Any = None, **options: Any) -> Stream:
        """Pairs (window_start, key, (a, b)) of a record of this stream and one of `other` with the
        same key in the same window (event_time: one for both, or a (for_this, for_other) pair;
        or time="processing", without event_time: the records that reach it in the same window)."""
        from .join import windowed_join

        return windowed_join(self, other, windower, event_time, options)


class WindowBuilder:
    """A window's definition waiting for what to compute in it."""

    def __init__(self, ctx: StreamContext, where: Where, node: operators.Node, windower: Any, options: tuple):
        self.ctx, self.where_, self.node, self.windower, self.options = ctx, where, node, windower, options

    def _make(self, agg: aggregates.Aggregate) -> Windowed:
        window = Window(self.where_, self.node, self.windower, agg, *self.options)
        return Windowed(self.ctx, self.ctx.add(window).node)

    def count(self) -> Windowed:
        return self._make(aggregates.count())

    def sum(self, col: Any = None) -> Windowed:
        return self._make(aggregates.total(col))

    def min(self, col: Any = None) -> Windowed:
        return self._make(aggregates.smallest(col))

    def max(self, col: Any = None) -> Windowed:
        return self._make(aggregates.largest(col))

    def reduce(self, fn: Callable[[Any, Any], Any]) -> Windowed:
        return self._make(aggregates.reduce(fn))

    def aggregate(
        self, init: Callable[[], Any], add: Callable[[Any, Any], Any], result: Callable[[Any], Any] | None = None
    ) -> Windowed:
        return self._make(aggregates.aggregate(init, add, result))

    def process(self, fn: Callable[[float, Any, list[Any]], Any]) -> Windowed:
        return self._make(aggregates.process(fn))


class Windowed(Stream):
    """A window's output: (window_start, key, value) records (numpy batches: columns window_start,
    key, value)."""

    def late(self, with_reason: bool = False) -> Stream:
        """The side output: records later than the allowed lateness, and those whose event time
        could not be read (with_reason: as (reason, record) pairs)."""
        window = self.node
        return self.ctx.add(LateOut(self._where("late"), window, with_reason))
