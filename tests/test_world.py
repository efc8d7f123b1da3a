"""A worker's MPI.COMM_WORLD is the workers' communicator (mpi.world: workers, the default), so
libraries that default to it work in a job; mpi.world: all gives back the launch's world.

Every job sets timeouts.progress: a worker stuck in a collective that waits for the master fails
the job within seconds instead of hanging the test."""

from __future__ import annotations

import pickle
import re
import signal
import subprocess

import pytest
from conftest import PYTHON, events_of, job_dirs, only_job, started_client, state_of, t2mpi, wait_for, write_job

pytestmark = pytest.mark.mpi

STUCK = {"timeouts": {"progress": 20}}  # a regression fails in 20 s, not at the test's timeout

EXECUTOR = """
    from mpi4py.futures import MPICommExecutor
    from t2mpi import IWorker

    def cube(x):
        return x ** 3

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "executor")
            with MPICommExecutor() as executor:  # the default communicator: MPI.COMM_WORLD
                if executor is None:  # this worker served the root's tasks
                    return None
                return list(executor.map(cube, range(20)))
"""

COLLECTIVES = """
    import numpy as np
    from mpi4py import MPI
    from mpi4py.MPI import COMM_WORLD as IMPORTED_WORLD
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "collectives")
            world = MPI.COMM_WORLD
            world.Barrier()
            mine = np.array([10.0 ** ctx.worker_id])
            total = np.zeros(1)
            world.Allreduce(mine, total, op=MPI.SUM)
            ranks = world.allgather(world.Get_rank())
            world.Barrier()
            return {
                "size": world.Get_size(),
                "imported_size": IMPORTED_WORLD.Get_size(),
                "rank": world.Get_rank(),
                "sum": float(total[0]),
                "ranks": ranks,
                "is_ctx_comm": MPI.Comm.Compare(world, ctx.comm) == MPI.IDENT,
            }
"""

SIZES = """
    from mpi4py import MPI
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank(), ctx.comm.Get_size()
"""


def results(work, *args: str) -> dict:
    done = t2mpi("run", *args, "-q", cwd=work, timeout=180)
    assert done.returncode == 0, done.stderr
    jobdir = only_job(work)
    assert state_of(jobdir)["state"] == "COMPLETED"
    return pickle.loads((jobdir / "results.pkl").read_bytes())


def test_mpicommexecutor_with_the_default_communicator_maps_over_the_workers(work):
    job = write_job(work, "executor", EXECUTOR, workers=3, **STUCK)
    got = results(work, str(job))
    assert got == {0: [x**3 for x in range(20)], 1: None, 2: None}


@pytest.mark.parametrize("master", ["rank0", "client"])
def test_comm_world_collectives_see_the_workers_only(work, master):
    job = write_job(work, "collectives", COLLECTIVES, workers=3, **STUCK)
    got = results(work, str(job), "--master", master)
    for wid in range(3):
        assert got[wid] == {
            "size": 3,
            "imported_size": 3,
            "rank": wid,
            "sum": 111.0,  # 1 + 10 + 100: the workers' contributions, nothing from the master
            "ranks": [0, 1, 2],
            "is_ctx_comm": True,
        }


def test_mpi_world_all_keeps_the_launchs_world(work):
    job = write_job(work, "sizes", SIZES, workers=2, mpi={"world": "all"}, **STUCK)
    got = results(work, str(job))
    assert got == {0: (3, 1, 2), 1: (3, 2, 2)}  # workers + 1 ranks; worker w is rank w + 1


BARRIER_WITH_THE_MASTER = """
    from mpi4py import MPI
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.5, "barrier")
            MPI.COMM_WORLD.Barrier()  # mpi.world: all, and the master never joins it
"""


def test_status_shows_how_long_a_stuck_worker_has_been_quiet(work):
    job = write_job(work, "stuck", BARRIER_WITH_THE_MASTER, workers=2, mpi={"world": "all"})
    argv = [PYTHON, "-m", "t2mpi", "run", str(job), "-q"]
    with started_client(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as client:
        jobdir = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        wait_for(
            lambda: (
                (jobdir / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(jobdir)) == 2
            ),
            60,
            "both workers in the barrier",
        )

        def quiet_rows() -> list[str] | None:
            shown = t2mpi("status", jobdir.name, cwd=work)
            rows = [line for line in shown.stdout.splitlines() if "RUNNING" in line and "ctx.progress()" in line]
            quiet = [int(m.group(1)) for line in rows if (m := re.search(r"no ctx.progress\(\) for (\d+) s", line))]
            return rows if len(quiet) == 2 and min(quiet) >= 3 else None

        rows = wait_for(quiet_rows, 60, "status to show both workers quiet for 3 s")
        assert all(row.endswith("(last: barrier)") for row in rows), rows
        client.send_signal(signal.SIGINT)  # the stuck job ends as any other does
        assert client.wait(timeout=60) == 130
    assert state_of(jobdir)["state"] == "KILLED"
