"""The window operator: event-time windows per key, the watermark, allowed lateness and the late
side output; and processing-time windows, on the clock that worker 0 reads.

Each round: the records that came (after their shuffle) are put in their windows, or, when a window
of theirs closed more than `lateness` ago, in the side output; then one guarded allgather combines
each partition's largest event time over the workers, the watermark advances (windows.Watermark),
and the windows whose end it reached are emitted as (window_start, key, value). A window late
records updated within `lateness` is emitted again with its new value.

A processing-time window (processing=True) reads no time from its records: its one guarded
allgather carries worker 0's reading of the stream's clock (never going back) and whether the
sources ended; every record of the round goes into the window of that time, and the windows whose
end the clock passed are emitted. The clock stands where the watermark does, so nothing is late.
"""

from __future__ import annotations

import math
import operator
import time

from ..data.errors import DataError
from ..data.narrow import _short
from .operators import Node
from .windows import CountWindow, Session, Tumbling, Watermark, merge_sessions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..data.errors import Where
    from .aggregates import Aggregate

try:
    from _collections import _count_elements  # what Counter.update counts with, in C
except ImportError:  # pragma: no cover (other Pythons)

    def _count_elements(mapping: dict, iterable: Any) -> None:
        for e in iterable:
            mapping[e] = mapping.get(e, 0) + 1


_first, _second = operator.itemgetter(0), operator.itemgetter(1)


def event_clock(where: Where, event_time: Any) -> Callable[[Any], float]:
    if isinstance(event_time, str):
        name = event_time
        return lambda r: r[name]
    if callable(event_time):
        return event_time
    raise DataError(f"{where}: event_time must be a function of a record or a field name, got {event_time!r}")


