"""K-Means on numpy arrays: each worker holds one partition of the points; the centroids
are combined with an Allreduce of per-cluster sums and counts each iteration."""

import numpy as np
from mpi4py import MPI

from t2mpi import IWorker


def make_points(seed, points, dims, clusters, parts, part):
    """Partition `part` of `parts` of a data set made from `seed` (the same for any split)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10.0, 10.0, size=(clusters, dims))
    lo, hi = part * points // parts, (part + 1) * points // parts
    prng = np.random.default_rng([seed, lo])  # a partition's points depend on where it starts
    labels = prng.integers(0, clusters, size=hi - lo)
    return centres[labels] + prng.normal(0.0, 1.0, size=(hi - lo, dims))


def initial_centroids(seed, dims, clusters):
    return np.random.default_rng([seed, 2**31]).uniform(-10.0, 10.0, size=(clusters, dims))


def partial_sums(points, centroids):
    """Per-cluster sums of the points nearest each centroid, and their counts."""
    d2 = (points * points).sum(1)[:, None] - 2.0 * points @ centroids.T + (centroids * centroids).sum(1)
    nearest = d2.argmin(axis=1)
    k, dims = centroids.shape
    sums = np.zeros((k, dims + 1))
    np.add.at(sums[:, :dims], nearest, points)
    sums[:, dims] = np.bincount(nearest, minlength=k)
    return sums


def update(centroids, sums):
    counts = sums[:, -1:]
    return np.where(counts > 0, sums[:, :-1] / np.maximum(counts, 1), centroids)


def kmeans_sequential(cfg, parts):
    """The reference: the same algorithm in one process over all partitions."""
    points = np.concatenate(
        [make_points(cfg["seed"], cfg["points"], cfg["dims"], cfg["clusters"], parts, p) for p in range(parts)]
    )
    centroids = initial_centroids(cfg["seed"], cfg["dims"], cfg["clusters"])
    for _ in range(cfg["iterations"]):
        centroids = update(centroids, partial_sums(points, centroids))
    return centroids


class KMeans(IWorker):
    def execute(self, ctx):
        cfg = ctx.config
        points = make_points(cfg["seed"], cfg["points"], cfg["dims"], cfg["clusters"], ctx.num_workers, ctx.worker_id)
        # a restarted job goes on from its last committed checkpoint
        done, centroids = ctx.restored or (0, initial_centroids(cfg["seed"], cfg["dims"], cfg["clusters"]))
        every = cfg.get("checkpoint_every", 0)
        total = np.empty((cfg["clusters"], cfg["dims"] + 1))
        for it in range(done, cfg["iterations"]):
            ctx.comm.Allreduce(partial_sums(points, centroids), total, op=MPI.SUM)
            centroids = update(centroids, total)
            if ctx.worker_id == 0 and (it + 1) % 10 == 0:
                ctx.progress((it + 1) / cfg["iterations"], f"iteration {it + 1}")
            if every and (it + 1) % every == 0 or ctx.should_checkpoint():
                ctx.checkpoint((it + 1, centroids))  # stops here when the job is asked to stop
        return centroids
