"""The placement planner on synthetic topologies of real machines, checked against a slow
reference that deals workers one by one, and by properties over random machines."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2mpi.resources import placement as P
from t2mpi.resources import topology as T

GiB = 2**30
EPYC = "package:2 numa:4(64GiB) l3:2 core:8 pu:2(indexes=core:pu)"  # 2 × 64 cores, NPS4: 8 domains of 16
SNC_SMT = "package:2 numa:2(128GiB) core:20 pu:2(indexes=core:pu)"  # Intel SNC2: 4 domains of 20 cores
SNC = "package:2 numa:2(128GiB) core:20 pu:1"  # the same with SMT off
SMALL = "package:1 core:16"  # 1 socket, 16 cores, one 16 GiB domain
EPYC_SUBSET = [*range(8, 24), *range(136, 152)]  # half of domain 0 and half of domain 1, with SMT siblings


def machines(desc: str, *hostnames: str, allowed=None) -> list[T.Node]:
    return [T.from_synthetic(desc, hostname=h, allowed=allowed) for h in hostnames]


def rows(plan: P.Plan) -> list[tuple[int, int, str]]:
    return [(p.node, p.numa, T.format_cpuset(p.cores)) for p in plan]


# ---- a slow reference: deal workers one at a time -----------------------------------


def reference(nodes, workers, cpus, memory, policy):
    """(node, numa, cores) per worker, or None when they do not fit; only for workers that fit a domain."""
    pools, left = [], []
    for node in nodes:
        allowed = set(node.allowed)
        doms = {}
        for core in node.cores:
            pus = [p for p in core.pus if p in allowed]
            if pus:
                doms.setdefault(core.numa, []).append(pus[0])
        assert cpus <= max(map(len, doms.values()), default=0), "reference covers domain-sized workers only"
        mem = {d.os_index: d.memory for d in node.numa}
        pools.append([(d, doms[d]) for d in sorted(doms)])
        left.append([min(len(doms[d]) // cpus, mem[d] // memory if memory else 10**9) for d in sorted(doms)])
    used = [[0] * len(p) for p in pools]
    turn_node, turn_dom = 0, [0] * len(nodes)
    out = []
    for _ in range(workers):
        if policy == "compact":
            found = next(
                ((n, g) for n in range(len(nodes)) for g in range(len(pools[n])) if used[n][g] < left[n][g]), None
            )
        else:
            found = None
            for k in range(len(nodes)):
                n = (turn_node + k) % len(nodes)
                for j in range(len(pools[n])):
                    g = (turn_dom[n] + j) % len(pools[n])
                    if used[n][g] < left[n][g]:
                        found, turn_node, turn_dom[n] = (n, g), n + 1, g + 1
                        break
                if found:
                    break
        if found is None:
            return None
        n, g = found
        domain, pool = pools[n][g]
        m = used[n][g]
        used[n][g] += 1
        out.append((n, domain, tuple(pool[m * cpus : (m + 1) * cpus])))
    return out


def as_tuples(plan: P.Plan):
    return [(p.node, p.numa, p.cores) for p in plan]


# ---- real machines ------------------------------------------------------------------

CASES = [
    # machine, nodes, allowed, workers, cpus, threads, memory, policy, first rows, master (node, PU, shares with)
    (
        EPYC,
        1,
        None,
        4,
        8,
        1,
        8 * GiB,
        "compact",
        [(0, 0, "0-7"), (0, 0, "8-15"), (0, 1, "16-23"), (0, 1, "24-31")],
        (0, 32, None),
    ),
    (
        EPYC,
        2,
        None,
        4,
        4,
        2,
        0,
        "spread",
        [(0, 0, "0-3"), (1, 0, "0-3"), (0, 1, "16-19"), (1, 1, "16-19")],
        (0, 4, None),
    ),
    (EPYC, 1, None, 128, 1, 1, GiB, "compact", [(0, 0, "0"), (0, 0, "1")], (0, 128, 0)),
    (
        SNC_SMT,
        1,
        None,
        5,
        8,
        4,
        16 * GiB,
        "compact",
        [(0, 0, "0-7"), (0, 0, "8-15"), (0, 1, "20-27"), (0, 1, "28-35"), (0, 2, "40-47")],
        (0, 16, None),
    ),
    (
        SNC_SMT,
        1,
        None,
        4,
        20,
        1,
        0,
        "compact",
        [(0, 0, "0-19"), (0, 1, "20-39"), (0, 2, "40-59"), (0, 3, "60-79")],
        (0, 81, 0),
    ),
    (
        SNC,
        1,
        None,
        4,
        20,
        2,
        0,
        "spread",
        [(0, 0, "0-19"), (0, 1, "20-39"), (0, 2, "40-59"), (0, 3, "60-79")],
        (0, 2, 0),
    ),
    (
        SNC,
        3,
        None,
        7,
        10,
        10,
        64 * GiB,
        "spread",
        [
            (0, 0, "0-9"),
            (1, 0, "0-9"),
            (2, 0, "0-9"),
            (0, 1, "20-29"),
            (1, 1, "20-29"),
            (2, 1, "20-29"),
            (0, 2, "40-49"),
        ],
        (0, 10, None),
    ),
    (SMALL, 1, None, 16, 1, 1, 0, "compact", [(0, 0, str(i)) for i in range(16)], (0, 0, 0)),
    (
        SMALL,
        1,
        None,
        4,
        4,
        2,
        4 * GiB,
        "spread",
        [(0, 0, "0-3"), (0, 0, "4-7"), (0, 0, "8-11"), (0, 0, "12-15")],
        (0, 2, 0),
    ),
    (
        EPYC,
        1,
        EPYC_SUBSET,
        4,
        4,
        1,
        0,
        "compact",
        [(0, 0, "8-11"), (0, 0, "12-15"), (0, 1, "16-19"), (0, 1, "20-23")],
        (0, 137, 0),
    ),
    (EPYC, 1, EPYC_SUBSET, 2, 4, 1, 0, "spread", [(0, 0, "8-11"), (0, 1, "16-19")], (0, 12, None)),
    # workers bigger than a domain take consecutive cores; memory from the domain holding most of them
    (SNC, 1, None, 2, 30, 1, 100 * GiB, "compact", [(0, 0, "0-29"), (0, 2, "30-59")], (0, 60, None)),
]


@pytest.mark.parametrize("desc, count, allowed, workers, cpus, threads, memory, policy, first, master", CASES)
def test_real_machines(desc, count, allowed, workers, cpus, threads, memory, policy, first, master):
    nodes = machines(desc, *(f"n{i}" for i in range(count)), allowed=allowed)
    plan = P.plan(nodes, workers, cpus, threads, memory, policy)
    assert rows(plan)[: len(first)] == first
    assert (plan.master_node, plan.master_pu, plan.master_shares_with) == master
    assert all(p.thread_cores == p.cores[:threads] and p.memory == memory for p in plan)
    if cpus <= 16:
        assert as_tuples(plan) == reference(nodes, workers, cpus, memory, policy)


def test_spread_deals_over_nodes_then_domains():
    nodes = machines(EPYC, "a", "b", "c")
    plan = P.plan(nodes, 30, 2, 1, 0, "spread")
    assert plan.node_of.tolist() == [0, 1, 2] * 10
    assert plan.numa_of[plan.workers_on(0)].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert plan.worker(24).cores == (2, 3)  # node 0's 9th worker: the second one in domain 0


def test_uneven_nodes_spread_like_the_reference():
    """More than 16 distinct per-node counts: the planner's general ordering path."""
    base = T.from_synthetic("package:1 numa:2(64GiB) core:20 pu:1")
    nodes = [base._replace(hostname=f"n{k}", allowed=(*range(k + 1), *range(20, 20 + k // 2))) for k in range(20)]
    for workers in (1, 7, 150, 300):
        plan = P.plan(nodes, workers, 1, 1, GiB, "spread")
        assert as_tuples(plan) == reference(nodes, workers, 1, GiB, "spread")


def test_worker_accessor_and_equality():
    nodes = machines(SMALL, "vm")
    plan = P.plan(nodes, 2, 4, 3, GiB)
    assert plan.worker(1) == P.WorkerPlacement(1, 0, 0, (4, 5, 6, 7), (4, 5, 6), GiB)
    assert len(plan) == plan.workers == 2 and not plan.master_shared
    assert plan == P.plan(nodes, 2, 4, 3, GiB) and plan != P.plan(nodes, 2, 4, 2, GiB)
    with pytest.raises(ValueError):
        plan.cores_of[0, 0] = 99  # a frozen plan's arrays are read-only
    with pytest.raises(IndexError, match="^worker 2 is not in this plan of 2 workers$"):
        plan.worker(2)


# ---- errors say exactly why ---------------------------------------------------------

ERRORS = [
    (SMALL, ["vm"], None, (8, 4, 1, 0), "8 workers × 4 cpus = 32 cores; node vm has 16 allowed cores (cpuset 0-15)"),
    (
        EPYC,
        ["epyc"],
        EPYC_SUBSET,
        (9, 4, 1, 0),
        "9 workers × 4 cpus = 36 cores; node epyc has 16 allowed cores (cpuset 8-23,136-151)",
    ),
    (
        SMALL,
        ["a", "b"],
        None,
        (9, 4, 1, 0),
        "9 workers × 4 cpus = 36 cores; the 2 nodes have 32 allowed cores (16 each)",
    ),
    (
        SMALL,
        ["a", "b"],
        None,
        (1, 17, 1, 0),
        "a worker needs 17 cpus on one node; the largest node, a, has 16 allowed cores (cpuset 0-15)",
    ),
    (
        SNC,
        ["snc"],
        None,
        (13, 6, 1, 0),
        "13 workers × 6 cpus: only 12 fit, because a worker stays inside one NUMA domain; node snc: NUMA 0 has 20 "
        "allowed cores (room for 3), NUMA 1 has 20 allowed cores (room for 3), NUMA 2 has 20 allowed cores (room for 3)"
        ", NUMA 3 has 20 allowed cores (room for 3); choose cpus that divide the domains' cores",
    ),
    (
        "package:1 numa:2 core:3 pu:1",
        ["a", "b"],
        None,
        (3, 4, 1, 0),
        "3 workers × 4 cpus: only 2 fit, because a worker stays on one node; node a (first of 2) has 6 allowed cores "
        "(room for 1)",
    ),
    (
        SMALL,
        ["vm"],
        None,
        (4, 1, 1, 5 * GiB),
        "4 workers × 5 GiB memory: only 3 fit; NUMA 0 of node vm has 16 GiB, room for 3 workers of 5 GiB",
    ),
    (
        SNC,
        ["snc"],
        None,
        (5, 10, 1, 100 * GiB),
        "5 workers × 100 GiB memory: only 4 fit; NUMA 0 of node snc has 128 GiB, room for 1 worker of 100 GiB",
    ),
    (
        "package:1 numa:2(60GiB) core:10 pu:1",
        ["big"],
        None,
        (1, 12, 1, 100 * GiB),
        "1 worker × 100 GiB memory: only 0 fit; NUMA 0 of node big has 60 GiB, room for 0 workers of 100 GiB",
    ),
    (SMALL, ["vm"], None, (2, 2, 3, 0), "threads (3) must not exceed cpus (2): thread t runs on the worker's core t"),
    (SMALL, ["vm"], None, (0, 2, 1, 0), "workers must be an integer of at least 1, got 0"),
    (SMALL, ["vm"], None, (1, 1, 1, -1), "memory must be an integer of at least 0, got -1"),
    (SMALL, [], None, (1, 1, 1, 0), "no nodes to place workers on: give at least one node"),
]


@pytest.mark.parametrize("desc, hostnames, allowed, request_, message", ERRORS)
def test_errors_are_exact(desc, hostnames, allowed, request_, message):
    with pytest.raises(P.PlacementError) as e:
        P.plan(machines(desc, *hostnames, allowed=allowed), *request_)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_policy_master_node_and_a_master_node_without_cores():
    nodes = machines(SMALL, "a") + machines(SMALL, "b", allowed=[])
    with pytest.raises(P.PlacementError, match=r"^unknown placement policy 'packed'; valid policies: compact, spread$"):
        P.plan(nodes, 1, 1, 1, 0, "packed")
    with pytest.raises(P.PlacementError, match=r"^master_node 2 is out of range: there are 2 nodes$"):
        P.plan(nodes, 1, 1, 1, 0, master_node=2)
    with pytest.raises(P.PlacementError) as e:
        P.plan(nodes, 1, 1, 1, 0, master_node=1)
    assert str(e.value) == "master node b has no allowed cores (allowed PUs: none): pick another master_node"


# ---- the table a person reads --------------------------------------------------------


def test_format_plan():
    nodes = machines(SNC_SMT, "snc")
    text = P.format_plan(P.plan(nodes, 3, 2, 2, 4 * GiB, "spread"), nodes)
    assert text == "\n".join(
        [
            "3 workers × 2 cpus, 2 threads, 4 GiB each; policy spread",
            "worker  node  NUMA  cores  thread→core  memory",
            "0       snc   0     0-1    0→0 1→1      4 GiB",
            "1       snc   1     20-21  0→20 1→21    4 GiB",
            "2       snc   2     40-41  0→40 1→41    4 GiB",
            "master: node snc, PU 2 (a core of its own)",
        ]
    )
    short = P.format_plan(P.plan(nodes, 80, 1, 1, 0), nodes, max_rows=2).splitlines()
    assert short[-2:] == ["… 78 more workers", "master: node snc, PU 80 (shares worker 0's core)"]


# ---- properties over random machines --------------------------------------------------


@st.composite
def clusters(draw):
    packages, domains, cores, smt = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 2)),
    )
    memory = draw(st.integers(1, 64))
    numbering = "(indexes=core:pu)" if draw(st.booleans()) else ""
    desc = f"package:{packages} numa:{domains}({memory}GiB) core:{cores} pu:{smt}{numbering}"
    nodes = []
    for i in range(draw(st.integers(1, 3))):
        pus = T.from_synthetic(desc).pus
        allowed = draw(st.one_of(st.none(), st.sets(st.sampled_from(pus), min_size=1)))
        nodes.append(T.from_synthetic(desc, hostname=f"n{i}", allowed=allowed))
    return nodes


@settings(max_examples=300, deadline=None)
@given(
    nodes=clusters(),
    workers=st.integers(1, 40),
    cpus=st.integers(1, 8),
    threads=st.integers(1, 8),
    memory=st.sampled_from([0, GiB, 3 * GiB, 16 * GiB]),
    policy=st.sampled_from(P.POLICIES),
    master=st.integers(0, 2),
)
def test_plan_properties(nodes, workers, cpus, threads, memory, policy, master):
    threads, master = min(threads, cpus), master % len(nodes)
    try:
        plan = P.plan(nodes, workers, cpus, threads, memory, policy, master)
    except P.PlacementError as e:
        assert "\n" not in str(e)
        if all(cpus <= max(domain_sizes(n).values(), default=0) for n in nodes):
            if reference(nodes, workers, cpus, memory, policy) is not None:
                # the workers fit: the one refusal left is a master node with no allowed core at all
                node = nodes[master]
                allowed = set(node.allowed)
                assert str(e).startswith(f"master node {node.hostname} has no allowed cores"), str(e)
                assert not any(p in allowed for c in node.cores for p in c.pus)
        return
    assert plan == P.plan(nodes, workers, cpus, threads, memory, policy, master)  # deterministic
    assert plan.cores_of.shape == (workers, cpus)
    used: dict[tuple[int, int], int] = {}
    mem_used: dict[tuple[int, int], int] = {}
    for p in plan:
        node = nodes[p.node]
        core_of = {pu: i for i, c in enumerate(node.cores) for pu in c.pus}
        assert set(p.cores) <= set(node.allowed)
        assert len({core_of[pu] for pu in p.cores}) == cpus  # one PU per core, whole cores
        for pu in p.cores:
            assert used.setdefault((p.node, core_of[pu]), p.worker) == p.worker  # no core shared
        domains = {node.cores[core_of[pu]].numa for pu in p.cores}
        if cpus <= max(domain_sizes(node).values()):
            assert domains == {p.numa}  # stays inside its NUMA domain
        assert p.numa in domains
        mem_used[(p.node, p.numa)] = mem_used.get((p.node, p.numa), 0) + memory
        assert p.thread_cores == p.cores[:threads]
    for (n, d), total in mem_used.items():
        assert total <= next(x.memory for x in nodes[n].numa if x.os_index == d)
    if all(cpus <= max(domain_sizes(n).values(), default=0) for n in nodes):
        assert as_tuples(plan) == reference(nodes, workers, cpus, memory, policy)
    node = nodes[master]
    assert plan.master_pu in node.allowed
    core_of = {pu: i for i, c in enumerate(node.cores) for pu in c.pus}
    if plan.master_shares_with is None:
        assert (master, core_of[plan.master_pu]) not in used
    else:
        assert used[(master, core_of[plan.master_pu])] == plan.master_shares_with
        assert all((master, core_of[pu]) in used for pu in node.allowed)


def domain_sizes(node: T.Node) -> dict[int, int]:
    allowed = set(node.allowed)
    sizes: dict[int, int] = {}
    for core in node.cores:
        if allowed.intersection(core.pus):
            sizes[core.numa] = sizes.get(core.numa, 0) + 1
    return sizes


def test_large_homogeneous_cluster_fills_every_core_once():
    base = T.from_synthetic("package:2 [numa(256GiB)] core:64 pu:2(indexes=core:pu)")
    nodes = [base._replace(hostname=f"n{i}") for i in range(300)]
    for policy in P.POLICIES:
        plan = P.plan(nodes, 300 * 128, 1, 1, 2 * GiB, policy)
        pairs = plan.node_of.astype(np.int64) * 1000 + plan.cores_of[:, 0]
        assert len(np.unique(pairs)) == 300 * 128
        assert np.all(plan.cores_of < 128)  # never an SMT sibling
        assert (plan.master_pu, plan.master_shares_with) == (128, 0)  # the free SMT sibling of worker 0's core


def test_near_numa_fills_the_adapters_domain_first():
    node = T.from_synthetic("package:1 numa:4 core:4 pu:1")
    near = P.plan([node], 6, 1, 1, 2**20, "compact", near_numa=2)
    assert [near.worker(w).numa for w in range(6)] == [2, 2, 2, 2, 0, 0]
    spread = P.plan([node], 4, 1, 1, 2**20, "spread", near_numa=3)
    assert spread.worker(0).numa == 3
    assert P.plan([node], 3, 1, 1, 2**20, "compact").worker(0).numa == 0  # no preference: as before
