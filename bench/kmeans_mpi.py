"""The baseline for bench/kmeans.py: the K-Means of jobs/kmeans.py hand-written on bare mpi4py
(no t2mpi), same data and algorithm. Run: mpiexec -n W python bench/kmeans_mpi.py [key=value...]"""

import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs"))
from kmeans import initial_centroids, make_points, partial_sums, update  # noqa: E402

cfg = {"seed": 42, "points": 200000, "dims": 8, "clusters": 16, "iterations": 50}
cfg.update((k, int(v)) for k, v in (a.split("=") for a in sys.argv[1:]))
comm = MPI.COMM_WORLD
points = make_points(cfg["seed"], cfg["points"], cfg["dims"], cfg["clusters"], comm.size, comm.rank)
centroids = initial_centroids(cfg["seed"], cfg["dims"], cfg["clusters"])
total = np.empty((cfg["clusters"], cfg["dims"] + 1))
for _ in range(cfg["iterations"]):
    comm.Allreduce(partial_sums(points, centroids), total, op=MPI.SUM)
    centroids = update(centroids, total)
