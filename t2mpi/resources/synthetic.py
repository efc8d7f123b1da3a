"""hwloc synthetic descriptions ('package:2 numa:4 l3:2 core:8 pu:2'), parsed in pure Python
into a t2mpi.resources.topology.Node (or built by libhwloc, hwloc=True, to check the parser).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .topology import (
    DEFAULT_NUMA_MEMORY,
    MAX_PUS,
    Core,
    Node,
    NumaDomain,
    TopologyError,
    allowed_within,
    node_from_hwloc,
    parse_cpuset,
)

_LEVEL_KINDS = {
    "package": "package",
    "pack": "package",
    "socket": "package",
    "sock": "package",
    "numa": "numa",
    "numanode": "numa",
    "node": "numa",
    "l3": "l3",
    "l3cache": "l3",
    "core": "core",
    "pu": "pu",
    "group": "other",
    "die": "other",
    "l1": "other",
    "l1cache": "other",
    "l2": "other",
    "l2cache": "other",
    "l4": "other",
    "l4cache": "other",
}
_TOKEN = re.compile(r"^(\[)?([A-Za-z][A-Za-z0-9]*)(?::(\d+))?(?:\((.*)\))?(\])?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?$")
_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


@dataclass(frozen=True)
class _Level:
    name: str
    kind: str
    count: int
    attrs: str


@dataclass(frozen=True)
class _Synthetic:
    levels: tuple[_Level, ...]  # top-down, ending with core and pu
    numa_at: int  # the level whose objects are NUMA domains; -1: the machine
    numa_is_child: bool  # written as [numa] memory children of that level
    memory: int | None  # bytes per domain, None when the description does not say
    below: tuple[int, ...]  # PUs under one object of each level

    @property
    def total(self) -> int:
        return self.below[0] * self.levels[0].count


def _parse_size(text: str, desc: str) -> int:
    m = _SIZE.match(text.strip().removeprefix("memory="))
    if not m:
        raise TopologyError(f"bad memory size {text!r} in {desc!r}: write e.g. 32GiB, 32GB or 34359738368")
    return int(float(m.group(1)) * _UNITS.get((m.group(2) or "").lower(), 1))


def _parse_synthetic(desc: str) -> _Synthetic:
    levels: list[_Level] = []
    child_at, memory = None, None
    for token in desc.split():
        m = _TOKEN.match(token)
        kind = _LEVEL_KINDS.get(m.group(2).lower()) if m else None
        if m and m.group(2).lower() == "machine":
            continue
        if kind is None:
            raise TopologyError(
                f"bad level {token!r} in synthetic description {desc!r}: "
                "use package:N, numa:N, [numa(32GiB)], l3:N, core:N, pu:N"
            )
        if m.group(1) or m.group(5):
            if not (m.group(1) and m.group(5)) or kind != "numa" or m.group(3) or child_at is not None:
                raise TopologyError(f"bad memory child {token!r} in {desc!r}: write [numa] or [numa(32GiB)]")
            child_at, memory = len(levels) - 1, _parse_size(m.group(4), desc) if m.group(4) else None
        elif not m.group(3) or int(m.group(3)) < 1:
            raise TopologyError(f"level {token!r} in {desc!r} needs a count of at least 1, e.g. core:8")
        else:
            levels.append(_Level(m.group(2), kind, int(m.group(3)), m.group(4) or ""))
    kinds = [lv.kind for lv in levels]
    if kinds[-1:] == ["core"]:
        levels.append(_Level("pu", "pu", 1, ""))
        kinds.append("pu")
    if kinds.count("core") != 1 or kinds.count("pu") != 1 or kinds[-2:] != ["core", "pu"]:
        raise TopologyError(f"synthetic description {desc!r} must end with core:N pu:N (one of each)")
    numa_levels = [i for i, k in enumerate(kinds) if k == "numa"]
    if len(numa_levels) + (child_at is not None) > 1:
        raise TopologyError(f"synthetic description {desc!r} gives NUMA domains twice")
    if numa_levels and levels[numa_levels[0]].attrs:
        memory = _parse_size(levels[numa_levels[0]].attrs, desc)
    below = [1] * len(levels)
    for i in range(len(levels) - 2, -1, -1):
        below[i] = below[i + 1] * levels[i + 1].count
    if below[0] * levels[0].count > MAX_PUS:
        raise TopologyError(
            f"synthetic description {desc!r} has {below[0] * levels[0].count} PUs; a node has at most {MAX_PUS}"
        )
    numa_at = numa_levels[0] if numa_levels else -1 if child_at is None else child_at
    return _Synthetic(tuple(levels), numa_at, not numa_levels, memory, tuple(below))


def _pu_os_indices(syn: _Synthetic, desc: str) -> list[int]:
    """OS index of each PU in logical order, following hwloc's pu:N(indexes=...) attribute."""
    attrs, total = syn.levels[-1].attrs, syn.total
    spec = attrs.removeprefix("indexes=")
    if attrs and attrs == spec:
        raise TopologyError(f"unknown pu attribute {attrs!r} in {desc!r}: only indexes= is supported")
    if not attrs or re.fullmatch(r"[\d,-]+", spec):
        order = [i for part in spec.split(",") for i in parse_cpuset(part)] if attrs else list(range(total))
        if sorted(order) != sorted(set(order)) or len(order) != total:
            raise TopologyError(f"indexes= in {desc!r} lists {len(set(order))} distinct PUs, not {total}")
        return order
    loops = _interleave_loops(syn, spec, desc)
    logical_in_os_order = [
        sum(i * step for i, (step, _) in zip(reversed(idx), loops))
        for idx in itertools.product(*(range(n) for _, n in reversed(loops)))
    ]
    if sorted(logical_in_os_order) != list(range(total)):
        raise TopologyError(f"indexes={spec} in {desc!r} does not number every PU once")
    os_of = [0] * total
    for os_index, logical in enumerate(logical_in_os_order):
        os_of[logical] = os_index
    return os_of