class Window(Node):
    collective = True

    def __init__(
        self,
        where: Where,
        parent: Node,
        windower: Any,
        agg: Aggregate,
        event_time: Any,
        disorder: float,
        lateness: float,
        idle_timeout: float | None,
        on_bad: str,
        processing: bool = False,
    ):
        super().__init__(where, [parent], "records")
        self.windower, self.agg = windower, agg
        self.counting = isinstance(windower, CountWindow)
        self.processing = processing
        self.time_of = None if self.counting or processing else event_clock(where, event_time)
        self.event_col = event_time if isinstance(event_time, str) else None
        self.disorder, self.lateness, self.idle_timeout, self.on_bad = disorder, lateness, idle_timeout, on_bad
        self.columns = parent.kind == "columns"
        timed_by_column = processing or self.event_col is not None
        if self.columns and (agg.ufunc is None or not timed_by_column or not hasattr(windower, "starts")):
            raise DataError(
                f"{where}: on numpy batches a window takes event_time as a column name (or time='processing') "
                f"and count/sum/min/max over tumbling or sliding windows (map the batches to records for {agg.name})"
            )
        self.key_column = parent.key_column
        self.value_col = agg.col
        self.open: dict[Any, Any] = {}  # window start -> {key: accumulator} (sessions: key -> sessions)
        self.fired: set[Any] = set()  # emitted windows still within lateness
        self.maxima: dict[Any, float] = {}  # (source, partition) -> the largest event time seen here
        self.watermark: Watermark | None = None
        self.late_out: list[tuple[int, Any]] = []
        self.late_records: list[tuple[str, Any]] = []
        self.late_count = 0
        self.dirty: dict[Any, set[Any]] = {}

    # -- one round ----------------------------------------------------------------------------
    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        srcs = self.sources()
        if self.watermark is None:
            self.watermark = Watermark(sum(s.n for s in srcs), self.disorder)
            self.watermark.value = getattr(self, "restored_watermark", -math.inf)
        self.late_out = []  # this round's late numpy rows, as chunks
        self.late_records = []  # and late records, as (reason, record)
        if self.processing:
            return self._processing_step(chunks, engine, srcs)

        def local() -> tuple[list[float], list[bool]]:
            engine.raise_failure()
            for p, records in chunks:
                if type(records) is dict:
                    self._add_columns(p, records)
                else:
                    self._add_records(p, records)
            return self._local_maxima(srcs)

        got = engine.exchange.allgather(self.where, local)
        maxima = [max(col) for col in zip(*(m for m, _ in got))] if got and got[0][0] else []
        idle = [any(col) for col in zip(*(i for _, i in got))] if got and got[0][1] else []
        return self._emit(self.watermark.advance(maxima, idle))

    def _processing_step(self, chunks: list[tuple[int, Any]], engine: Any, srcs: list[Any]) -> list[tuple[int, Any]]:
        """A round on the processing clock: worker 0's reading and whether every upstream
        partition ended, agreed in one guarded allgather; then the round's records go into the
        windows of that time (a failure there waits for the round's next collective)."""
        clock = engine.stream.clock if engine.exchange.rank == 0 else None

        def local() -> tuple[float | None, list[bool]]:
            reading = float(clock()) if clock is not None else None
            if reading is not None and not math.isfinite(reading):
                raise DataError(f"{self.where}: the processing clock gave {reading!r}, not a finite time")
            return reading, [p in s.ended and s.ended[p] for s in srcs for p in range(s.n)]

        got = engine.exchange.allgather(self.where, engine.guarded(local))
        now = max(self.watermark.value, got[0][0])
        self.watermark.value = now

        def place() -> bool:
            for _, records in chunks:
                if type(records) is not dict:
                    self._place(records, [now] * len(records))
                elif records:
                    self._place_columns(records, _same_time(records, now))
            return True

        if not engine.attempt(self.where, place):  # a failure, kept for the round's next collective
            return []
        if all(any(col) for col in zip(*(e for _, e in got))):
            now = math.inf  # every source ended: every open window is emitted
        return self._emit(now)

    def newest(self) -> float:
        """The newest time this window saw: the largest event time read (the processing clock
        for a processing-time window), for the live status's lag."""
        if self.processing:
            return self.watermark.value if self.watermark else -math.inf
        return max(self.maxima.values(), default=-math.inf)

    def _local_maxima(self, srcs: list[Any]) -> tuple[list[float], list[bool]]:
        """(the largest event time seen here per partition, +inf for the ended ones this worker
        reads; whether this worker's partition is idle)."""
        now = time.monotonic()
        maxima, idle = [], []
        for s in srcs:
            for p in range(s.n):
                m = self.maxima.get((s.index, p), -math.inf)
                mine = p in s.ended
                if mine and s.ended[p]:
                    m = math.inf
                maxima.append(m)
                idle.append(mine and self.idle_timeout is not None and now - s.last_record[p] >= self.idle_timeout)
        return maxima, idle

    def _bad(self, record: Any, why: str) -> None:
        if self.on_bad == "fail":
            raise DataError(f"{self.where}: a record's event time cannot be read ({why}): {_short(record)}")
        self.late_records.append((f"bad event time: {why}", record))
        self.late_count += 1

    def _late(self, record: Any, start: Any) -> None:
        self.late_records.append((f"late: window {start!r} closed (watermark {self.watermark.value!r})", record))
        self.late_count += 1

    def _add_records(self, p: int, pairs: list[Any]) -> None:
        if self.counting:
            return self._add_counted(pairs)
        pairs, times = self._timed(pairs)
        if times:
            self.maxima[p] = max(self.maxima.get(p, -math.inf), max(times))
        return self._place(pairs, times)

    def _place(self, pairs: list[Any], times: list[float]) -> None:
        """Put each (key, record) pair, at its time, in its windows, or in the side output when one
        of them was dropped already."""
        wm, lateness, agg = self.watermark.value, self.lateness, self.agg
        timed = zip(pairs, times)
        if isinstance(self.windower, Session):
            for (key, record), ts in timed:
                self._add_session(key, record, ts, wm)
            return None
        if type(self.windower) is Tumbling and agg.name == "count" and not self.fired:
            return self._count_tumbling(pairs, times)
        for (key, record), ts in timed:
            late = None
            for start in self.windower.starts(ts):
                end = start + self.windower.size
                if end + lateness <= wm:
                    late = start
                    continue
                accs = self.open.setdefault(start, {})
                try:
                    accs[key] = agg.add(accs[key] if key in accs else agg.init(), record)
                except Exception as exc:
                    raise self.where.failed(exc) from exc
                if start in self.fired:
                    self.dirty.setdefault(start, set()).add(key)
            if late is not None:
                self._late(record, late)
        return None

    def _timed(self, pairs: list[Any]) -> tuple[list[Any], list[float]]:
        """(the pairs whose event time can be read, their event times as floats); the others go to
        the side output (or fail the job: on_bad="fail"). First in one pass (a finite sum means
        every time is a finite number), else record by record."""
        time_of = self.time_of
        try:
            times = list(map(time_of, map(_second, pairs)))
            if not math.isfinite(sum(times)):
                raise ValueError
        except Exception:
            return self._timed_each(pairs)
        if {type(t) for t in times} != {float}:
            try:
                times = list(map(float, times))
            except Exception:
                return self._timed_each(pairs)
        return pairs, times

    def _timed_each(self, pairs: list[Any]) -> tuple[list[Any], list[float]]:
        time_of, isfinite = self.time_of, math.isfinite
        good, times = [], []
        for pair in pairs:
            try:
                ts = float(time_of(pair[1]))
            except Exception as exc:
                self._bad(pair[1], f"{type(exc).__name__}: {exc}")
                continue
            if not isfinite(ts):
                self._bad(pair[1], f"not a finite time: {ts!r}")
                continue
            good.append(pair)
            times.append(ts)
        return good, times

    def _count_tumbling(self, pairs: list[Any], times: list[float]) -> None:
        """_add_records for a tumbling count with no window emitted yet that is still open: the
        common case, vectorised: the windows and the late mask in numpy, the keys counted in C."""
        import numpy as np

        wm, size, lateness = self.watermark.value, self.windower.size, self.lateness
        starts = np.floor(np.array(times, dtype=np.float64) / size) * size
        late = starts + size + lateness <= wm
        if late.any():
            for i in np.flatnonzero(late).tolist():
                self._late(pairs[i][1], float(starts[i]))
            on_time = ~late
            pairs, starts = [pairs[i] for i in np.flatnonzero(on_time).tolist()], starts[on_time]
        if not pairs:
            return
        keys = list(map(_first, pairs))
        low, high = float(starts.min()), float(starts.max())
        if low == high:  # the round in one window
            _count_elements(self.open.setdefault(low, {}), keys)
            return
        for start in np.unique(starts).tolist():
            at = np.flatnonzero(starts == start).tolist()
            _count_elements(self.open.setdefault(start, {}), [keys[i] for i in at])

    def _add_session(self, key: Any, record: Any, ts: float, wm: float) -> None:
        gap = self.windower.gap
        sessions = self.open.setdefault(key, [])
        if ts + gap + self.lateness <= wm and not any(s[0] - gap < ts < s[1] + gap for s in sessions):
            self._late(record, ts)
            return
        joined = merge_sessions(sessions, ts, gap)
        records = [r for s in joined if s[2] for r in s[2]]
        joined[0][2] = records + [record]

    def _add_counted(self, pairs: list[Any]) -> None:
        n = self.windower.n
        for key, record in pairs:
            index, records = self.open.get(key, (0, []))
            records.append(record)
            self.open[key] = (index, records)
            if len(records) == n:
                self.dirty.setdefault(key, set()).add(index)

    def _add_columns(self, p: int, batch: dict[str, Any]) -> None:
        import numpy as np

        ts = batch.get(self.event_col)
        if ts is None:
            raise DataError(f"{self.where}: the batch has no column {self.event_col!r} (it has {sorted(batch)})")
        ts = ts.astype(np.float64, copy=False)
        good = np.isfinite(ts)
        if not good.all():
            if self.on_bad == "fail":
                raise DataError(f"{self.where}: {int((~good).sum())} rows have no finite event time")
            self.late_out.append((-1, {**{n: c[~good] for n, c in batch.items()}}))
            self.late_count += int((~good).sum())
            batch = {n: c[good] for n, c in batch.items()}
            ts = ts[good]
        if not len(ts):
            return
        self.maxima[p] = max(self.maxima.get(p, -math.inf), float(ts.max()))
        self._place_columns(batch, ts)

    def _place_columns(self, batch: dict[str, Any], ts: Any) -> None:
        """_place for a batch whose rows have the times `ts`: reduced per window with numpy."""
        import numpy as np

        keys = batch[self.key_column]
        ufunc = getattr(np, self.agg.ufunc)
        if self.agg.name == "count":
            values = np.ones(len(ts), dtype=np.float64)  # summed by bincount; ints when emitted
        else:
            values = batch.get(self.value_col)
            if values is None:
                raise DataError(f"{self.where}: the batch has no column {self.value_col!r} (it has {sorted(batch)})")
        wm, size, every = self.watermark.value, self.windower.size, self.windower.every
        late_rows = None
        base = np.floor(ts / every)
        last = _last_closed(wm, every, size, self.lateness)  # windows k <= last have closed
        for j in range(math.ceil(size / every)):
            k = base - j if j else base
            inside = k * every + size > ts
            closed = k <= last if last is not None else k * every + size + self.lateness <= wm
            if closed.any():
                closed &= inside
                late_rows = closed if late_rows is None else late_rows | closed
                take = inside & ~closed
            else:
                take = inside
            if take.all():
                parts = _per_window(k.astype(np.int64), keys, values, ufunc)
            elif take.any():
                parts = _per_window(k[take].astype(np.int64), keys[take], values[take], ufunc)
            else:
                parts = []
            for index, part in parts:
                start = index * every
                self.open.setdefault(start, []).append(part)
                if start in self.fired:
                    self.dirty.setdefault(start, set())
        if late_rows is not None and late_rows.any():
            self.late_out.append((-1, {n: c[late_rows] for n, c in batch.items()}))
            self.late_count += int(late_rows.sum())

    # -- emission -----------------------------------------------------------------------------
    def _emit(self, wm: float) -> list[tuple[int, Any]]:
        if self.counting:
            return self._emit_counted(wm)
        if isinstance(self.windower, Session):
            return self._emit_sessions(wm)
        out: list[tuple[int, Any]] = []
        size = self.windower.size
        for start in sorted(self.open):
            end = start + size
            if end > wm:
                break
            if start not in self.fired:
                out.append(self._result(start, None))
                self.fired.add(start)
            elif start in self.dirty:
                out.append(self._result(start, self.dirty[start]))
            self.dirty.pop(start, None)
            if end + self.lateness <= wm:
                del self.open[start]
                self.fired.discard(start)
        return [c for c in out if c[1] is not None]

    def _result(self, start: Any, keys: set[Any] | None) -> tuple[int, Any]:
        if self.columns:
            return (-1, self._columns_result(start))
        accs, result = self.open[start], self.agg.result
        chosen = accs if keys is None else [k for k in accs if k in keys]
        try:
            return (-1, [(start, k, result(accs[k], start, k)) for k in chosen] or None)
        except Exception as exc:
            raise self.where.failed(exc) from exc

    def _columns_result(self, start: float) -> dict[str, Any]:
        import numpy as np

        from ..data.columns import reduce_columns

        parts = self.open[start]
        if len(parts) > 1:
            keys = np.concatenate([k for k, _ in parts])
            values = np.concatenate([v for _, v in parts])
            parts = self.open[start] = [reduce_columns(keys, values, getattr(np, self.agg.ufunc))]
        keys, values = parts[0]
        if self.agg.name == "count":
            values = values.astype(np.int64)
        return {"window_start": np.full(len(keys), start), "key": keys, "value": values}

    def _emit_sessions(self, wm: float) -> list[tuple[int, Any]]:
        gap, out = self.windower.gap, []
        for key in list(self.open):
            for s in list(self.open[key]):
                if s[1] + gap <= wm:
                    acc = self.agg.init()
                    for r in s[2]:
                        acc = self.agg.add(acc, r)
                    out.append((s[0], key, self.agg.result(acc, s[0], key)))
                    self.open[key].remove(s)
            if not self.open[key]:
                del self.open[key]
        return [(-1, out)] if out else []

    def _emit_counted(self, wm: float) -> list[tuple[int, Any]]:
        out = []
        for key in list(self.open):
            index, records = self.open[key]
            if len(records) == self.windower.n or (wm == math.inf and records):
                acc = self.agg.init()
                for r in records:
                    acc = self.agg.add(acc, r)
                out.append((index, key, self.agg.result(acc, index, key)))
                self.open[key] = (index + 1, [])
        self.dirty.clear()
        return [(-1, out)] if out else []

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> Any:
        wm = self.watermark.value if self.watermark else -math.inf
        return (self.open, self.fired, self.maxima, wm, self.late_count)

    def restore(self, state: Any) -> None:
        self.open, self.fired, self.maxima, wm, self.late_count = state
        self.restored_watermark = wm

    def open_windows(self) -> int:
        return len(self.open)


