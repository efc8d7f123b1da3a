"""binding.mode: auto, decided: whether a launch binds its workers to cores, and why.

Binding is safe where the CPUs are the job's own: inside a scheduler allocation (Slurm, PBS,
Torque) whose cgroup holds this process, when the workers' cores fit the allocation. On a login
node (no allocation), two unrelated runs bound at once would both pile onto the first cores; in an
allocation whose cpuset is not the job's (no cgroup confinement, or a shell that is not in the
job, as `salloc`'s on the login node), other jobs may run on the same CPUs; where the workers do
not fit, oversubscribed ranks would share cores. In each of those cases auto does not bind.
`none` and `cores` are what the job says, whatever the environment.

decide() is pure: a function of the facts (environment, this process's CPUs, its cgroup); here()
gathers them from this process. The job master (rank 0) decides where the launch runs, on the
first node of a batch job, not on the login node that wrote its script; `t2mpi run --dry-run`
asks the same question where it runs. Cheap to import (rank 0 runs it): no typing, no numpy.
"""

from __future__ import annotations

import os

from ..mpi.limit import allocation_cpus, nodefile_slots
from .cpuset import format_cpuset

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..job.spec import JobSpec

ANYWAY = "binding.mode: cores binds anyway"


def decide(
    mode: str,
    workers: int,
    cpus: int,
    environ: Mapping[str, str],
    usable: tuple[int, ...],
    cgroup: str,
    pbs_slots: int | None = None,
) -> tuple[str, str]:
    """(the mode the launch uses, "none" or "cores"; why, one line). `mode`: the job's
    binding.mode; `workers` x `cpus`: the cores the workers need; `usable`: the CPUs this process
    may use (its cpuset); `cgroup`: the text of /proc/self/cgroup; `pbs_slots`: the lines of
    $PBS_NODEFILE, where read."""
    if mode != "auto":
        return mode, f"binding.mode: {mode}"
    job = _job(environ)
    if job is None:
        return (
            "none",
            f"auto: outside a scheduler allocation (no $SLURM_JOB_ID or $PBS_JOBID), the node may be shared; {ANYWAY}",
        )
    kind, job_id, component = job
    path = _cgroup_naming(cgroup, component)
    if path is None:
        return "none", (
            f"auto: inside {kind} job {job_id}, but this process's cgroup ({_cpuset_cgroup(cgroup)}) is not the job's, "
            f"so its CPUs may be shared; {ANYWAY}"
        )
    need = workers * cpus
    nodes = _nodes(environ)
    if nodes == 1:
        have, what = len(usable), f"the {len(usable)} CPUs of its cpuset ({format_cpuset(usable)}) on this node"
    else:
        size = allocation_cpus(environ, pbs_slots)
        if size is None:
            return "none", f"auto: inside {kind} job {job_id}, whose CPUs its environment does not say; {ANYWAY}"
        have, what = size
    each = f"{workers} worker{'s' if workers != 1 else ''} x {cpus} cpu{'s' if cpus != 1 else ''}"
    if need > have:
        return (
            "none",
            f"auto: {each} = {need} CPUs are more than {what} in {kind} job {job_id} (oversubscribed); not bound",
        )
    return "cores", f"auto: inside {kind} job {job_id}, whose cgroup holds this process ({path}), and {each} fit {what}"


def here(spec: JobSpec, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """decide() for `spec` with this process's facts (its environment by default)."""
    environ = os.environ if environ is None else environ
    if spec.binding.mode != "auto":
        return decide(spec.binding.mode, spec.workers, spec.resources.cpus, environ, (), "")
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
            cgroup = f.read()
    except OSError:
        cgroup = ""
    slots = nodefile_slots(environ.get("PBS_NODEFILE")) if environ.get("PBS_JOBID") else None
    usable = tuple(sorted(os.sched_getaffinity(0)))
    return decide(spec.binding.mode, spec.workers, spec.resources.cpus, environ, usable, cgroup, slots)


def _job(environ: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(scheduler, job id, the cgroup path component that names the job) of the allocation."""
    slurm = environ.get("SLURM_JOB_ID", "").strip()
    if slurm:
        return "Slurm", slurm, f"job_{slurm}"
    pbs = environ.get("PBS_JOBID", "").strip()
    if pbs:
        return "PBS", pbs, pbs
    return None


def _cgroup_naming(cgroup: str, component: str) -> str | None:
    """The first cgroup path of this process with `component` among its parts (Slurm:
    .../job_12/step_0/..., PBS: /pbs_jobs.service/jobid/12.server, Torque: /torque/12.server)."""
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1].strip()
        if component in path.split("/"):
            return path
    return None


def _cpuset_cgroup(cgroup: str) -> str:
    """The cgroup path that confines this process's CPUs: the cpuset controller's (cgroup v1),
    else the unified hierarchy's (v2)."""
    paths = {}
    for line in cgroup.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        for name in controllers.split(",") if controllers else [""]:
            paths.setdefault(name, path.strip())
    return paths.get("cpuset") or paths.get("") or "unknown"


def _nodes(environ: Mapping[str, str]) -> int | None:
    """The allocation's node count, where its environment says it (Slurm); PBS: one node unless
    $PBS_NUM_NODES says more (PBS Pro does not say it: then this node's cpuset decides)."""
    for var in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "PBS_NUM_NODES"):
        text = environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None if environ.get("SLURM_JOB_ID") else 1
