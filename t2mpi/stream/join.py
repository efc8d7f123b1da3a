"""The windowed join of two keyed streams: both sides, tagged, in one window per key, whose whole
content (process) pairs every record of one side with every record of the other. By event time
(each side's event_time), or by processing time (time="processing": the records that reach the
join in the same window)."""

from __future__ import annotations

from ..data.errors import DataError
from .operators import Narrow, Node, Union

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..data.errors import Where


class Tag(Node):
    """(key, record) -> (key, (side, record)), still keyed."""

    def __init__(self, where: Where, parent: Node, side: int):
        super().__init__(where, [parent], "pairs")
        self.side = side

    def step(self, chunks: list[tuple[int, Any]], engine: Any) -> list[tuple[int, Any]]:
        side = self.side
        return [(p, [(k, (side, r)) for k, r in pairs]) for p, pairs in chunks]


def _pairs(ws: float, key: Any, tagged: list[Any]) -> list[Any]:
    left = [r for side, r in tagged if side == 0]
    right = [r for side, r in tagged if side == 1]
    return [(a, b) for a in left for b in right]


def _flatten(record: Any) -> list[Any]:
    ws, key, pairs = record
    return [(ws, key, pair) for pair in pairs]


def _tagged_clock(where: Where, windower: Any, event_time: Any) -> Any:
    """The event time of a tagged record: this stream's function for side 0, the other's for 1."""
    from .windowing import event_clock

    if event_time is None:
        raise DataError(f"{where}: {windower!r} is an event-time window; give event_time= (a function or a field name)")
    clocks = event_time if isinstance(event_time, tuple) else (event_time, event_time)
    if len(clocks) != 2:
        raise DataError(f"{where}: event_time is one function, or a pair (this stream's, the other's)")
    left_clock, right_clock = (event_clock(where, c) for c in clocks)

    def clock(tagged: Any) -> float:
        side, record = tagged
        return left_clock(record) if side == 0 else right_clock(record)

    return clock


def windowed_join(this: Any, other: Any, windower: Any, event_time: Any, options: dict[str, Any]) -> Any:
    from .api import Stream

    ctx = this.ctx
    where = this._where("join")
    if this.node.kind != "pairs" or other.node.kind != "pairs":
        raise DataError(f"{where}: join takes two keyed streams of records (key_by(fn) on both)")
    if options.get("time") != "processing":
        clock = _tagged_clock(where, windower, event_time)
    elif event_time is not None:
        raise DataError(f"{where}: a processing-time join takes no event_time; leave it out, or use time='event'")
    else:
        clock = None
    tagged = [ctx.add(Tag(where, s.node, side)).node for side, s in enumerate((this, other))]
    both = Stream(ctx, ctx.add(Union(where, tagged)).node)
    windows = both.window(windower, event_time=clock, **options).process(_pairs)
    joined = ctx.add(Narrow(where, windows.node, "flat_map", _flatten))
    joined.late = windows.late
    return joined
