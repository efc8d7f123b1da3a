"""Windowers and the watermark: small pure classes, driven without MPI by the window operator and
by tests.

A windower says which windows a time (an event time, or the processing clock's) falls in:
`tumbling(seconds=10)` windows [k*10, k*10+10) aligned to multiples of the length from time 0;
`sliding(seconds=10, every=5)` windows of 10 s that start every 5 s (a time is in size/every of
them); `session(gap=5)`, a key's windows that close after `gap` seconds without an event;
`count_window(100)`, a key's windows of 100 records each.

The watermark (the issue's contract): the smallest, over the input partitions, of the largest event
time read there, minus `disorder`; a partition that ended does not hold it back, nor one that gave
no record for `idle_timeout` processing seconds (it counts as caught up with the newest event time
read anywhere). It never goes back.
"""

from __future__ import annotations

import math

from ..data.errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _positive(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise DataError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


class Tumbling:
    """Windows of `size` seconds, [k*size, (k+1)*size)."""

    kind = "tumbling"

    def __init__(self, size: float):
        self.size = self.every = size

    def __repr__(self) -> str:
        return f"tumbling(seconds={self.size:g})"

    def starts(self, ts: float) -> list[float]:
        return [math.floor(ts / self.size) * self.size]

    def end(self, start: float) -> float:
        return start + self.size


class Sliding(Tumbling):
    """Windows of `size` seconds starting every `every` seconds (multiples of `every` from 0)."""

    kind = "sliding"

    def __init__(self, size: float, every: float):
        if every > size:
            raise DataError(
                f"sliding: every={every:g} is longer than the window ({size:g} s); windows would leave gaps"
            )
        self.size, self.every = size, every

    def __repr__(self) -> str:
        return f"sliding(seconds={self.size:g}, every={self.every:g})"

    def starts(self, ts: float) -> list[float]:
        last = math.floor(ts / self.every)
        first = last - math.ceil(self.size / self.every)
        return [k * self.every for k in range(first, last + 1) if k * self.every <= ts < k * self.every + self.size]


class Session:
    """A key's session: events closer than `gap` seconds in one window [first, last + gap)."""

    kind = "session"

    def __init__(self, gap: float):
        self.gap = gap

    def __repr__(self) -> str:
        return f"session(gap={self.gap:g})"


class CountWindow:
    """A key's windows of `n` records in arrival order; window_start is the window's index."""

    kind = "count"

    def __init__(self, n: int):
        self.n = n

    def __repr__(self) -> str:
        return f"count_window({self.n})"


def tumbling(seconds: float) -> Tumbling:
    return Tumbling(_positive("tumbling: seconds", seconds))


def sliding(seconds: float, every: float) -> Sliding:
    return Sliding(_positive("sliding: seconds", seconds), _positive("sliding: every", every))


def session(gap: float) -> Session:
    return Session(_positive("session: gap", gap))


def count_window(n: int) -> CountWindow:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"count_window: n must be an int >= 1, got {n!r}")
    return CountWindow(n)


def merge_sessions(sessions: list[list[Any]], ts: float, gap: float) -> list[Any]:
    """Add event time `ts` to a key's sessions ([start, last, acc] lists, sorted by start): the
    session it falls in (or bridges) grows; returns the session it joined (a new one, or the
    merge of those it bridged: the caller merges their accumulators, listed after the first)."""
    near = [s for s in sessions if s[0] - gap < ts < s[1] + gap]
    if not near:
        new = [ts, ts, None]
        sessions.append(new)
        sessions.sort(key=lambda s: s[0])
        return [new]
    near[0][0] = min(near[0][0], ts, *(s[0] for s in near))
    near[0][1] = max(near[0][1], ts, *(s[1] for s in near))
    for s in near[1:]:
        sessions.remove(s)
    return near


class Watermark:
    """The watermark of one window operator over `n` input partitions (pure: the operator feeds it
    each round's per-partition maxima, already combined over the workers)."""

    def __init__(self, n: int, disorder: float):
        self.n = n
        self.disorder = disorder
        self.value = -math.inf

    def advance(self, maxima: list[float], idle: list[bool] | None = None) -> float:
        """maxima[p]: the largest event time read in partition p so far (+inf: p ended, -inf:
        nothing read yet); idle[p]: p gave nothing for idle_timeout. An idle partition counts as
        caught up with the newest event time read anywhere: it does not hold the watermark back,
        nor push it past what was read. Returns the new watermark (never smaller than before)."""
        if idle and any(idle):
            newest = max((m for m in maxima if m != math.inf), default=-math.inf)
            maxima = [newest if i and m != math.inf else m for m, i in zip(maxima, idle)]
        low = min(maxima) if maxima else math.inf
        if low != -math.inf:
            self.value = max(self.value, low - self.disorder if low != math.inf else math.inf)
        return self.value
