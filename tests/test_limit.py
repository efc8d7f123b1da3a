"""The guard of local launches (t2mpi.mpi.limit): how many workers `t2mpi run` starts unasked."""

from __future__ import annotations

import pytest

from t2mpi.errors import LaunchError
from t2mpi.mpi.limit import PER_CPU, allowed_workers, check_workers


def test_outside_an_allocation_the_limit_is_four_workers_per_usable_cpu():
    assert PER_CPU == 4
    assert allowed_workers(2, {}) == (8, "4 x the 2 CPUs this process may use here")
    assert allowed_workers(1, {"PBS_NODEFILE": "/x"})[0] == 4  # no job id: not an allocation


@pytest.mark.parametrize(
    "environ, slots, expected",
    [
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "3"}, None, (3, "the 3 tasks of Slurm job 7 ($SLURM_NTASKS)")),
        ({"SLURM_JOB_ID": "7", "SLURM_NPROCS": "5"}, None, (5, "the 5 tasks of Slurm job 7 ($SLURM_NPROCS)")),
        (
            {"SLURM_JOB_ID": "7", "SLURM_JOB_CPUS_PER_NODE": "4(x2),2"},
            None,
            (10, "the 10 CPUs of Slurm job 7 ($SLURM_JOB_CPUS_PER_NODE)"),
        ),
        ({"PBS_JOBID": "12.head", "PBS_NP": "6"}, 9, (6, "the 6 processors of PBS job 12.head ($PBS_NP)")),
        ({"PBS_JOBID": "12.head"}, 9, (9, "the 9 slots of PBS job 12.head ($PBS_NODEFILE)")),
    ],
)
def test_inside_an_allocation_its_size_is_the_limit(environ, slots, expected):
    assert allowed_workers(64, environ, slots) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"SLURM_JOB_ID": "7"},
        {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "0", "SLURM_JOB_CPUS_PER_NODE": "many"},
        {"PBS_JOBID": "12", "PBS_NP": "-1"},
    ],
)
def test_an_allocation_that_does_not_say_its_size_falls_back_to_the_node(environ):
    assert allowed_workers(3, environ) == (12, "4 x the 3 CPUs this process may use here")


def test_more_workers_than_the_limit_are_refused_unless_asked_for():
    limit = allowed_workers(2, {})
    check_workers(8, limit, oversubscribe=False)  # at the limit: fine
    check_workers(100000, limit, oversubscribe=True)  # asked for
    with pytest.raises(LaunchError) as info:
        check_workers(9, limit, oversubscribe=False)
    assert str(info.value) == (
        "9 workers are more than 8 (4 x the 2 CPUs this process may use here); if that is what you meant, "
        "give t2mpi run --oversubscribe or set mpi.oversubscribe: true in the job file"
    )
