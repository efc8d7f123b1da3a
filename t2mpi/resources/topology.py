"""One node's hardware as frozen data: packages, cores, NUMA domains, the PUs we may use.

Sources: from_synthetic (hwloc synthetic descriptions, parsed in pure Python), from_sysfs
(/sys, pure Python), from_xml (an lstopo --of xml export) and from_machine (this machine),
the last two through pyhwloc.  pyhwloc loads libhwloc with RTLD_GLOBAL, which breaks a
process that also loads the Open MPI wheel, so it is imported only inside the functions
that need it: an MPI rank uses from_sysfs(), or `python -m t2mpi.resources.topology --json` in a
subprocess and from_dict().  PU, package and NUMA numbers are OS indices.  A synthetic
NUMA domain without a memory size has DEFAULT_NUMA_MEMORY (16 GiB).
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sys
from collections import namedtuple
from pathlib import Path

from ..errors import T2mpiError, TopologyError
from .cpuset import format_cpuset, parse_cpuset

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

DEFAULT_NUMA_MEMORY = 16 * 2**30


MAX_PUS = 1 << 16  # hardware threads in one node (the largest machines have a few thousand)


# Named tuples, not dataclasses: an MPI rank that binds its worker reads its node with
# from_sysfs, and importing dataclasses (and typing) would cost every rank start-up time.
Core = namedtuple("Core", "pus package numa l3", defaults=(None,))
Core.__doc__ = """A core: pus, the OS indices of its hardware threads (sorted); package; numa, the OS
index of its NUMA domain; l3, the index of the L3 cache it shares (None when unknown)."""
NumaDomain = namedtuple("NumaDomain", "os_index cpuset memory")
NumaDomain.__doc__ = "A NUMA domain: its OS index, its PUs (sorted OS indices) and its memory in bytes."
Device = namedtuple("Device", "name kind numa", defaults=(None,))
Device.__doc__ = 'A PCI device: name, kind ("gpu" or "nic") and its NUMA domain (None when unknown).'


class Node(namedtuple("Node", "hostname packages cores numa allowed gpus nics", defaults=((), ()))):
    """One node: its hostname, packages, cores (Core), NUMA domains (NumaDomain), the PUs this
    process may use (allowed, sorted), and its GPUs and NICs (Device)."""

    __slots__ = ()

    @property
    def pus(self) -> tuple[int, ...]:
        return tuple(sorted(p for core in self.cores for p in core.pus))

    @property
    def allowed_cores(self) -> tuple[Core, ...]:
        allowed = set(self.allowed)
        return tuple(c for c in self.cores if allowed.intersection(c.pus))


def allowed_within(allowed: Iterable[int], pus: Sequence[int], hostname: str) -> tuple[int, ...]:
    wanted = set(allowed)
    if unknown := wanted.difference(pus):
        raise TopologyError(
            f"allowed PUs {format_cpuset(unknown)} are not on node {hostname} (PUs {format_cpuset(pus)})"
        )
    return tuple(sorted(wanted))


def from_synthetic(
    desc: str, hostname: str = "synthetic", allowed: Iterable[int] | None = None, *, hwloc: bool = False
) -> Node:
    """A node from an hwloc synthetic description (t2mpi.resources.synthetic.from_synthetic)."""
    from .synthetic import from_synthetic as made

    return made(desc, hostname, allowed, hwloc=hwloc)


# ---- hwloc sources ------------------------------------------------------------------


def from_xml(path: str | os.PathLike, hostname: str | None = None, allowed: Iterable[int] | None = None) -> Node:
    """A node from an `lstopo --of xml` export; allowed=None means the export's allowed cpuset."""
    import pyhwloc

    if not Path(path).is_file():
        raise TopologyError(f"topology XML {os.fspath(path)} does not exist: export one with lstopo --of xml")
    try:
        topo = pyhwloc.from_xml_file(path, load=True)
    except Exception as exc:  # pyhwloc raises ValueError, OSError or its own errors
        raise TopologyError(
            f"topology XML {os.fspath(path)}: hwloc cannot read it ({exc}); export one with lstopo --of xml"
        ) from None
    with topo:
        if allowed is None:
            allowed = set(topo.allowed_cpuset) & set(topo.cpuset)
        return node_from_hwloc(topo, hostname, allowed, devices=True)


def from_machine(hostname: str | None = None) -> Node:
    """This machine, read by hwloc; allowed is this process's affinity (sched_getaffinity)."""
    import pyhwloc
    from pyhwloc.topology import TypeFilter

    topo = pyhwloc.from_this_system().set_io_types_filter(TypeFilter.KEEP_IMPORTANT)
    with topo:
        allowed = os.sched_getaffinity(0) & set(topo.cpuset)
        return node_from_hwloc(topo, hostname or socket.gethostname(), allowed, devices=True)


