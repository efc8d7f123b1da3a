"""One node's hardware as frozen data: packages, cores, NUMA domains, the PUs we may use.

Sources: from_synthetic (hwloc synthetic descriptions, parsed in pure Python), from_sysfs
(/sys, pure Python), from_xml (an lstopo --of xml export) and from_machine (this machine),
the last two through pyhwloc.  pyhwloc loads libhwloc with RTLD_GLOBAL, which breaks a
process that also loads the Open MPI wheel, so it is imported only inside the functions
that need it: an MPI rank uses from_sysfs(), or `python -m t2mpi.topology --json` in a
subprocess and from_dict().  PU, package and NUMA numbers are OS indices.  A synthetic
NUMA domain without a memory size has DEFAULT_NUMA_MEMORY (16 GiB).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from t2mpi.errors import T2mpiError

DEFAULT_NUMA_MEMORY = 16 * 2**30


MAX_PUS = 1 << 16   # hardware threads in one node (the largest machines have a few thousand)


class TopologyError(T2mpiError, ValueError):
    """A topology source or description that cannot be understood; one line."""


@dataclass(frozen=True)
class Core:
    pus: tuple[int, ...]  # OS indices of its hardware threads, sorted
    package: int
    numa: int  # OS index of its NUMA domain
    l3: int | None = None  # index of the L3 cache it shares, None when unknown


@dataclass(frozen=True)
class NumaDomain:
    os_index: int
    cpuset: tuple[int, ...]  # sorted PU OS indices
    memory: int  # bytes


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # "gpu" or "nic"
    numa: int | None = None


@dataclass(frozen=True)
class Node:
    hostname: str
    packages: tuple[int, ...]
    cores: tuple[Core, ...]
    numa: tuple[NumaDomain, ...]
    allowed: tuple[int, ...]  # PUs this process may use, sorted
    gpus: tuple[Device, ...] = ()
    nics: tuple[Device, ...] = ()

    @property
    def pus(self) -> tuple[int, ...]:
        return tuple(sorted(p for core in self.cores for p in core.pus))

    @property
    def allowed_cores(self) -> tuple[Core, ...]:
        allowed = set(self.allowed)
        return tuple(c for c in self.cores if allowed.intersection(c.pus))


# ---- cpusets as text --------------------------------------------------------------


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


def _allowed_within(allowed: Iterable[int], pus: Sequence[int], hostname: str) -> tuple[int, ...]:
    wanted = set(allowed)
    if unknown := wanted.difference(pus):
        raise TopologyError(f"allowed PUs {format_cpuset(unknown)} are not on node {hostname} "
                            f"(PUs {format_cpuset(pus)})")  # fmt: skip
    return tuple(sorted(wanted))


# ---- synthetic descriptions ---------------------------------------------------------

_LEVEL_KINDS = {
    "package": "package", "pack": "package", "socket": "package", "sock": "package",
    "numa": "numa", "numanode": "numa", "node": "numa", "l3": "l3", "l3cache": "l3",
    "core": "core", "pu": "pu", "group": "other", "die": "other", "l1": "other",
    "l1cache": "other", "l2": "other", "l2cache": "other", "l4": "other", "l4cache": "other",
}  # fmt: skip
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
            raise TopologyError(f"bad level {token!r} in synthetic description {desc!r}: "
                                "use package:N, numa:N, [numa(32GiB)], l3:N, core:N, pu:N")  # fmt: skip
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
        raise TopologyError(f"synthetic description {desc!r} has {below[0] * levels[0].count} PUs; "
                            f"a node has at most {MAX_PUS}")
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
    return [(syn.below[d], (syn.total if bigger(d) is None else syn.below[bigger(d)]) // syn.below[d])
            for d in chosen]  # fmt: skip


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
    allowed = node.allowed if allowed is None else _allowed_within(allowed, node.allowed, hostname)
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
        Core(tuple(sorted(os_of[first : first + per_core])), first // span("package"), first // numa_span,
             first // span("l3") if "l3" in kinds else None)  # fmt: skip
        for first in range(0, syn.total, per_core)
    )
    memory = DEFAULT_NUMA_MEMORY if syn.memory is None else syn.memory
    numa = tuple(NumaDomain(d, tuple(sorted(os_of[d * numa_span : (d + 1) * numa_span])), memory)
                 for d in range(syn.total // numa_span))  # fmt: skip
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
        return _from_hwloc(topo, hostname, list(topo.cpuset) if allowed is None else allowed, devices=False)


# ---- hwloc sources ------------------------------------------------------------------


def from_xml(path: str | os.PathLike, hostname: str | None = None,
             allowed: Iterable[int] | None = None) -> Node:  # fmt: skip
    """A node from an `lstopo --of xml` export; allowed=None means the export's allowed cpuset."""
    import pyhwloc

    if not Path(path).is_file():
        raise TopologyError(f"topology XML {os.fspath(path)} does not exist: export one with lstopo --of xml")
    try:
        topo = pyhwloc.from_xml_file(path, load=True)
    except Exception as exc:   # pyhwloc raises ValueError, OSError or its own errors
        raise TopologyError(f"topology XML {os.fspath(path)}: hwloc cannot read it ({exc}); "
                            "export one with lstopo --of xml") from None
    with topo:
        if allowed is None:
            allowed = set(topo.allowed_cpuset) & set(topo.cpuset)
        return _from_hwloc(topo, hostname, allowed, devices=True)


