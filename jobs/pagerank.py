"""PageRank through the data API, on numpy Columns keyed by node id (int64).

The edges (`src dst` lines; '#' lines and blank lines are skipped; a repeated edge counts once) are
moved once to the worker that owns their source (id % workers) and cached. Each worker owns its nodes'
ranks. Each iteration: every edge's source sends rank/out-degree to its destination (a reduce_by_key
of Columns: one Alltoallv), the dangling nodes' total is all-reduced, and
rank = (1-d)/N + d*(in-links' shares) + d*dangling/N. Plain power iteration from 1/N."""

import operator
import os

import numpy as np

from t2mpi import IWorker
from t2mpi.data.columns import Columns

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pagerank-edges.txt")


def parse_edges(lines):
    rows = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    pairs = np.array(rows, dtype=np.int64).reshape(-1, 2) if rows else np.empty((0, 2), np.int64)
    return Columns(pairs[:, 0], pairs[:, 1])


def as_columns(part, value_dtype):
    """A keyed partition as Columns sorted by key (the buffer path gives Columns; others give pairs)."""
    if type(part) is not Columns:
        items = sorted(part)
        part = Columns(np.array([k for k, _ in items], np.int64), np.array([v for _, v in items], value_dtype))
    order = np.argsort(part.keys, kind="stable")
    return Columns(part.keys[order], part.values[order].astype(value_dtype))


class PageRank(IWorker):
    def execute(self, ctx):
        cfg, data, workers = ctx.config, ctx.data, ctx.num_workers
        d, iterations = float(cfg.get("damping", 0.85)), int(cfg["iterations"])
        owned = (
            data.text(cfg.get("edges") or SAMPLE)
            .map_partitions(parse_edges)
            .partition_by_key(lambda src: src % workers)
            .map_partitions(lambda pairs: [np.unique(np.array(list(pairs), np.int64).reshape(-1, 2), axis=0)])
            .cache()
        )
        (edges,) = owned.partition()
        src, dst = edges[:, 0], edges[:, 1]
        # every node, on its owner, with its out-degree (0: dangling)
        ids = np.concatenate([src, dst])
        marks = np.concatenate([np.ones(len(src), np.int64), np.zeros(len(dst), np.int64)])
        nodes = as_columns(
            data.from_function(lambda i, n: Columns(ids, marks)).reduce_by_key(operator.add).partition(), np.int64
        )
        if np.any(nodes.keys % workers != ctx.worker_id):
            raise RuntimeError("pagerank: reduce_by_key placed nodes off their owner (id % workers)")
        n = data.from_function(lambda i, k: [len(nodes)]).all_reduce(operator.add)
        out_degree = nodes.values.astype(np.float64)
        at = np.searchsorted(nodes.keys, src)  # each edge's source among this worker's nodes
        rank = np.full(len(nodes), 1.0 / n)
        dangling = out_degree == 0
        for it in range(iterations):
            share = np.divide(rank, out_degree, out=np.zeros_like(rank), where=~dangling)
            sent = data.from_function(lambda i, k, s=share[at]: Columns(dst, s))
            incoming = as_columns(sent.reduce_by_key(operator.add).partition(), np.float64)
            lost = data.from_function(lambda i, k, r=rank: [np.array([r[dangling].sum()])]).all_reduce(operator.add)[0]
            rank = np.full(len(nodes), (1.0 - d) / n + d * lost / n)
            rank[np.searchsorted(nodes.keys, incoming.keys)] += d * incoming.values
            if ctx.worker_id == 0:
                ctx.progress((it + 1) / iterations, f"iteration {it + 1}")
        out = cfg.get("output", "pagerank-output")
        data.from_function(lambda i, k: zip(nodes.keys.tolist(), rank.tolist())).map(
            lambda kv: f"{kv[0]}\t{kv[1]!r}"
        ).write_text(out)
        best = data.from_function(lambda i, k: zip(nodes.keys.tolist(), rank.tolist()))
        return {"nodes": n, "top": best.top(10, key=lambda kv: (kv[1], kv[0]))}