class LateOut(Node):
    """A window's side output: its late records and those whose event time could not be read, as
    they came (with_reason: as (reason, record))."""

    def __init__(self, where: Where, window: Window, with_reason: bool):
        super().__init__(where, [window], window.inputs[0].kind if window.columns else "records")
        self.window, self.with_reason = window, with_reason

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        out = list(self.window.late_out)
        late = self.window.late_records
        if late:
            out.append((-1, late if self.with_reason else [r for _, r in late]))
        return out


def _same_time(batch: dict[str, Any], now: float) -> Any:
    """A time column of `now` for every row of a batch (a processing-time window's)."""
    import numpy as np

    return np.full(len(next(iter(batch.values()))), now)


def _last_closed(wm: float, every: float, size: float, lateness: float) -> float | None:
    """The largest window index k whose window has closed under the watermark wm: k * every + size
    + lateness <= wm, computed as a row's test computes it (the expression grows with k, so one
    scalar stands for the test of every row); -inf when none has, inf when all have; None where
    the indices are too large to be exact in a float (each row is then tested)."""
    if not math.isfinite(wm):
        return wm
    k = math.floor((wm - size - lateness) / every)
    if abs(k) > 1 << 50:
        return None
    while k * every + size + lateness > wm:
        k -= 1
    while (k + 1) * every + size + lateness <= wm:
        k += 1
    return float(k)