def from_machine(hostname: str | None = None) -> Node:
    """This machine, read by hwloc; allowed is this process's affinity (sched_getaffinity)."""
    import pyhwloc
    from pyhwloc.topology import TypeFilter

    topo = pyhwloc.from_this_system().set_io_types_filter(TypeFilter.KEEP_IMPORTANT)
    with topo:
        allowed = os.sched_getaffinity(0) & set(topo.cpuset)
        return _from_hwloc(topo, hostname or socket.gethostname(), allowed, devices=True)


def _from_hwloc(topo: Any, hostname: str | None, allowed: Iterable[int], devices: bool) -> Node:
    from pyhwloc.hwobject import ObjType

    numa = tuple(NumaDomain(n.os_index, tuple(sorted(n.cpuset)), int(n.local_memory))
                 for n in topo.iter_numa_nodes())  # fmt: skip
    numa_of_pu = {pu: d.os_index for d in numa for pu in d.cpuset}
    cores = []
    for obj in list(topo.iter_cores()) or list(topo.iter_cpus()):
        pus = tuple(sorted(obj.cpuset))
        pkg, l3 = obj.get_ancestor_obj_by_type(ObjType.PACKAGE), obj.get_ancestor_obj_by_type(ObjType.L3CACHE)
        cores.append(Core(pus, pkg.os_index if pkg else 0, numa_of_pu.get(pus[0], numa[0].os_index),
                          l3.logical_index if l3 else None))  # fmt: skip
    hostname = hostname or topo.get_root_obj().info.get("HostName") or "unknown"
    allowed = _allowed_within(allowed, sorted(p for c in cores for p in c.pus), hostname)
    packages = tuple(p.os_index for p in topo.iter_packages()) or (0,)
    gpus, nics = (_hwloc_devices(topo, "gpu"), _hwloc_devices(topo, "nic")) if devices else ((), ())
    return Node(hostname, packages, tuple(cores), numa, allowed, gpus, nics)


def _hwloc_devices(topo: Any, kind: str) -> tuple[Device, ...]:
    from pyhwloc.hwloc.core import ObjOsdevType as T

    mask = T.GPU | T.COPROC if kind == "gpu" else T.NETWORK | T.OPENFABRICS
    found = []
    for dev in topo.iter_os_devices():
        if not dev.attr or not dev.attr.types & mask:
            continue
        parent = dev.parent
        while parent is not None and parent.nodeset is None:
            parent = parent.parent
        nodes = list(parent.nodeset) if parent is not None else []
        found.append(Device(dev.name or "?", kind, nodes[0] if len(nodes) == 1 else None))
    return tuple(found)


# ---- sysfs source (no hwloc) --------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise TopologyError(f"cannot read {path}: {e.strerror}") from None


