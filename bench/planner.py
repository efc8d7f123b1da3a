"""How long plan() takes for a large cluster; prints figures, asserts nothing.

10,000 nodes × 2 NUMA domains × 64 cores (SMT 2), one 1-core worker per core: 1.28 M workers.
Goal: under 1 s per plan.  Nodes are built the way the launcher gets them (each node's JSON
read back with from_dict); a last figure makes every node's core tuple a separate object,
so that nothing is shared between nodes (a cluster of all-different machines).

    python bench/planner.py [--nodes 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from t2mpi.resources import placement, topology

MACHINE = "package:2 [numa(256GiB)] core:64 pu:2(indexes=core:pu)"
GOAL_S = 1.0


def median_time(nodes: list[topology.Node], workers: int, policy: str, repeat: int) -> tuple[float, list]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        placement.plan(nodes, workers, cpus=1, threads=1, memory=2**30, policy=policy)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    one = topology.to_dict(topology.from_synthetic(MACHINE))
    text = [json.dumps({**one, "hostname": f"node{i:05d}"}) for i in range(args.nodes)]
    start = time.perf_counter()
    nodes = [topology.from_dict(json.loads(t)) for t in text]
    read_s = time.perf_counter() - start
    workers = sum(len(n.cores) for n in nodes)
    print(
        f"cluster: {args.nodes} nodes × {len(nodes[0].cores)} cores ({MACHINE}); {workers} workers × 1 cpu, 1 GiB each"
    )
    print(f"read {args.nodes} node JSONs: {read_s:.3f} s")
    unshared = [
        topology.Node(n.hostname, n.packages, tuple(list(n.cores)), tuple(list(n.numa)), n.allowed) for n in nodes
    ]
    for label, cluster, policy in (
        ("compact", nodes, "compact"),
        ("spread", nodes, "spread"),
        ("compact, nothing shared", unshared, "compact"),
    ):
        median, times = median_time(cluster, workers, policy, args.repeat)
        runs = ", ".join(f"{t:.3f}" for t in times)
        verdict = "met" if median < GOAL_S else "MISSED"
        print(f"plan {label:<24} median {median:.3f} s of {args.repeat} ({runs}); goal < {GOAL_S:g} s: {verdict}")


if __name__ == "__main__":
    main()
