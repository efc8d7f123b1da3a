"""Start-up, K-Means (hand-written in a worker, and through the data API) and TeraSort (the data API's
global sort) of a job spread over 3 nodes (1 worker each) against the same job on 1 node (3 workers),
on the multi-node cluster of slurm/multinode.sh (started first; root only).

(3 nodes) multinode.sh exec head -- t2mpi run JOB -n 3 --set mpi.args=[<hosts n1:2,n2,n3>, nsrsh]
(1 node)  multinode.sh exec n1   -- t2mpi run JOB -n 3
Whole-command wall time, interleaved rounds, medians. The "nodes" share this machine's cores and
memory: the ratio shows what TCP between namespaces costs against shared memory, not scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, ROOT, describe, interleave, job_folder, mpi_flavour, ratio_line, timed

MULTINODE = os.path.join(ROOT, "slurm", "multinode.sh")
NSRSH = os.path.join(ROOT, "slurm", "nsrsh")

EMPTY = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return ctx.host
"""


def spread_args(flavour: str) -> list[str]:
    """Launcher options: the master and worker 0 on n1, workers 1 and 2 on n2 and n3, remote
    daemons started by slurm/nsrsh."""
    if flavour == "openmpi":
        return ["--mca", "plm_ssh_agent", NSRSH, "--host", "n1:2,n2:1,n3:1"]
    return ["-launcher", "ssh", "-launcher-exec", NSRSH, "-hosts", "n1:2,n2:1,n3:1"]


def run_on(host: str, job: str, cwd: str, *sets: str, output: str | None = None):
    """A case: `t2mpi run` on host; output: a config key that gets a new folder under cwd each run."""
    argv = [MULTINODE, "exec", host, "--", PYTHON, "-m", "t2mpi", "run", job, "-n", "3"]
    for item in sets:
        argv += ["--set", item]
    runs = iter(range(1 << 30))

    def run():
        folder = os.path.join(cwd, f"out-{host}-{next(runs)}")
        try:
            return timed(argv + (["--set", f"{output}={folder}"] if output else []), cwd=cwd)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # a TeraSort's output: every run writes its own

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--records", type=int, default=2_000_000, help="TeraSort's generated records")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    status = subprocess.run([MULTINODE, "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        sys.exit(f"the multi-node cluster is not up: run `slurm/multinode.sh start`\n{status.stdout}{status.stderr}")
    flavour = mpi_flavour()
    spread = "mpi.args=" + json.dumps(spread_args(flavour))
    work = job_folder("empty", EMPTY, {"worker": "empty:Job", "workers": 3})
    empty = os.path.join(work, "empty.yaml")
    kmeans = os.path.join(ROOT, "jobs", "kmeans.yaml")
    sizes = (f"config.points={args.points}", f"config.iterations={args.iterations}")
    kmeans_data = os.path.join(ROOT, "jobs", "kmeans_data.yaml")
    data_sizes = (*sizes, "config.dims=16", "config.clusters=16")
    terasort = os.path.join(ROOT, "jobs", "terasort.yaml")
    records = f"config.generate={args.records}"
    cases = {
        "start-up, 3 nodes x 1 worker": run_on("head", empty, work, spread),
        "start-up, 1 node x 3 workers": run_on("n1", empty, work),
        "kmeans, 3 nodes x 1 worker": run_on("head", kmeans, work, spread, *sizes),
        "kmeans, 1 node x 3 workers": run_on("n1", kmeans, work, *sizes),
        "kmeans (data API), 3 nodes x 1 worker": run_on("head", kmeans_data, work, spread, *data_sizes),
        "kmeans (data API), 1 node x 3 workers": run_on("n1", kmeans_data, work, *data_sizes),
        "terasort (data API), 3 nodes x 1 worker": run_on(
            "head", terasort, work, spread, records, output="config.output"
        ),
        "terasort (data API), 1 node x 3 workers": run_on("n1", terasort, work, records, output="config.output"),
    }
    res = interleave(cases, args.rounds)
    print(
        f"3 nodes against 1 node under {flavour} (t2mpi run, namespaces of slurm/multinode.sh): "
        f"K-Means {args.points} points, {args.iterations} iterations; TeraSort {args.records} records; "
        f"{args.rounds} interleaved rounds"
    )
    for name, samples in res.items():
        print(describe(name, samples))
    samples = list(res.values())
    for (name, _), three, one in zip(list(res.items())[::2], samples[::2], samples[1::2]):
        print(ratio_line(f"{name.split(',')[0]} 3 nodes / 1 node", three, one, "(none: a figure)"))


if __name__ == "__main__":
    main()