def _interleave_loops(syn: _Synthetic, spec: str, desc: str) -> list[tuple[int, int]]:
    """(logical step, count) per loop, fastest first, from 'core:pu' or hwloc's own '2*4:1*2'."""
    parts = spec.split(":")
    if all("*" in p for p in parts):
        return [(int(p.partition("*")[0]), int(p.partition("*")[2])) for p in parts]
    depth = {lv.kind: i for i, lv in enumerate(syn.levels)}
    try:
        chosen = [depth[_LEVEL_KINDS[p.lower()]] for p in parts]
    except KeyError:
        raise TopologyError(f"bad indexes={spec} in {desc!r}: name its levels, e.g. core:pu") from None
    bigger = lambda d: max((e for e in chosen if e < d), default=None)  # noqa: E731
    return [(syn.below[d], (syn.total if bigger(d) is None else syn.below[bigger(d)]) // syn.below[d]) for d in chosen]


def from_synthetic(
    desc: str, hostname: str = "synthetic", allowed: Iterable[int] | None = None, *, hwloc: bool = False
) -> Node:
    """A node from an hwloc synthetic description, e.g. 'package:2 numa:4 l3:2 core:8 pu:2'.

    Levels: package/numa/l3/core/pu (group, die, l1, l2, l4 are accepted and only multiply
    counts); memory as numa:2(memory=32GiB), numa:2(32GiB) or [numa(32GB)] (memory children
    of the level before); Linux-like SMT numbering with pu:2(indexes=core:pu).  Sizes follow
    hwloc: GB = 10^9, GiB = 2^30; DEFAULT_NUMA_MEMORY when not given.  No NUMA level: the
    machine is one domain.  allowed=None: every PU.  hwloc=True: libhwloc builds it instead.
    """
    if hwloc:
        return _from_synthetic_hwloc(_parse_synthetic(desc), desc, hostname, allowed)
    node = _synthetic_node(desc)
    allowed = node.allowed if allowed is None else allowed_within(allowed, node.allowed, hostname)
    return Node(hostname, node.packages, node.cores, node.numa, allowed)


@functools.lru_cache(maxsize=64)
def _synthetic_node(desc: str) -> Node:
    syn = _parse_synthetic(desc)
    kinds = [lv.kind for lv in syn.levels]
    os_of = _pu_os_indices(syn, desc)
    span = lambda kind: syn.below[kinds.index(kind)] if kind in kinds else syn.total  # noqa: E731
    numa_span = syn.total if syn.numa_at < 0 else syn.below[syn.numa_at]
    per_core = syn.below[-2]
    cores = tuple(
        Core(
            tuple(sorted(os_of[first : first + per_core])),
            first // span("package"),
            first // numa_span,
            first // span("l3") if "l3" in kinds else None,
        )
        for first in range(0, syn.total, per_core)
    )
    memory = DEFAULT_NUMA_MEMORY if syn.memory is None else syn.memory
    numa = tuple(
        NumaDomain(d, tuple(sorted(os_of[d * numa_span : (d + 1) * numa_span])), memory)
        for d in range(syn.total // numa_span)
    )
    return Node("synthetic", tuple(range(syn.total // span("package"))), cores, numa, tuple(sorted(os_of)))


def _hwloc_description(syn: _Synthetic, desc: str) -> str:
    """The same node in libhwloc's grammar, with memory and PU numbering as step*count
    (libhwloc 3.0.0 now and then numbers PUs at random from indexes=core:pu)."""
    memory = f"memory={DEFAULT_NUMA_MEMORY if syn.memory is None else syn.memory}"
    tokens = [f"[numa({memory})]"] if syn.numa_at < 0 else []
    for i, lv in enumerate(syn.levels):
        attrs = lv.attrs
        if lv.kind == "numa":
            attrs = memory
        elif lv.kind == "pu" and attrs and not re.fullmatch(r"indexes=[\d,-]+", attrs):
            attrs = "indexes=" + ":".join(f"{s}*{n}" for s, n in _interleave_loops(syn, attrs[8:], desc))
        tokens.append(f"{lv.name}:{lv.count}" + (f"({attrs})" if attrs else ""))
        if i == syn.numa_at and syn.numa_is_child:
            tokens.append(f"[numa({memory})]")
    return " ".join(tokens)


def _from_synthetic_hwloc(syn: _Synthetic, desc: str, hostname: str, allowed: Iterable[int] | None) -> Node:
    import pyhwloc

    with pyhwloc.from_synthetic(_hwloc_description(syn, desc), load=True) as topo:
        return node_from_hwloc(topo, hostname, list(topo.cpuset) if allowed is None else allowed, devices=False)
