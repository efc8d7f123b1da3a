"""Narrow stages: each turns one partition into the next, lazily, so that a chain of them is one
generator pass over the partition (no list between the steps). A failure in a user function is
raised as the operation's error, with the original exception as __cause__."""

from __future__ import annotations

import itertools

from .errors import DataError
from .sources import TextPart

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from .errors import Where


def map_stage(where: Where, fn: Callable[[Any], Any], part: Iterable[Any]) -> Iterator[Any]:
    for x in part:
        try:
            y = fn(x)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        yield y


def flat_map_stage(where: Where, fn: Callable[[Any], Iterable[Any]], part: Iterable[Any]) -> Iterator[Any]:
    if fn is str.split and type(part) is TextPart:  # a text source: whole chunks of lines split, in C
        return itertools.chain.from_iterable(map(str.split, part.chunks()))
    return _flat_map(where, fn, part)


def _flat_map(where: Where, fn: Callable[[Any], Iterable[Any]], part: Iterable[Any]) -> Iterator[Any]:
    for x in part:
        try:
            ys = fn(x)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        yield from ys


def filter_stage(where: Where, pred: Callable[[Any], Any], part: Iterable[Any]) -> Iterator[Any]:
    for x in part:
        try:
            keep = pred(x)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        if keep:
            yield x


def key_by_stage(where: Where, fn: Callable[[Any], Any], part: Iterable[Any]) -> Iterator[Any]:
    for x in part:
        try:
            k = fn(x)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        yield k, x


def map_values_stage(where: Where, fn: Callable[[Any], Any], part: Iterable[Any]) -> Iterator[Any]:
    for kv in pairs(where, part):
        k, v = kv
        try:
            w = fn(v)
        except DataError:
            raise
        except Exception as exc:
            raise where.failed(exc) from exc
        yield k, w


def map_partitions_stage(where: Where, fn: Callable[[Any], Any], part: Any) -> Any:
    """fn(part): the partition as it is (an iterator, or a numpy block) -> an iterable or a block."""
    try:
        return fn(part)
    except DataError:
        raise
    except Exception as exc:
        raise where.failed(exc) from exc


def pairs(where: Where, part: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """The elements of a keyed partition, each checked to be a (key, value) pair."""
    for kv in part:
        if type(kv) is not tuple or len(kv) != 2:
            if not (isinstance(kv, (tuple, list)) and len(kv) == 2):
                raise DataError(f"{where}: expects (key, value) pairs, got {type(kv).__name__} {_short(kv)}")
        yield kv


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
