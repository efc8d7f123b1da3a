"""bench/kmeans.py's mpi4py side (bench/kmeans_mpi.py, run as it is) with an answer for
bench/dataflow.py: after the script's iterations, rank 0 prints RESULT {json} of the centroids and
the ranks' largest peak RSS. Run: mpiexec -n W python kmeans_side.py key=value..."""

import json
import os
import runpy
import sys

from mpi4py import MPI
from words import peak_rss_mib

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kmeans_mpi.py")

if __name__ == "__main__":
    sys.argv = [SCRIPT] + sys.argv[1:]
    done = runpy.run_path(SCRIPT, run_name="__main__")
    rss = MPI.COMM_WORLD.reduce(peak_rss_mib(), op=MPI.MAX, root=0)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print("RESULT " + json.dumps({"centroids": done["centroids"].tolist(), "rss_mib": rss}), flush=True)
