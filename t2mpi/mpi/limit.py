"""How many workers a local launch (`t2mpi run`) may start: a typo such as `-n 100000` must not
start a hundred thousand Python processes on a shared login node.

Outside a scheduler allocation the limit is PER_CPU times the CPUs this process may use (its
cpuset). Inside one (Slurm, PBS, Torque) it is the allocation's own size: its tasks, else its
CPUs. The job master is not counted: it sleeps while the workers run. `mpi.oversubscribe: true`
(`t2mpi run --oversubscribe`) lifts the limit. The rule is pure, given the facts; only
check_local_launch looks at this process (its $PBS_NODEFILE). Batch jobs are not checked here:
their scheduler checks what `t2mpi script` and `submit` ask for.
"""

from __future__ import annotations

import re

from ..errors import LaunchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..job.spec import JobSpec

PER_CPU = 4  # workers per usable CPU that a local launch may start without asking


def check_local_launch(spec: JobSpec, cpus: int, environ: Mapping[str, str]) -> None:
    """t2mpi run's guard, before anything is made or started: a one-line LaunchError when the
    job asks for more workers than this node (`cpus`: the CPUs this process may use) or the
    allocation it runs in allows, unless mpi.oversubscribe."""
    slots = nodefile_slots(environ.get("PBS_NODEFILE")) if environ.get("PBS_JOBID") else None
    check_workers(spec.workers, allowed_workers(cpus, environ, slots), spec.mpi.oversubscribe)


def allowed_workers(cpus: int, environ: Mapping[str, str], pbs_nodefile_slots: int | None = None) -> tuple[int, str]:
    """(the most workers a local launch starts unasked, what that limit is). `cpus`: the CPUs
    this process may use; `pbs_nodefile_slots`: the lines of $PBS_NODEFILE, where read."""
    allocation = _allocation(environ, pbs_nodefile_slots)
    if allocation is not None:
        return allocation
    return PER_CPU * cpus, f"{PER_CPU} x the {cpus} CPU{'s' if cpus != 1 else ''} this process may use here"


def check_workers(workers: int, limit: tuple[int, str], oversubscribe: bool) -> None:
    """Raise a one-line LaunchError when `workers` is over `limit` and not asked for."""
    most, what = limit
    if workers <= most or oversubscribe:
        return
    raise LaunchError(
        f"{workers} workers are more than {most} ({what}); if that is what you meant, "
        "give t2mpi run --oversubscribe or set mpi.oversubscribe: true in the job file"
    )


def _allocation(environ: Mapping[str, str], pbs_nodefile_slots: int | None) -> tuple[int, str] | None:
    """The size of the scheduler allocation this process runs in, or None outside one (or one
    whose size its environment does not say)."""
    slurm = environ.get("SLURM_JOB_ID")
    if slurm:
        for var in ("SLURM_NTASKS", "SLURM_NPROCS"):
            tasks = _count(environ.get(var))
            if tasks:
                return tasks, f"the {tasks} tasks of Slurm job {slurm} (${var})"
        cpus = _slurm_cpus(environ.get("SLURM_JOB_CPUS_PER_NODE", ""))
        if cpus:
            return cpus, f"the {cpus} CPUs of Slurm job {slurm} ($SLURM_JOB_CPUS_PER_NODE)"
    pbs = environ.get("PBS_JOBID")
    if pbs:
        procs = _count(environ.get("PBS_NP"))
        if procs:
            return procs, f"the {procs} processors of PBS job {pbs} ($PBS_NP)"
        if pbs_nodefile_slots:
            return pbs_nodefile_slots, f"the {pbs_nodefile_slots} slots of PBS job {pbs} ($PBS_NODEFILE)"
    return None


def allocation_cpus(environ: Mapping[str, str], pbs_nodefile_slots: int | None = None) -> tuple[int, str] | None:
    """(the CPUs of the scheduler allocation this process runs in, on all its nodes; what that
    count is), or None outside one or where its environment does not say."""
    slurm = environ.get("SLURM_JOB_ID")
    if slurm:
        cpus = _slurm_cpus(environ.get("SLURM_JOB_CPUS_PER_NODE", ""))
        return (cpus, f"the {cpus} CPUs of the allocation ($SLURM_JOB_CPUS_PER_NODE)") if cpus else None
    if environ.get("PBS_JOBID"):
        procs = _count(environ.get("PBS_NP")) or pbs_nodefile_slots
        return (procs, f"the {procs} processors of the allocation") if procs else None
    return None


def _count(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() and int(text) > 0 else None


def _slurm_cpus(text: str) -> int | None:
    """'4(x2),2' (CPUs per node, with repeat counts) -> 10; None when it cannot be read."""
    total = 0
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m is None:
            return None
        total += int(m.group(1)) * int(m.group(2) or 1)
    return total or None


def nodefile_slots(path: str | None) -> int | None:
    """The lines of a PBS nodefile (one per slot), or None where it cannot be read."""
    try:
        with open(path or "", encoding="utf-8", errors="replace") as f:
            return sum(1 for line in f if line.strip()) or None
    except OSError:
        return None
