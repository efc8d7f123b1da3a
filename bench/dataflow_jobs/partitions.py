"""The sort's answer across partitions, without numpy (bench/dataflow.py's harness checks answers
with it and stays small: every process it starts inherits its peak RSS as a floor, see
dataflow_sides.py)."""

from __future__ import annotations


def combined(parts: list[dict]) -> dict:
    """The summary of partitions that, in this order, should concatenate to one sorted whole."""
    parts = [p for p in parts if p["count"]]
    ordered = all(p["sorted"] for p in parts) and all(a["last"] <= b["first"] for a, b in zip(parts, parts[1:]))
    return {
        "count": sum(p["count"] for p in parts),
        "checksum": sum(p["checksum"] for p in parts) % (1 << 64),
        "sorted": ordered,
        "first": parts[0]["first"] if parts else None,
        "last": parts[-1]["last"] if parts else None,
    }