def from_sysfs(root: str | os.PathLike = "/sys", hostname: str | None = None,
               allowed: Iterable[int] | None = None) -> Node:  # fmt: skip
    """This machine read from sysfs under root, in pure Python (safe inside an MPI rank).

    allowed=None means this process's affinity.  Without devices/system/node (a kernel
    without NUMA) the node is one domain holding the physical memory (sysconf).
    """
    cpu_dir = Path(root, "devices/system/cpu")
    online = parse_cpuset(_read(cpu_dir / "online"))
    numa = _sysfs_numa(Path(root, "devices/system/node"), online)
    numa_of_pu = {pu: d.os_index for d in numa for pu in d.cpuset}
    l3_sets: dict[tuple[int, ...], int] = {}
    seen: set[int] = set()
    cores = []
    for pu in online:
        if pu in seen:
            continue
        topo = cpu_dir / f"cpu{pu}/topology"
        sibs = topo / "core_cpus_list"
        pus = tuple(p for p in parse_cpuset(_read(sibs if sibs.exists() else topo / "thread_siblings_list"))
                    if p in online) or (pu,)  # fmt: skip
        seen.update(pus)
        if pu not in numa_of_pu:
            raise TopologyError(f"PU {pu} under {cpu_dir} is in no NUMA domain of {root}/devices/system/node")
        l3 = _sysfs_l3(cpu_dir / f"cpu{pu}/cache")
        cores.append(Core(pus, int(_read(topo / "physical_package_id")), numa_of_pu[pu],
                          None if l3 is None else l3_sets.setdefault(l3, len(l3_sets))))  # fmt: skip
    cores.sort(key=lambda c: (c.package, c.numa, -1 if c.l3 is None else c.l3, c.pus))
    hostname = hostname or socket.gethostname()
    allowed = _allowed_within(os.sched_getaffinity(0) & set(online) if allowed is None else allowed,
                              online, hostname)  # fmt: skip
    return Node(hostname, tuple(sorted({c.package for c in cores})), tuple(cores), numa, allowed)


