"""CPU sets as Linux writes them ('0-3,8'), both ways: the one formatter and parser in t2mpi.

Cheap to import (ranks format their bindings with it): functools and itertools only.
"""

from __future__ import annotations

import functools
import itertools

from ..errors import TopologyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def format_cpuset(pus: Iterable[int]) -> str:
    """Sorted ranges, as Linux writes them: [0,1,2,3,8] -> '0-3,8'; empty -> ''."""
    ids = sorted(set(pus))
    parts = []
    for _, run in itertools.groupby(enumerate(ids), lambda t: t[1] - t[0]):
        run = [v for _, v in run]
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ",".join(parts)


@functools.lru_cache(maxsize=8192)
def parse_cpuset(text: str) -> tuple[int, ...]:
    """'0-3,8' -> (0, 1, 2, 3, 8); '' -> ().  Equal texts give the same tuple object."""
    ids: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            ids.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise TopologyError(f"bad cpuset {text.strip()!r}: expected ranges like 0-3,8") from None
    return tuple(sorted(ids))
