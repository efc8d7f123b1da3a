"""This node's plan for a bound launch, made once and remembered, so that binding costs a rank
next to nothing.

Planning reads the node's topology (sysfs, 10-50 ms) and imports the planner (placement.py:
numpy and dataclasses, 100-150 ms): in every rank, that was most of what binding cost a launch.
A node's plan depends only on facts that are cheap to read: the node as it booted (host name,
boot id, online CPUs), what this process may use (its cpuset and memory nodes), the request
(the node's worker count, cpus, threads, memory, policy, near) and the planner itself (its file).
So the plan is kept under that key, in ~/.cache/t2mpi/plans/ (one small JSON file per key,
written atomically). The first launch with a key plans, in one rank per node (its local 0
worker, which hands each worker of the node its part); every later one reads the file. A cache
that cannot be read or written only costs a plan. Nothing here imports numpy unless it plans.

A plan is a dict: "facts" (the node, for the job's state), "parts" (per local worker: cores,
thread_cores, numa), "master_pu" and "master_shares_with" (where the job master goes when it
runs on this node).
"""

from __future__ import annotations

import json
import os
import zlib
from collections import namedtuple

from .binding import bind_worker, check, limit_memory, read_binding, status_field
from .cpuset import format_cpuset

CACHE = "~/.cache/t2mpi/plans"
VERSION = 1  # of the cached form

# One worker's part of its node's plan: what bind_worker and check need (as placement's
# WorkerPlacement has them), without the planner.
Part = namedtuple("Part", "worker cores thread_cores numa")


def node_plan(count: int, resources, policy: str, near: str = "none", cache: str | None = CACHE) -> dict:
    """The plan of this node's `count` workers (each of resources.cpus / .threads / .memory)
    under `policy`, near the network adapter's NUMA domain if near="nic": remembered, or made
    and remembered. PlacementError (from the planner) says why a request does not fit."""
    near_numa = _near_numa(near)
    key = plan_key(count, resources, policy, near_numa)
    path = os.path.join(os.path.expanduser(cache), f"{zlib.crc32(key.encode()):08x}.json") if cache else None
    known = _read(path, key)
    if known is not None:
        return known
    made = make_plan(count, resources, policy, near_numa)
    if path is not None:
        from ..job.files import keep_cache

        keep_cache(path, {"key": key, "plan": made})  # best effort: one that cannot be kept is made again
    return made


def part(plan: dict, local: int) -> Part:
    """Worker number `local` of the node's plan."""
    p = plan["parts"][local]
    return Part(local, tuple(p["cores"]), tuple(p["thread_cores"]), p["numa"])


def plan_key(count: int, resources, policy: str, near_numa: int | None) -> str:
    """What a node's plan depends on, as one JSON text."""
    planner = os.stat(os.path.join(os.path.dirname(os.path.abspath(__file__)), "placement.py"))
    return json.dumps(
        {
            "v": VERSION,
            "host": os.uname().nodename,
            "boot": _read_text("/proc/sys/kernel/random/boot_id"),
            "online": _read_text("/sys/devices/system/cpu/online"),
            "cpuset": format_cpuset(os.sched_getaffinity(0)),
            "mems": status_field("Mems_allowed_list") or "",
            "request": [count, resources.cpus, resources.threads, resources.memory, policy, near_numa],
            "planner": [planner.st_size, planner.st_mtime_ns],
        },
        sort_keys=True,
    )


def make_plan(count: int, resources, policy: str, near_numa: int | None) -> dict:
    """Plan this node now: its topology from sysfs (no hwloc in an MPI rank), the planner."""
    from .placement import plan
    from .topology import from_sysfs

    node = from_sysfs()
    placed = plan([node], count, resources.cpus, resources.threads, resources.memory, policy, near_numa=near_numa)
    parts = [
        {"cores": list(p.cores), "thread_cores": list(p.thread_cores), "numa": p.numa}
        for p in (placed.worker(w) for w in range(count))
    ]
    return {
        "facts": node_facts(node),
        "parts": parts,
        "master_pu": placed.master_pu,
        "master_shares_with": placed.master_shares_with,
    }


def bind_part(p: Part, resources) -> dict:
    """Bind this process as worker part `p` of its node's plan says (bind_worker), limit its
    memory, and read the binding back from the kernel: the report for the job's state."""
    bound = bind_worker(p)
    limit = limit_memory(resources.memory)
    report = read_binding()
    return {
        "cores": list(p.cores),
        "thread_cores": list(p.thread_cores),
        "numa": p.numa,
        "affinity": list(bound.affinity),
        "mempolicy": list(bound.mempolicy),
        "mem_note": bound.mem_note,
        "pools": bound.pools,
        "ms": round(bound.ms, 2),
        "memory_limit": limit.soft,
        "memory_limit_note": limit.note,
        "mismatches": check(p, report),
    }


def bind_master(count: int, resources, policy: str, near: str = "none") -> dict:
    """Pin the job master (this thread) to the PU its node's plan gives it, beside the node's
    `count` workers: a core no worker uses when there is one. Returns what it did."""
    placed = node_plan(count, resources, policy, near)
    pu = placed["master_pu"]
    os.sched_setaffinity(0, {pu})
    return {"pu": pu, "shares_with": placed["master_shares_with"], "affinity": sorted(os.sched_getaffinity(0))}


def node_facts(node) -> dict:
    """A short description of a node for the job's state (one per node)."""
    return {
        "hostname": node.hostname,
        "packages": len(node.packages),
        "cores": len(node.cores),
        "pus": len(node.pus),
        "numa": [d.os_index for d in node.numa],
        "allowed": format_cpuset(node.allowed),
    }


def _near_numa(near: str) -> int | None:
    """The NUMA domain of this node's active fabric adapter (near="nic"), else None."""
    if near != "nic":
        return None
    from ..net.fabric import adapter_numa, scan

    return adapter_numa(scan())


def _read(path: str | None, key: str) -> dict | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    return kept["plan"] if isinstance(kept, dict) and kept.get("key") == key else None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""