def _sysfs_numa(node_dir: Path, online: tuple[int, ...]) -> tuple[NumaDomain, ...]:
    dirs = sorted((int(p.name[4:]), p) for p in node_dir.glob("node[0-9]*")) if node_dir.is_dir() else []
    if not dirs:
        return (NumaDomain(0, online, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")),)
    domains = []
    for index, path in dirs:
        found = re.search(r"MemTotal:\s+(\d+)\s*kB", _read(path / "meminfo"))
        if not found:
            raise TopologyError(f"{path / 'meminfo'} has no 'MemTotal: N kB' line")
        cpus = tuple(p for p in parse_cpuset(_read(path / "cpulist")) if p in online)
        domains.append(NumaDomain(index, cpus, int(found.group(1)) * 1024))
    return tuple(domains)


def _sysfs_l3(cache_dir: Path) -> tuple[int, ...] | None:
    for index in sorted(cache_dir.glob("index[0-9]*")):
        if (index / "level").exists() and _read(index / "level") == "3":
            return parse_cpuset(_read(index / "shared_cpu_list"))
    return None


# ---- JSON and text ------------------------------------------------------------------

_NODE_KEYS = ("hostname", "packages", "cores", "numa", "allowed", "gpus", "nics")


def to_dict(node: Node) -> dict[str, Any]:
    """JSON-able dict; cpusets are written as ranges ('0-15,32-47')."""
    devices = lambda ds: [{"name": d.name, "kind": d.kind, "numa": d.numa} for d in ds]  # noqa: E731
    return {
        "hostname": node.hostname,
        "packages": list(node.packages),
        "cores": [{"pus": format_cpuset(c.pus), "package": c.package, "numa": c.numa, "l3": c.l3}
                  for c in node.cores],  # fmt: skip
        "numa": [{"os_index": d.os_index, "cpuset": format_cpuset(d.cpuset), "memory": d.memory}
                 for d in node.numa],  # fmt: skip
        "allowed": format_cpuset(node.allowed),
        "gpus": devices(node.gpus),
        "nics": devices(node.nics),
    }


def from_dict(data: dict[str, Any]) -> Node:
    """The inverse of to_dict; unknown or missing keys are errors."""
    unknown = sorted(set(data) - set(_NODE_KEYS))
    missing = [k for k in _NODE_KEYS[:5] if k not in data]
    if unknown or missing:
        what = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
        raise TopologyError(f"node JSON: {what}; valid keys: {', '.join(_NODE_KEYS)}")
    try:
        return Node(
            hostname=str(data["hostname"]),
            packages=tuple(int(p) for p in data["packages"]),
            cores=_cores_from_rows(tuple((c["pus"], c["package"], c["numa"], c.get("l3"))
                                         for c in data["cores"])),  # fmt: skip
            numa=_numa_from_rows(tuple((d["os_index"], d["cpuset"], d["memory"]) for d in data["numa"])),
            allowed=parse_cpuset(data["allowed"]),
            gpus=tuple(Device(d["name"], d["kind"], d.get("numa")) for d in data.get("gpus", ())),
            nics=tuple(Device(d["name"], d["kind"], d.get("numa")) for d in data.get("nics", ())),
        )
    except TopologyError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        where = f"node JSON for {data.get('hostname')!r}"
        raise TopologyError(f"{where} is malformed: {type(e).__name__} {e}") from None


# Nodes read alike share their tuples, so that plan() works out each distinct layout once.
@functools.lru_cache(maxsize=64)
def _cores_from_rows(rows: tuple[tuple[str, int, int, int | None], ...]) -> tuple[Core, ...]:
    return tuple(Core(parse_cpuset(pus), int(pkg), int(numa), None if l3 is None else int(l3))
                 for pus, pkg, numa, l3 in rows)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _numa_from_rows(rows: tuple[tuple[int, str, int], ...]) -> tuple[NumaDomain, ...]:
    return tuple(NumaDomain(int(i), parse_cpuset(cpuset), int(memory)) for i, cpuset, memory in rows)


def format_bytes(n: int) -> str:
    """Bytes in GiB/MiB, e.g. 34359738368 -> '32 GiB', 32000000000 -> '29.8 GiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} B"


def summary(node: Node) -> str:
    """A few lines a person checks before a run."""
    pus = node.pus
    smt = max((len(c.pus) for c in node.cores), default=1)
    l3 = {c.l3 for c in node.cores if c.l3 is not None}
    lines = [
        f"node {node.hostname}: {len(node.packages)} package(s), {len(node.cores)} cores, {len(pus)} PUs"
        f" ({smt} per core), {len(node.numa)} NUMA domain(s)" + (f", {len(l3)} L3 groups" if l3 else "")
    ]
    allowed = set(node.allowed)
    for d in node.numa:
        usable = sum(1 for c in node.cores if c.numa == d.os_index and allowed.intersection(c.pus))
        lines.append(f"  NUMA {d.os_index}: PUs {format_cpuset(d.cpuset) or 'none'}, "
                     f"{usable} allowed cores, {format_bytes(d.memory)}")  # fmt: skip
    scope = "all PUs" if len(allowed) == len(pus) else f"{len(allowed)} of {len(pus)} PUs"
    lines.append(f"  allowed: {format_cpuset(node.allowed) or 'none'} ({scope}, "
                 f"{len(node.allowed_cores)} cores)")  # fmt: skip
    for label, devices in (("GPUs", node.gpus), ("NICs", node.nics)):
        if devices:
            lines.append(f"  {label}: " + ", ".join(f"{d.name} (NUMA {d.numa})" for d in devices))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2mpi.topology", description="Print this node's topology.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--xml", metavar="FILE", help="an lstopo --of xml export")
    source.add_argument("--synthetic", metavar="DESC", help="an hwloc synthetic description")
    source.add_argument("--sysfs", nargs="?", const="/sys", metavar="ROOT", help="read sysfs, without hwloc")
    parser.add_argument("--hwloc", action="store_true", help="with --synthetic: build it with libhwloc")
    parser.add_argument("--json", action="store_true", help="print JSON (for from_dict), not a summary")
    args = parser.parse_args(argv)
    try:
        node = (from_xml(args.xml) if args.xml else from_synthetic(args.synthetic, hwloc=args.hwloc)
                if args.synthetic else from_sysfs(args.sysfs) if args.sysfs else from_machine())  # fmt: skip
    except TopologyError as e:
        print(f"t2mpi.topology: {e}", file=sys.stderr)
        return 2
    print(json.dumps(to_dict(node)) if args.json else summary(node))
    return 0


if __name__ == "__main__":
    sys.exit(main())
