"""Where each worker and the job master run: plan() is a pure function from nodes to a Plan.

Rules: a worker gets `cpus` whole cores, one allowed PU of each (never an SMT sibling of a
core another worker has); thread t runs on its core t; no core is shared by two workers.
A worker stays inside one NUMA domain when its cpus fit one (of that node), and takes its
memory from that domain, whose memory is never overcommitted.  A worker bigger than
every domain of a node takes consecutive cores across domains there, and its memory
comes from the domain holding most of them (the next one when that is full).
Policies: "compact" fills node 0's first domain, then its next domain, ..., then node 1;
"spread" deals workers round-robin over nodes, then over the domains within each node.
The master gets a PU of the master node on a core no worker uses; when there is none it
shares the least-loaded worker core (no thread on it, a free SMT sibling first).

Plans for a million workers are arrays, not objects: node_of[w], numa_of[w], cores_of[w, i].
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import T2mpiError
from .topology import Node, format_bytes, format_cpuset

POLICIES = ("compact", "spread")


class PlacementError(T2mpiError, ValueError):
    """A request that cannot be placed; the one-line message says why."""


@dataclass(frozen=True)
class WorkerPlacement:
    worker: int
    node: int  # index into the nodes given to plan()
    numa: int  # NUMA domain OS index its memory comes from
    cores: tuple[int, ...]  # one PU OS index per core
    thread_cores: tuple[int, ...]  # thread t runs on thread_cores[t]
    memory: int


@dataclass(frozen=True, eq=False)
class Plan:
    cpus: int
    threads: int
    memory: int
    policy: str
    node_of: np.ndarray  # (workers,) node index
    numa_of: np.ndarray  # (workers,) NUMA OS index
    cores_of: np.ndarray  # (workers, cpus) PU OS index per core
    master_node: int
    master_pu: int
    master_shares_with: int | None  # the worker whose core the master shares; None: a free core

    def __post_init__(self) -> None:
        for array in (self.node_of, self.numa_of, self.cores_of):
            array.flags.writeable = False

    @property
    def workers(self) -> int:
        return len(self.node_of)

    @property
    def master_shared(self) -> bool:
        return self.master_shares_with is not None

    def __len__(self) -> int:
        return self.workers

    def worker(self, w: int) -> WorkerPlacement:
        if not 0 <= w < self.workers:
            raise IndexError(f"worker {w} is not in this plan of {self.workers} workers")
        cores = tuple(int(p) for p in self.cores_of[w])
        return WorkerPlacement(w, int(self.node_of[w]), int(self.numa_of[w]), cores, cores[: self.threads], self.memory)

    def __iter__(self) -> Iterator[WorkerPlacement]:
        return (self.worker(w) for w in range(self.workers))

    def workers_on(self, node: int) -> np.ndarray:
        return np.flatnonzero(self.node_of == node)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        scalars = ("cpus", "threads", "memory", "policy", "master_node", "master_pu", "master_shares_with")
        return all(getattr(self, k) == getattr(other, k) for k in scalars) and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("node_of", "numa_of", "cores_of")
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class NodeLayout:
    """What placement needs of one node: per NUMA domain with usable cores, one PU per core."""

    numa_ids: tuple[int, ...]
    pools: tuple[np.ndarray, ...]
    memory: tuple[int, ...]

    @property
    def usable(self) -> int:
        return sum(len(p) for p in self.pools)


@dataclass(frozen=True)
class _Group:
    """Cores that workers fill in order: one NUMA domain, or a whole node for big workers."""

    pool: np.ndarray
    core_room: int  # workers its cores hold
    room: int  # workers its cores and memory hold
    numa: int  # -1 when each slot has its own, in slot_numa
    slot_numa: tuple[int, ...] = ()
    short_of_memory: tuple[int, int] | None = None  # (NUMA, bytes) of a domain that limits it


def _layout(node: Node) -> NodeLayout:
    allowed, cores = set(node.allowed), node.cores
    first_pus = [core.pus[0] for core in cores]
    if not allowed.issuperset(first_pus):
        first_pus = [next((p for p in core.pus if p in allowed), -1) for core in cores]
    pools: dict[int, list[int]] = {}
    for numa, run in itertools.groupby(zip([core.numa for core in cores], first_pus), operator.itemgetter(0)):
        pools.setdefault(numa, []).extend(pu for _, pu in run if pu >= 0)
    memory = {d.os_index: d.memory for d in node.numa}
    ids = tuple(sorted(d for d, pool in pools.items() if pool))
    return NodeLayout(ids, tuple(np.array(pools[d], np.int32) for d in ids), tuple(memory[d] for d in ids))


def _groups(layout: NodeLayout, cpus: int, memory: int, near_numa: int | None = None) -> tuple[_Group, ...]:
    if cpus <= max((len(p) for p in layout.pools), default=0):
        groups = []
        for d, pool, have in zip(layout.numa_ids, layout.pools, layout.memory):
            core_room = len(pool) // cpus
            room = min(core_room, have // memory) if memory else core_room
            short = (d, have) if room < core_room else None
            groups.append(_Group(pool, core_room, room, d, short_of_memory=short))
        # the domain near the network adapter first (stable: the others keep their order)
        return tuple(sorted(groups, key=lambda g: g.numa != near_numa))
    return (_spanning_group(layout, cpus, memory),)


def _spanning_group(layout: NodeLayout, cpus: int, memory: int) -> _Group:
    pool = np.concatenate(layout.pools) if layout.pools else np.zeros(0, np.int32)
    domain_of_core = np.repeat(np.arange(len(layout.pools)), [len(p) for p in layout.pools])
    left = list(layout.memory)
    slot_numa: list[int] = []
    short = None
    core_room = len(pool) // cpus
    for slot in range(core_room):
        shares = np.bincount(domain_of_core[slot * cpus : (slot + 1) * cpus], minlength=len(left))
        homes = [d for d in np.argsort(-shares, kind="stable") if shares[d] > 0]
        home = next((d for d in homes if left[d] >= memory), None)
        if home is None:
            short = (layout.numa_ids[homes[0]], layout.memory[homes[0]])
            break
        left[home] -= memory
        slot_numa.append(layout.numa_ids[home])
    return _Group(pool, core_room, len(slot_numa), -1, tuple(slot_numa), short)


def _round_robin(room: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Per row, how many of totals[r] items land in each bin when dealt one by one, in bin
    order, skipping full bins (room[r, b] is the bin's capacity)."""
    lo = np.zeros(len(room), np.int64)
    hi = room.max(axis=1, initial=0)
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        fits = np.minimum(room, mid[:, None]).sum(axis=1) <= totals
        lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid - 1)
    counts = np.minimum(room, lo[:, None])
    eligible = room > lo[:, None]
    extra = eligible & (np.cumsum(eligible, axis=1) <= (totals - counts.sum(axis=1))[:, None])
    return counts + extra


