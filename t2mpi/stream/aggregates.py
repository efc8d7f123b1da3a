"""What a window computes: an accumulator per (window, key), made by init(), fed by add(acc, record)
and read by result(acc, window_start, key). count/sum/min/max also name their numpy ufunc, so that a
window over numpy batches aggregates whole columns (data/columns.py reduce_columns)."""

from __future__ import annotations

from ..data.errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_EMPTY = object()


class Aggregate:
    __slots__ = ("name", "init", "add", "result", "ufunc", "col")

    def __init__(
        self,
        name: str,
        init: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        result: Callable[[Any, float, Any], Any],
        ufunc: str | None = None,
        col: Any = None,
    ):
        self.name, self.init, self.add, self.result, self.ufunc, self.col = name, init, add, result, ufunc, col


def _value(col: Any) -> Callable[[Any], Any]:
    if col is None:
        return lambda r: r
    return lambda r: r[col]


def _plain(acc: Any, ws: float, key: Any) -> Any:
    return acc


def count() -> Aggregate:
    return Aggregate("count", lambda: 0, lambda a, r: a + 1, _plain, "add")


def _folding(name: str, fn: Callable[[Any, Any], Any], col: Any, ufunc: str | None) -> Aggregate:
    value = _value(col)

    def add(acc: Any, r: Any) -> Any:
        v = value(r)
        return v if acc is _EMPTY else fn(acc, v)

    return Aggregate(name, lambda: _EMPTY, add, _plain, ufunc, col)


def total(col: Any = None) -> Aggregate:
    return _folding("sum", lambda a, b: a + b, col, "add")


def smallest(col: Any = None) -> Aggregate:
    return _folding("min", min, col, "minimum")


def largest(col: Any = None) -> Aggregate:
    return _folding("max", max, col, "maximum")


def reduce(fn: Callable[[Any, Any], Any]) -> Aggregate:
    if not callable(fn):
        raise DataError(f"reduce: expects a function of two records, got {type(fn).__name__}")
    return _folding("reduce", fn, None, None)


def aggregate(
    init: Callable[[], Any], add: Callable[[Any, Any], Any], result: Callable[[Any], Any] | None
) -> Aggregate:
    for what, fn in (("init", init), ("add", add), ("result", result)):
        if fn is not None and not callable(fn):
            raise DataError(f"aggregate: {what} must be a function, got {type(fn).__name__}")
    done = _plain if result is None else (lambda acc, ws, key: result(acc))
    return Aggregate("aggregate", init, add, done)


def process(fn: Callable[[float, Any, list[Any]], Any]) -> Aggregate:
    """fn(window_start, key, records) once the window closes: the whole window's records."""
    if not callable(fn):
        raise DataError(f"process: expects fn(window_start, key, records), got {type(fn).__name__}")

    def add(acc: list[Any], r: Any) -> list[Any]:
        acc.append(r)
        return acc

    return Aggregate("process", list, add, lambda acc, ws, key: fn(ws, key, acc))
