"""The join + group-sum input of bench/dataflow.py and its answer, shared by every side.

The input: two CSV files with a header line. facts.csv `key,value` (int64, float64 with two decimals),
keys uniform over 1.1 x the dimension keys, so that about 9 % of the facts find no dimension row;
dims.csv `key,group` (int64, int64), every key 0..D-1 once in random order, groups uniform over
GROUPS. The answer: the inner join's values summed per group, sorted by group, summarised as the
number of groups, the first and last group, the total and a group-weighted checksum (floats,
compared within a relative tolerance: every side sums in its own order).
"""

from __future__ import annotations

import io
import math
import os

GROUPS = 1000
TOLERANCE = 1e-9  # relative, for the float figures of the answer
FACTS = [("key", "<i8"), ("value", "<f8")]
DIMS = [("key", "<i8"), ("group", "<i8")]


def make_tables(facts_path: str, dims_path: str, facts: int, dims: int, seed: int, chunk: int = 1_000_000) -> int:
    """Write the two CSV files; returns their size in bytes together."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(dims_path, "w", encoding="ascii") as f:
        f.write("key,group\n")
        keys = rng.permutation(dims)
        groups = rng.integers(0, GROUPS, size=dims)
        for start in range(0, dims, chunk):
            pairs = zip(keys[start : start + chunk].tolist(), groups[start : start + chunk].tolist())
            f.write("".join(f"{k},{g}\n" for k, g in pairs))
    with open(facts_path, "w", encoding="ascii") as f:
        f.write("key,value\n")
        for start in range(0, facts, chunk):
            m = min(chunk, facts - start)
            keys = rng.integers(0, dims + dims // 10, size=m).tolist()
            cents = rng.integers(0, 10_000, size=m).tolist()
            f.write("".join(f"{k},{c // 100}.{c % 100:02d}\n" for k, c in zip(keys, cents)))
    return os.path.getsize(facts_path) + os.path.getsize(dims_path)


def line_start(f, offset: int, size: int) -> int:
    """The offset of the first line that starts at or after `offset`."""
    if offset <= 0 or offset >= size:
        return max(0, min(offset, size))
    f.seek(offset - 1)
    return offset - 1 + len(f.readline())


def read_share(path: str, part: int, parts: int, fields: list[tuple[str, str]]):
    """The rows of the lines that start in byte range `part` of `parts` of a CSV file (the header line
    belongs to no range), parsed by numpy into a structured array of `fields`."""
    import numpy as np

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = len(f.readline())
        body = size - header
        start = line_start(f, header + body * part // parts, size)
        stop = line_start(f, header + body * (part + 1) // parts, size)
        f.seek(start)
        chunk = f.read(stop - start)
    if not chunk:
        return np.empty(0, dtype=fields)
    return np.loadtxt(io.BytesIO(chunk), delimiter=",", dtype=fields, ndmin=1)


def join_group_sums(facts, dims) -> tuple:
    """(sums, counts) per group of the inner join of facts and dims on key (numpy: sort the dimension
    keys, searchsorted every fact key, bincount the matched values by group), each GROUPS long; a
    group is in the answer where its count is > 0."""
    import numpy as np

    order = np.argsort(dims["key"], kind="stable")
    dkeys, dgroups = dims["key"][order], dims["group"][order]
    at = np.searchsorted(dkeys, facts["key"])
    found = at < len(dkeys)
    found[found] = dkeys[at[found]] == facts["key"][found]
    groups = dgroups[at[found]]
    sums = np.bincount(groups, weights=facts["value"][found], minlength=GROUPS)
    counts = np.bincount(groups, minlength=GROUPS)
    return sums, counts


def summary(pairs) -> dict:
    """The answer from sorted (group, sum) pairs."""
    pairs = [(int(g), float(s)) for g, s in pairs]
    return {
        "groups": len(pairs),
        "first": pairs[0][0] if pairs else None,
        "last": pairs[-1][0] if pairs else None,
        "ordered": all(a[0] < b[0] for a, b in zip(pairs, pairs[1:])),
        "total": math.fsum(s for _, s in pairs),
        "checksum": math.fsum(s * (1 + g % 7) for g, s in pairs),
    }


def summary_of_arrays(sums, counts) -> dict:
    """The answer from per-group arrays (a group is present where its count is > 0)."""
    import numpy as np

    present = np.flatnonzero(counts)
    return summary(zip(present.tolist(), sums[present].tolist()))


def differences(got: dict, want: dict) -> list[str]:
    """What differs between two answers (exact for the integers, TOLERANCE for the floats)."""
    out = [
        f"{k} {got.get(k)} != {want.get(k)}" for k in ("groups", "first", "last", "ordered") if got.get(k) != want[k]
    ]
    for k in ("total", "checksum"):
        if k not in got or not math.isclose(got[k], want[k], rel_tol=TOLERANCE):
            out.append(f"{k} {got.get(k)} != {want[k]} (relative tolerance {TOLERANCE})")
    return out