def _per_window(index: Any, keys: Any, values: Any, ufunc: Any) -> list[tuple[int, Any]]:
    """The rows of a batch reduced per (window index, key): [(index, (keys, values)), ...], each
    window's keys sorted and distinct. Non-negative integer keys are reduced in one pass over
    (window, key) cell codes (data.columns.reduce_columns: one bincount where the cells are few, as
    a hand-written program does); other keys are sorted by window once, then reduced window by
    window."""
    import numpy as np

    from ..data.columns import reduce_columns

    low, high = int(index.min()), int(index.max())
    if high == low:
        return [(low, reduce_columns(keys, values, ufunc))]
    if keys.dtype.kind in "iu" and int(keys.min()) >= 0 and (high - low + 1) * (int(keys.max()) + 1) < 1 << 62:
        width = int(keys.max()) + 1
        cells, values = reduce_columns((index - low) * width + keys.astype(np.int64, copy=False), values, ufunc)
        index = cells // width
        keys, reduce = (cells - index * width).astype(keys.dtype), None
        index += low
    else:
        order = np.argsort(index, kind="stable")
        index, keys, values, reduce = index[order], keys[order], values[order], reduce_columns
    cuts = np.flatnonzero(index[1:] != index[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(index)]
    return [
        (int(index[a]), (keys[a:b], values[a:b]) if reduce is None else reduce(keys[a:b], values[a:b], ufunc))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
