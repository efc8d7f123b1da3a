"""Sorts larger than memory (Twister2's useDisk for sort_by and group_by_key(sort=True)): when a Data
has a memory budget, the object path of a global sort holds at most a share of it at a time.

- Locally, the partition is cut into runs of at most budget / SHARE; each is sorted, sampled and,
  when more follow, written to disk. The runs merge (heapq.merge, stable) into the worker's sorted
  stream, read back a batch at a time.
- The splitters come from every run's samples. The stream is then sent in rounds of at most
  budget / SHARE elements, each to the worker whose key range holds it; every worker takes part in
  every round until no worker has more (each round is one guarded exchange).
- A source sends its elements in order, so what one worker receives from one source concatenates to
  a sorted run. It is kept per source and written to disk past the budget; the partition is the
  stable merge of the sources' runs in worker order, so equal keys keep their input order.

The run files live in a private folder under the scratch folder (spill.private_folder), removed as
they are read, when the operation fails, or when the process exits.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os

from .errors import DataError
from .spill import SHARE, append_batches, item_bytes, private_folder, read_removing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from .errors import Where

BATCH = 1024  # elements per pickled batch in a run file: what a merge holds of each run
FIRST = 1024  # elements taken before the size of one is estimated


class RunFiles:
    """Sorted runs on disk, by name, each a sequence of pickled batches."""

    def __init__(self, scratch_dir: str | None, on_spilled: Callable[[int], None]):
        self.scratch_dir, self.on_spilled = scratch_dir, on_spilled
        self.folder: str | None = None

    def append(self, name: str, items: list[Any]) -> None:
        self.folder = self.folder or private_folder(self.scratch_dir)
        path = os.path.join(self.folder, name)
        self.on_spilled(append_batches(path, (items[i : i + BATCH] for i in range(0, len(items), BATCH))))

    def has(self, name: str) -> bool:
        return self.folder is not None and os.path.exists(os.path.join(self.folder, name))

    def read(self, name: str) -> Iterator[Any]:
        """The run's elements in order; its file is removed once read."""
        return read_removing(os.path.join(self.folder or "", name))

    def discard(self) -> None:
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def sorted_run(where: Where, items: Iterable[Any], key: Any, ascending: bool) -> list[Any]:
    """items sorted (stably), a failing key function or keys that cannot be compared raised as
    the operation's error."""
    try:
        return sorted(items, key=key, reverse=not ascending)
    except DataError:
        raise
    except TypeError as exc:
        raise where.unorderable(exc) from exc
    except Exception as exc:
        raise where.failed(exc) from exc


def evenly(items: Any, want: int) -> list[Any]:
    """`want` of the items (all of them when there are fewer), evenly spaced from the first."""
    m = len(items)
    want = min(m, want)
    return [items[i * m // want] for i in range(want)] if want else []


def _samples(run: list[Any], key: Any, want: int) -> list[Any]:
    picked = evenly(run, want)
    return [key(x) for x in picked] if key else picked


def local_stream(
    where: Where, part: Iterable[Any], key: Any, ascending: bool, budget: int, files: RunFiles, want: int
) -> tuple[Iterator[Any], list[Any]]:
    """(the partition sorted, as a stream; `want` samples of its keys), holding at most
    budget / SHARE of it in memory: sorted runs past that go to disk and merge lazily."""
    it = iter(part)
    names: list[str] = []
    samples: list[Any] = []
    limit = 0
    pending: list[Any] = []
    while True:
        room = FIRST if not limit else max(1, min(65536, limit - len(pending)))
        piece = list(itertools.islice(it, room))
        pending += piece
        if not limit and pending:
            limit = max(1, budget // SHARE // item_bytes(pending))
        done = len(piece) < room
        if not done and len(pending) < limit:
            continue
        run = sorted_run(where, pending, key, ascending)
        pending = []
        samples += _samples(run, key, want)
        if done:
            break
        names.append(f"run-{len(names):05d}")
        files.append(names[-1], run)
        del run
    if not names:
        return iter(run), _even(samples, want, where)
    streams = [files.read(name) for name in names] + [iter(run)]
    return heapq.merge(*streams, key=key, reverse=not ascending), _even(samples, want, where)


def _even(samples: list[Any], want: int, where: Where) -> list[Any]:
    """`want` of the samples, evenly spaced in key order."""
    try:
        samples.sort()
    except TypeError as exc:
        raise where.unorderable(exc) from exc
    return evenly(samples, want)


class Sending:
    """The sending side: the sorted stream cut into rounds, each element to its key range's worker."""

    def __init__(
        self, where: Where, stream: Iterable[Any], key: Any, cut_at: list[Any], ascending: bool, budget: int, size: int
    ):
        self.where, self.it, self.key, self.cut_at = where, iter(stream), key, cut_at
        self.ascending, self.budget, self.size = ascending, budget, size
        self.limit = 0
        self.more = True
        self.head: list[Any] = []  # the element looked ahead at in the last round

    def next_round(self) -> list[tuple[bool, list[Any]]]:
        """(more to come, batch) for each destination."""
        batches: list[list[Any]] = [[] for _ in range(self.size)]
        if self.more:
            room = self.limit or FIRST
            piece = self.head + list(itertools.islice(self.it, room + 1 - len(self.head)))
            self.more = len(piece) > room
            self.head = [piece.pop()] if self.more else []
            if not self.limit and piece:
                self.limit = max(1, self.budget // SHARE // item_bytes(piece))
            self._cut(piece, batches)
        return [(self.more, b) for b in batches]

    def _cut(self, piece: list[Any], batches: list[list[Any]]) -> None:
        key, cut_at, top = self.key, self.cut_at, self.size - 1
        try:
            for x in piece:
                i = bisect.bisect_left(cut_at, key(x) if key else x)
                batches[i if self.ascending else top - i].append(x)
        except DataError:
            raise
        except TypeError as exc:
            raise self.where.unorderable(exc) from exc
        except Exception as exc:
            raise self.where.failed(exc) from exc


def exchange_sorted(
    ex: Any,
    where: Where,
    stream: Iterable[Any],
    key: Any,
    cut_at: list[Any],
    ascending: bool,
    budget: int,
    files: RunFiles,
) -> Callable[[], Iterator[Any]]:
    """The rounds of a sort under a budget; the thunk that gives this worker's sorted partition."""
    sending = Sending(where, stream, key, cut_at, ascending, budget, ex.size)
    held: list[list[Any]] = [[] for _ in range(ex.size)]
    per = 0
    try:
        while True:
            got = ex.alltoall(where, sending.next_round)
            for source, (_more, batch) in enumerate(got):
                held[source] += batch
            n = sum(map(len, held))
            if not per and n:
                per = item_bytes(next(h for h in held if h))
            if n and n * per > budget // SHARE:
                for source, items in enumerate(held):
                    if items:
                        files.append(f"from-{source:05d}", items)
                held = [[] for _ in range(ex.size)]
            if not any(more for more, _ in got):
                break
    except BaseException:
        files.discard()
        raise
    if files.folder is None:
        out = sorted_run(where, list(itertools.chain.from_iterable(held)), key, ascending)  # near-linear
        return lambda: iter(out)

    def merged() -> Iterator[Any]:
        try:
            sources = [
                itertools.chain(files.read(f"from-{s:05d}") if files.has(f"from-{s:05d}") else (), held[s])
                for s in range(ex.size)
            ]
            yield from heapq.merge(*sources, key=key, reverse=not ascending)
        finally:
            files.discard()

    return merged
