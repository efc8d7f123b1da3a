"""The data-API examples on real MPI (t2mpi run, 2 workers, small generated input) against a plain
single-process computation: jobs/pagerank.yaml and jobs/kmeans_data.yaml."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from conftest import JOBS, only_job, t2mpi

pytestmark = pytest.mark.mpi


def pagerank_reference(edges, iterations, d):
    nodes = sorted({x for e in edges for x in e})
    n = len(nodes)
    out = {u: sorted({b for a, b in edges if a == u}) for u in nodes}
    rank = dict.fromkeys(nodes, 1.0 / n)
    for _ in range(iterations):
        lost = sum(rank[u] for u in nodes if not out[u])
        new = dict.fromkeys(nodes, (1 - d) / n + d * lost / n)
        for u in nodes:
            for v in out[u]:
                new[v] += d * rank[u] / len(out[u])
        rank = new
    return rank


def test_pagerank_matches_one_process(work):
    r = random.Random(11)
    ids = [r.randrange(-50, 10**12) for _ in range(60)]
    edges = [(r.choice(ids[:40]), r.choice(ids[20:])) for _ in range(200)]  # ids[:20] only out, ids[40:] only in
    edges += edges[:15]  # repeated edges count once
    (work / "edges.txt").write_text("# src dst\n" + "".join(f"{a}\t{b}\n" for a, b in edges) + "\n")
    want = pagerank_reference(edges, 15, 0.8)
    assert any(not any(a == u for a, _ in edges) for u in want)  # there are dangling nodes
    out = work / "ranks"
    sets = [f"config.edges={work / 'edges.txt'}", "config.iterations=15", "config.damping=0.8", f"config.output={out}"]
    done = t2mpi("run", str(JOBS / "pagerank.yaml"), "-n", "2", *[x for s in sets for x in ("--set", s)], cwd=work)
    assert done.returncode == 0, done.stderr
    got = {}
    for part in sorted(out.iterdir()):
        for line in part.read_text().splitlines():
            node, rank = line.split("\t")
            assert int(node) not in got
            got[int(node)] = float(rank)
    assert sorted(got) == sorted(want)
    assert max(abs(got[u] - want[u]) for u in want) < 1e-9
    assert abs(sum(got.values()) - 1.0) < 1e-9
    results = pickle.loads((only_job(work) / "results.pkl").read_bytes())
    assert results[0]["nodes"] == len(want) and results[0] == results[1]


def test_pagerank_runs_as_it_is_on_its_sample(work):
    done = t2mpi("run", str(JOBS / "pagerank.yaml"), "-q", cwd=work)
    assert done.returncode == 0, done.stderr
    ranks = [
        float(line.split("\t")[1]) for p in (work / "pagerank-output").iterdir() for line in p.read_text().splitlines()
    ]
    assert len(ranks) > 40 and abs(sum(ranks) - 1.0) < 1e-9


def test_kmeans_data_gives_kmeans_centroids(work):
    import sys

    sys.path.insert(0, str(JOBS))
    try:
        import kmeans
    finally:
        sys.path.remove(str(JOBS))
    cfg = dict(seed=3, points=3000, dims=4, clusters=5, iterations=12)
    sets = [x for k, v in cfg.items() for x in ("--set", f"config.{k}={v}")]
    centroids = {}
    for job in ("kmeans", "kmeans_data"):
        folder = work / job
        folder.mkdir()
        done = t2mpi("run", str(JOBS / f"{job}.yaml"), "-n", "2", "-q", *sets, cwd=folder)
        assert done.returncode == 0, done.stderr
        results = pickle.loads((only_job(folder) / "results.pkl").read_bytes())
        np.testing.assert_array_equal(results[0], results[1])
        centroids[job] = results[0]
    assert np.max(np.abs(centroids["kmeans_data"] - centroids["kmeans"])) < 1e-9
    np.testing.assert_allclose(centroids["kmeans_data"], kmeans.kmeans_sequential(cfg, 2), atol=1e-9)
    assert not np.allclose(centroids["kmeans_data"], kmeans.initial_centroids(3, 4, 5))
