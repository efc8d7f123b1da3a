"""binding.mode: auto (t2mpi.resources.autobind): a table of environments and cgroups -> mode and reason."""

from __future__ import annotations

import pytest

from t2mpi.job.spec import DEFAULTS, load
from t2mpi.resources.autobind import decide, here

SLURM_V2 = "0::/system.slice/slurmstepd.scope/job_12/step_0/user/task_0\n"
SLURM_V1 = "12:cpuset:/slurm/uid_1000/job_12/step_batch\n11:memory:/slurm/uid_1000/job_12/step_batch\n"
PBS_V2 = "0::/pbs_jobs.service/jobid/34.head\n"
TORQUE = "6:cpuset:/torque/34.head\n"
LOGIN = "0::/user.slice/user-1000.slice/session-3.scope\n"
FOUR = (0, 1, 2, 3)
SLURM_ONE_NODE = {"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "1"}


@pytest.mark.parametrize(
    "mode, workers, cpus, environ, usable, cgroup, chosen, why",
    [
        # what the job says, whatever the environment
        ("none", 2, 1, SLURM_ONE_NODE, FOUR, SLURM_V2, "none", "binding.mode: none"),
        ("cores", 2, 1, {}, FOUR, LOGIN, "cores", "binding.mode: cores"),
        # a login node: no allocation
        (
            "auto",
            2,
            1,
            {"HOME": "/home/u"},
            FOUR,
            LOGIN,
            "none",
            "auto: outside a scheduler allocation (no $SLURM_JOB_ID or $PBS_JOBID), the node may be shared; "
            "binding.mode: cores binds anyway",
        ),
        # salloc's shell on the login node: the allocation's id, but not its cgroup
        (
            "auto",
            2,
            1,
            SLURM_ONE_NODE,
            FOUR,
            LOGIN,
            "none",
            "auto: inside Slurm job 12, but this process's cgroup (/user.slice/user-1000.slice/session-3.scope) "
            "is not the job's, so its CPUs may be shared; binding.mode: cores binds anyway",
        ),
        # another job's cgroup is not this one's
        ("auto", 2, 1, SLURM_ONE_NODE, FOUR, SLURM_V2.replace("job_12", "job_123"), "none", None),
        # inside the job's own cgroup, fitting
        (
            "auto",
            2,
            2,
            SLURM_ONE_NODE,
            FOUR,
            SLURM_V2,
            "cores",
            "auto: inside Slurm job 12, whose cgroup holds this process "
            "(/system.slice/slurmstepd.scope/job_12/step_0/user/task_0), and 2 workers x 2 cpus fit the 4 CPUs "
            "of its cpuset (0-3) on this node",
        ),
        ("auto", 4, 1, SLURM_ONE_NODE, FOUR, SLURM_V1, "cores", None),
        # oversubscribed
        (
            "auto",
            5,
            1,
            SLURM_ONE_NODE,
            FOUR,
            SLURM_V2,
            "none",
            "auto: 5 workers x 1 cpu = 5 CPUs are more than the 4 CPUs of its cpuset (0-3) on this node "
            "in Slurm job 12 (oversubscribed); not bound",
        ),
        ("auto", 3, 2, SLURM_ONE_NODE, FOUR, SLURM_V2, "none", None),
        # several nodes: the allocation's CPUs, from its environment
        (
            "auto",
            6,
            1,
            {"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_CPUS_PER_NODE": "4(x2)"},
            FOUR,
            SLURM_V2,
            "cores",
            "auto: inside Slurm job 12, whose cgroup holds this process "
            "(/system.slice/slurmstepd.scope/job_12/step_0/user/task_0), and 6 workers x 1 cpu fit the 8 CPUs "
            "of the allocation ($SLURM_JOB_CPUS_PER_NODE)",
        ),
        (
            "auto",
            9,
            1,
            {"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_CPUS_PER_NODE": "4(x2)"},
            FOUR,
            SLURM_V2,
            "none",
            None,
        ),
        (
            "auto",
            2,
            1,
            {"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "2"},
            FOUR,
            SLURM_V2,
            "none",
            "auto: inside Slurm job 12, whose CPUs its environment does not say; binding.mode: cores binds anyway",
        ),
        # PBS Pro and Torque
        ("auto", 4, 1, {"PBS_JOBID": "34.head"}, FOUR, PBS_V2, "cores", None),
        ("auto", 4, 1, {"PBS_JOBID": "34.head"}, FOUR, TORQUE, "cores", None),
        ("auto", 4, 1, {"PBS_JOBID": "34.head"}, FOUR, LOGIN, "none", None),
        ("auto", 5, 1, {"PBS_JOBID": "34.head"}, FOUR, PBS_V2, "none", None),
        ("auto", 8, 1, {"PBS_JOBID": "34.head", "PBS_NUM_NODES": "2", "PBS_NP": "8"}, FOUR, TORQUE, "cores", None),
    ],
)
def test_auto_binds_only_inside_the_jobs_own_allocation_when_the_workers_fit(
    mode, workers, cpus, environ, usable, cgroup, chosen, why
):
    got, said = decide(mode, workers, cpus, environ, usable, cgroup)
    assert got == chosen, said
    if why is not None:
        assert said == why
    assert "\n" not in said


def test_auto_is_the_default():
    assert DEFAULTS["binding"]["mode"] == "auto"


def test_here_reads_this_process(tmp_path):
    job = tmp_path / "j.yaml"
    job.write_text("name: j\nworker: w:W\nworkers: 1\n")
    spec = load(job)
    assert here(spec, {}) == ("none", decide("auto", 1, 1, {}, (), "")[1])
    with open("/proc/self/cgroup") as f:
        lines = [line.split(":", 2) for line in f if line.strip()]
    mine = next((p for _, c, p in lines if "cpuset" in c.split(",")), None) or next(p for _, c, p in lines if not c)
    mine = mine.strip()
    mode, why = here(spec, {"SLURM_JOB_ID": "no-such-job", "SLURM_JOB_NUM_NODES": "1"})
    assert mode == "none" and f"this process's cgroup ({mine}) is not the job's" in why
    assert here(load(job, overrides=["binding.mode=cores"]), {}) == ("cores", "binding.mode: cores")
