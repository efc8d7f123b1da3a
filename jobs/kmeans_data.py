"""K-Means through the data API: jobs/kmeans.py's algorithm and points, with the points a cached
data set of numpy blocks (worker i's block is kmeans.py's partition i) and each iteration a
map_partitions(partial sums).all_reduce(operator.add), which is MPI's Allreduce on the buffers, so the
centroids are kmeans.py's (the same sums added in the same order)."""

import operator

from kmeans import initial_centroids, make_points, partial_sums, update

from t2mpi import IWorker


class KMeansData(IWorker):
    def execute(self, ctx):
        cfg = ctx.config
        points = ctx.data.from_function(
            lambda part, parts: make_points(cfg["seed"], cfg["points"], cfg["dims"], cfg["clusters"], parts, part)
        ).cache()
        done, centroids = ctx.restored or (0, initial_centroids(cfg["seed"], cfg["dims"], cfg["clusters"]))
        every = cfg.get("checkpoint_every", 0)
        for it in range(done, cfg["iterations"]):
            total = points.map_partitions(lambda block, c=centroids: [partial_sums(block, c)]).all_reduce(operator.add)
            centroids = update(centroids, total)
            if ctx.worker_id == 0 and (it + 1) % 10 == 0:
                ctx.progress((it + 1) / cfg["iterations"], f"iteration {it + 1}")
            if every and (it + 1) % every == 0 or ctx.should_checkpoint():
                ctx.checkpoint((it + 1, centroids))
        return centroids