def node_from_hwloc(topo: Any, hostname: str | None, allowed: Iterable[int], devices: bool) -> Node:
    from pyhwloc.hwobject import ObjType

    numa = tuple(NumaDomain(n.os_index, tuple(sorted(n.cpuset)), int(n.local_memory)) for n in topo.iter_numa_nodes())
    numa_of_pu = {pu: d.os_index for d in numa for pu in d.cpuset}
    cores = []
    for obj in list(topo.iter_cores()) or list(topo.iter_cpus()):
        pus = tuple(sorted(obj.cpuset))
        pkg, l3 = obj.get_ancestor_obj_by_type(ObjType.PACKAGE), obj.get_ancestor_obj_by_type(ObjType.L3CACHE)
        cores.append(
            Core(
                pus,
                pkg.os_index if pkg else 0,
                numa_of_pu.get(pus[0], numa[0].os_index),
                l3.logical_index if l3 else None,
            )
        )
    hostname = hostname or topo.get_root_obj().info.get("HostName") or "unknown"
    allowed = allowed_within(allowed, sorted(p for c in cores for p in c.pus), hostname)
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


def from_sysfs(
    root: str | os.PathLike = "/sys", hostname: str | None = None, allowed: Iterable[int] | None = None
) -> Node:
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
        pus = tuple(
            p for p in parse_cpuset(_read(sibs if sibs.exists() else topo / "thread_siblings_list")) if p in online
        ) or (pu,)
        seen.update(pus)
        if pu not in numa_of_pu:
            raise TopologyError(f"PU {pu} under {cpu_dir} is in no NUMA domain of {root}/devices/system/node")
        l3 = _sysfs_l3(cpu_dir / f"cpu{pu}/cache")
        cores.append(
            Core(
                pus,
                int(_read(topo / "physical_package_id")),
                numa_of_pu[pu],
                None if l3 is None else l3_sets.setdefault(l3, len(l3_sets)),
            )
        )
    cores.sort(key=lambda c: (c.package, c.numa, -1 if c.l3 is None else c.l3, c.pus))
    hostname = hostname or socket.gethostname()
    allowed = allowed_within(os.sched_getaffinity(0) & set(online) if allowed is None else allowed, online, hostname)
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
        "cores": [{"pus": format_cpuset(c.pus), "package": c.package, "numa": c.numa, "l3": c.l3} for c in node.cores],
        "numa": [{"os_index": d.os_index, "cpuset": format_cpuset(d.cpuset), "memory": d.memory} for d in node.numa],
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
            cores=_cores_from_rows(tuple((c["pus"], c["package"], c["numa"], c.get("l3")) for c in data["cores"])),
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
    return tuple(
        Core(parse_cpuset(pus), int(pkg), int(numa), None if l3 is None else int(l3)) for pus, pkg, numa, l3 in rows
    )


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
        lines.append(
            f"  NUMA {d.os_index}: PUs {format_cpuset(d.cpuset) or 'none'}, "
            f"{usable} allowed cores, {format_bytes(d.memory)}"
        )
    scope = "all PUs" if len(allowed) == len(pus) else f"{len(allowed)} of {len(pus)} PUs"
    lines.append(f"  allowed: {format_cpuset(node.allowed) or 'none'} ({scope}, {len(node.allowed_cores)} cores)")
    for label, devices in (("GPUs", node.gpus), ("NICs", node.nics)):
        if devices:
            lines.append(f"  {label}: " + ", ".join(f"{d.name} (NUMA {d.numa})" for d in devices))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m t2mpi.resources.topology", description="Print this node's topology."
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--xml", metavar="FILE", help="an lstopo --of xml export")
    source.add_argument("--synthetic", metavar="DESC", help="an hwloc synthetic description")
    source.add_argument("--sysfs", nargs="?", const="/sys", metavar="ROOT", help="read sysfs, without hwloc")
    parser.add_argument("--hwloc", action="store_true", help="with --synthetic: build it with libhwloc")
    parser.add_argument("--json", action="store_true", help="print JSON (for from_dict), not a summary")
    args = parser.parse_args(argv)
    try:
        node = (
            from_xml(args.xml)
            if args.xml
            else from_synthetic(args.synthetic, hwloc=args.hwloc)
            if args.synthetic
            else from_sysfs(args.sysfs)
            if args.sysfs
            else from_machine()
        )
    except T2mpiError as e:
        print(f"t2mpi.resources.topology: {e}", file=sys.stderr)
        return 2
    print(json.dumps(to_dict(node)) if args.json else summary(node))
    return 0


if __name__ == "__main__":
    sys.exit(main())