def _check_request(
    nodes: Sequence[Node], workers: int, cpus: int, threads: int, memory: int, policy: str, master_node: int
) -> None:
    if not nodes:
        raise PlacementError("no nodes to place workers on: give at least one node")
    for name, value, least in (
        ("workers", workers, 1),
        ("cpus", cpus, 1),
        ("threads", threads, 1),
        ("memory", memory, 0),
    ):
        if not isinstance(value, (int, np.integer)) or value < least:
            raise PlacementError(f"{name} must be an integer of at least {least}, got {value!r}")
    if threads > cpus:
        raise PlacementError(f"threads ({threads}) must not exceed cpus ({cpus}): thread t runs on the worker's core t")
    if policy not in POLICIES:
        raise PlacementError(f"unknown placement policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    if not 0 <= master_node < len(nodes):
        raise PlacementError(f"master_node {master_node} is out of range: there are {len(nodes)} nodes")


def plan(
    nodes: Sequence[Node],
    workers: int,
    cpus: int,
    threads: int,
    memory: int,
    policy: str = "compact",
    master_node: int = 0,
    near_numa: int | None = None,
) -> Plan:
    """Place `workers` workers of `cpus` cores, `threads` threads and `memory` bytes each.
    near_numa: the NUMA domain (on every node) of the network adapter, filled first, so that
    workers that communicate most sit next to it."""
    _check_request(nodes, workers, cpus, threads, memory, policy, master_node)
    layouts: dict[tuple, NodeLayout] = {}  # nodes read alike share their cores and numa tuples
    node_layout = []
    for node in nodes:
        key = (id(node.cores), id(node.numa), node.allowed)
        if key not in layouts:
            layouts[key] = _layout(node)
        node_layout.append(key)
    groups = {key: _groups(layout, cpus, memory, near_numa) for key, layout in layouts.items()}
    width = max(len(g) for g in groups.values())
    rooms = {key: [g.room for g in gs] + [0] * (width - len(gs)) for key, gs in groups.items()}
    room = np.array([rooms[key] for key in node_layout], np.int64).reshape(len(nodes), width)
    if room.sum() < workers:
        per_node = [layouts[k] for k in node_layout], [groups[k] for k in node_layout]
        raise PlacementError(_why_not(nodes, *per_node, workers, cpus, memory))
    if policy == "compact":
        flat = room.ravel()
        counts = np.clip(workers - (np.cumsum(flat) - flat), 0, flat).reshape(room.shape)
    else:
        per_node = _round_robin(room.sum(axis=1)[None, :], np.array([workers]))[0]
        counts = _round_robin(room, per_node)
    node_groups = [groups[k] for k in node_layout]
    node_of, numa_of, cores_of = _fill(node_groups, counts, cpus)
    if policy == "spread":
        order = _spread_ids(counts)
        node_of, numa_of, cores_of = (_scatter(order, a) for a in (node_of, numa_of, cores_of))
    pu, shares_with = _master_pu(nodes[master_node], node_of, cores_of, master_node, threads)
    return Plan(cpus, threads, memory, policy, node_of, numa_of, cores_of, master_node, pu, shares_with)


def _fill(node_groups: list[tuple[_Group, ...]], counts: np.ndarray, cpus: int):
    """Node, NUMA and cores of each worker slot, in (node, group, slot) order."""
    parts, numa_parts = [], []
    for gs, row in zip(node_groups, counts.tolist()):
        for g, k in zip(gs, row):
            if k:
                parts.append(g.pool[: k * cpus])
                numa_parts.append(np.full(k, g.numa, np.int32) if g.numa >= 0 else np.array(g.slot_numa[:k], np.int32))
    node_of = np.repeat(np.arange(len(node_groups), dtype=np.int32), counts.sum(axis=1))
    return node_of, np.concatenate(numa_parts), np.concatenate(parts).reshape(-1, cpus)


def _spread_ids(counts: np.ndarray) -> np.ndarray:
    """Worker id of each slot (in (node, group, slot) order) under round-robin dealing."""
    nodes, width = counts.shape
    flat = counts.ravel()
    slot_node = np.repeat(np.arange(nodes), counts.sum(axis=1))
    slot_group = np.repeat(np.tile(np.arange(width), nodes), flat)
    slot = np.arange(len(slot_node)) - np.repeat(np.cumsum(flat) - flat, flat)
    in_node = np.zeros(len(slot), np.int64)  # the slot's turn among its node's workers
    for g in range(width):
        k = counts[:, g][slot_node]
        in_node += np.minimum(k, slot) + ((g < slot_group) & (k > slot))
    per_node = counts.sum(axis=1)
    distinct = np.unique(per_node)
    if len(distinct) > 16:
        ids = np.empty(len(slot), np.int64)
        ids[np.lexsort((slot_node, in_node))] = np.arange(len(slot))
        return ids
    more_than = nodes - np.cumsum(np.bincount(per_node, minlength=per_node.max() + 1))
    before_turn = np.concatenate(([0], np.cumsum(more_than)))  # workers dealt in earlier rounds
    earlier_nodes = slot_node.copy()  # nodes before it that still take one in its round
    for v in distinct:
        has_v = (per_node == v).astype(np.int64)
        earlier_nodes -= (v <= in_node) * (np.cumsum(has_v) - has_v)[slot_node]
    return before_turn[in_node] + earlier_nodes


def _scatter(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[ids] = values
    return out


def _master_pu(node: Node, node_of: np.ndarray, cores_of: np.ndarray, index: int, threads: int):
    """The master's PU on its node and the worker whose core it shares (None: a free core)."""
    allowed = set(node.allowed)
    mine = np.flatnonzero(node_of == index)
    owner = {int(p): int(w) for w, row in zip(mine, cores_of[mine]) for p in row}
    pinned = set(cores_of[mine, :threads].ravel().tolist())
    domain_rank = {d.os_index: i for i, d in enumerate(node.numa)}
    best = None
    for order, core in enumerate(sorted(node.cores, key=lambda c: domain_rank.get(c.numa, 0))):
        pus = [p for p in core.pus if p in allowed]
        used = [p for p in pus if p in owner]
        if pus and not used:
            return pus[0], None
        if pus:
            free = [p for p in pus if p not in owner]
            rank = (any(p in pinned for p in used), not free, order)
            if best is None or rank < best[0]:
                best = (rank, (free or used)[0], owner[used[0]])
    if best is None:
        raise PlacementError(
            f"master node {node.hostname} has no allowed cores (allowed PUs: "
            f"{format_cpuset(node.allowed) or 'none'}): pick another master_node"
        )
    return best[1], best[2]


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _why_not(
    nodes: Sequence[Node],
    layouts: list[NodeLayout],
    groups: list[tuple[_Group, ...]],
    workers: int,
    cpus: int,
    memory: int,
) -> str:
    usable = [lay.usable for lay in layouts]
    want = f"{_count(workers, 'worker')} × {_count(cpus, 'cpu')}"
    if sum(usable) < workers * cpus:
        if len(nodes) == 1:
            cpuset = format_cpuset(nodes[0].allowed)
            where = f"node {nodes[0].hostname} has {usable[0]} allowed cores (cpuset {cpuset})"
        else:
            each = (
                f"{usable[0]} each"
                if len(set(usable)) == 1
                else ", ".join(f"{n.hostname}: {u}" for n, u in zip(nodes[:3], usable))
                + (", …" if len(nodes) > 3 else "")
            )
            where = f"the {len(nodes)} nodes have {sum(usable)} allowed cores ({each})"
        return f"{want} = {workers * cpus} cores; {where}"
    if max(usable) < cpus:
        big = int(np.argmax(usable))
        return (
            f"a worker needs {cpus} cpus on one node; the largest node, {nodes[big].hostname}, "
            f"has {usable[big]} allowed cores (cpuset {format_cpuset(nodes[big].allowed)})"
        )
    fit = sum(g.room for gs in groups for g in gs)
    if sum(g.core_room for gs in groups for g in gs) < workers:
        node = nodes[0].hostname + (f" (first of {len(nodes)})" if len(nodes) > 1 else "")
        if groups[0][0].numa < 0:
            return (
                f"{want}: only {fit} fit, because a worker stays on one node; node {node} has "
                f"{usable[0]} allowed cores (room for {groups[0][0].core_room})"
            )
        rooms = ", ".join(f"NUMA {g.numa} has {len(g.pool)} allowed cores (room for {g.core_room})" for g in groups[0])
        return (
            f"{want}: only {fit} fit, because a worker stays inside one NUMA domain; node {node}: {rooms}; "
            "choose cpus that divide the domains' cores"
        )
    n, short = next((i, g.short_of_memory) for i, gs in enumerate(groups) for g in gs if g.short_of_memory)
    room = _count(short[1] // memory, "worker")
    return (
        f"{_count(workers, 'worker')} × {format_bytes(memory)} memory: only {fit} fit; NUMA {short[0]} of "
        f"node {nodes[n].hostname} has {format_bytes(short[1])}, room for {room} of {format_bytes(memory)}"
    )


def format_plan(plan: Plan, nodes: Sequence[Node], max_rows: int = 64) -> str:
    """A table a person reads before a run: worker, node, NUMA, cores, thread→core, memory."""
    head = (
        f"{_count(plan.workers, 'worker')} × {_count(plan.cpus, 'cpu')}, {_count(plan.threads, 'thread')},"
        f" {format_bytes(plan.memory)} each; policy {plan.policy}"
    )
    rows = [("worker", "node", "NUMA", "cores", "thread→core", "memory")]
    for w in range(min(plan.workers, max_rows)):
        p = plan.worker(w)
        threads = " ".join(f"{t}→{c}" for t, c in enumerate(p.thread_cores))
        rows.append(
            (str(w), nodes[p.node].hostname, str(p.numa), format_cpuset(p.cores), threads, format_bytes(p.memory))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head] + ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    if plan.workers > max_rows:
        lines.append(f"… {plan.workers - max_rows} more workers")
    shared = plan.master_shares_with
    where = "a core of its own" if shared is None else f"shares worker {shared}'s core"
    lines.append(f"master: node {nodes[plan.master_node].hostname}, PU {plan.master_pu} ({where})")
    return "\n".join(lines)
