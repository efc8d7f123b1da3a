"""The job spec: YAML layers resolved once into a frozen, validated JobSpec.

Layers, lowest first: packaged defaults < site config ($T2MPI_CONFIG or
~/.config/t2mpi/config.yaml) < job file < command line (-n, --set key=value).
Every error names the file and line (or the command-line option) and the key path.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

from ..errors import SpecError
from .layers import Where, apply_override, deep_copy, merge, parse_override, read_yaml

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

ENV_CONFIG = "T2MPI_CONFIG"
ENV_MPIEXEC = "T2MPI_MPIEXEC"

# Patterns are compiled on first use (re caches them): workers import this module for JobSpec
# alone, and compiling them there would cost every rank start-up time.
_SIZE_RE = r"\s*(\d+(?:\.\d+)?)\s*([KMGTP])(?:I?B)?\s*"
_TIME_RE = r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)|(\d+):(\d\d)|(\d+)"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

# The packaged defaults: the lowest layer, under the site config, the job file and the command line.
# They are also the schema: the keys allowed in each section, and the fields of its named tuple
# below, are the keys written here (t2mpi.job.validate checks the values).
DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "max_restarts": 0,  # re-runs of a failed or preempted job from its last committed checkpoint
    "master": "rank0",  # rank0: MPI rank 0 of the launch; client: a one-rank launch that spawns
    # mode: auto (cores inside an allocation whose CPUs are the job's, else none), none, or
    # cores (pin workers, threads, memory); t2mpi.resources.autobind decides auto
    "binding": {"mode": "auto", "policy": "compact", "near": "none"},
    "network": {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None},
    # data_memory: what a worker's data operations hold before they spill to scratch_dir; None: memory / 2
    "resources": {"cpus": 1, "threads": 1, "memory": "1G", "data_memory": None},
    "config": {},
    "jobs_dir": "./t2mpi-jobs",
    "scratch_dir": None,  # None: the node's temporary folder ($TMPDIR or /tmp) on each node
    "keep_scratch": False,  # True: a worker's ctx.scratch_dir stays when it ends (default: removed)
    "mpi": {
        "launcher": None,  # None: $T2MPI_MPIEXEC, then mpiexec beside Python, then on PATH
        "args": [],  # extra launcher arguments, before the program
        "env": {},  # extra environment for every rank
        "world": "workers",  # a worker's MPI.COMM_WORLD: the workers only, or all (the launch's ranks)
        "oversubscribe": False,  # True: t2mpi run may start more workers than its limit (mpi/limit.py)
    },
    "scheduler": {
        "kind": "slurm",  # slurm, pbs or torque (t2mpi script/submit --scheduler)
        "time": None,  # walltime: [D-]HH:MM:SS, MM:SS or minutes; None: the queue's default
        "partition": None,  # Slurm partition, PBS queue
        "account": None,
        "qos": None,  # Slurm only
        "nodes": None,  # None: as many as the scheduler gives
        "launcher": "mpiexec",  # mpiexec (the MPI's own) or srun
        "directives": [],  # extra directive lines, e.g. ["--exclusive"] or ["-l place=scatter"]
        "skip": [],  # generated directives to leave out (site quirks), e.g. [mem]
        "prologue": [],  # commands run first, e.g. ["module load python/3.12"]
        "python": None,  # Python on the compute nodes; None: the client's
        "signal": 60,  # Slurm: seconds before the walltime to ask for a checkpoint
        # (--signal=B:USR1@N, with max_restarts > 0); 0: no signal
        # slurm: {...}, pbs: {...}, torque: {...}: site defaults for that scheduler only
    },
    "timeouts": {
        "start": 120.0,  # seconds for all ranks to join
        "barrier": 300.0,  # default timeout of ctx.controller.barrier()
        "abort": 10.0,  # seconds a failed worker waits for the master's abort
        "heartbeat": 60.0,  # seconds without a heartbeat before a worker counts as dead
        "progress": None,  # seconds without ctx.progress() before a worker counts as hung
        "checkpoint": 30.0,  # seconds for the workers' checkpoint after a stop request
    },
}


REQUIRED = ("name", "worker")  # the keys a job file must give (they have no default)
TOP_KEYS = (*REQUIRED, *DEFAULTS)


def _section(name: str, key: str, doc: str) -> type:
    """The named tuple of one section of the spec, its fields the section's keys in DEFAULTS.
    Named tuples are frozen, picklable to every rank and cheap to import there (dataclasses
    would cost a worker 20 ms of start-up)."""
    cls = namedtuple(name, tuple(DEFAULTS[key]))
    cls.__doc__ = doc
    return cls


Resources = _section(
    "Resources",
    "resources",
    "What one worker is given: cores, the threads that run its code, memory in bytes, and the bytes of it its "
    "data operations may hold before they spill (None: half the memory).",
)
MpiOptions = _section(
    "MpiOptions",
    "mpi",
    """launcher: path or name or None; args: extra launcher arguments; env:
((key, value), ...); world: what mpi4py's MPI.COMM_WORLD is in a worker (workers: the workers'
communicator, ctx.comm; all: the launch's, master included); oversubscribe: t2mpi run may start more
workers than this node's or allocation's limit (t2mpi.mpi.limit).""",
)
Timeouts = _section(
    "Timeouts",
    "timeouts",
    """Seconds: all ranks joined, a barrier's default, a failed
worker's wait for the abort, silence after which a worker counts as dead (it heartbeats every third of
it), (or None) time without ctx.progress() after which a worker counts as hung, and the wait for the
workers' checkpoint after a stop request (preemption, walltime) before the job ends without one.""",
)
Batch = _section(
    "Batch",
    "scheduler",
    """The spec's scheduler section (t2mpi script / submit; the name
Batch is historical): kind (slurm, pbs, torque), time (walltime in seconds or None), partition (PBS:
queue), account, qos, nodes (or None), launcher (mpiexec or srun), directives (extra directive lines),
skip (generated directives to leave out), prologue (commands, each a tuple of words), python (on the
compute nodes, or None), signal (seconds before the walltime at which Slurm asks for a checkpoint; 0:
never).""",
)
BindingOptions = _section(
    "BindingOptions",
    "binding",
    """The spec's binding section. mode: auto (cores where it is safe: inside
a scheduler allocation whose cgroup holds the launch and whose CPUs the workers fit; else none, see
t2mpi.resources.autobind), none (the OS places threads) or cores (each worker pinned to its planned
cores, its threads each to one, its memory to their NUMA domain); policy: compact or spread on each node; near: nic (fill the NUMA domain of the
active InfiniBand/RoCE/Omni-Path adapter first) or none. (What binding a worker did is
t2mpi.resources.binding.Binding.)""",
)
Network = _section(
    "Network",
    "network",
    """transport: auto (what the node's fabric does best), ucx, ofi or
tcp; interface: the TCP interface (None: the first one up, not lo); ucx_tls: UCX_TLS if asked; provider:
the libfabric provider (None: the best usable one).""",
)

SCHEDULERS = ("slurm", "pbs", "torque")  # the scheduler kinds (scheduler.kind)
SIGNAL_SLACK = 30  # seconds Slurm may send --signal early (its time-limit check runs every 30 s)
BATCH_LAUNCHERS = ("mpiexec", "srun")
SKIPPABLE = (
    "job-name",
    "ntasks",
    "cpus-per-task",
    "mem",
    "time",
    "partition",
    "account",
    "qos",
    "nodes",
    "requeue",
    "signal",
)
BINDING_MODES = ("auto", "none", "cores")
BINDING_POLICIES = ("compact", "spread")
BINDING_NEAR = ("none", "nic")
TRANSPORTS = ("auto", "ucx", "ofi", "tcp")
MASTER_MODES = ("rank0", "client")
WORLDS = ("workers", "all")  # mpi.world

# Thread pools a worker's libraries start; each gets the worker's thread count so that
# workers x library threads never oversubscribe a node.
THREAD_LIMIT_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# The variables by which a transport is chosen (t2mpi.net.choice.choose writes them).
TRANSPORT_PREFIXES = ("OMPI_MCA_", "UCX_", "FI_", "I_MPI_", "MPICH_CH4_", "PMIX_MCA_")

_FIELDS = (
    "name worker worker_dir workers resources config jobs_dir scratch_dir mpi timeouts master batch "
    "binding network max_restarts keep_scratch source"
)


class JobSpec(namedtuple("JobSpec", _FIELDS)):
    """A resolved job. worker is "module:Class", imported from worker_dir (the job file's folder);
    jobs_dir and scratch_dir are absolute (scratch_dir None: the node's temporary folder);
    config is the user's free-form mapping: treat it as read-only."""

    __slots__ = ()

    @property
    def world_size(self) -> int:
        return self.workers + 1

    def to_dict(self) -> dict[str, Any]:
        return {k: (v._asdict() if hasattr(v, "_asdict") else v) for k, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Rebuild a spec written by to_dict (a resolved spec.json), without re-validating."""
        d = {k: data[k] for k in cls._fields}
        d["resources"] = Resources(**d["resources"])
        mpi = d["mpi"]
        d["mpi"] = MpiOptions(
            mpi["launcher"],
            tuple(mpi["args"]),
            tuple(tuple(p) for p in mpi["env"]),
            mpi.get("world", DEFAULTS["mpi"]["world"]),  # job folders made before these keys
            mpi.get("oversubscribe", DEFAULTS["mpi"]["oversubscribe"]),
        )
        d["timeouts"] = Timeouts(**d["timeouts"])
        b = dict(d["batch"])
        for key in ("directives", "skip"):
            b[key] = tuple(b[key])
        b["prologue"] = tuple(tuple(words) for words in b["prologue"])
        d["batch"] = Batch(**b)
        d["binding"] = BindingOptions(**d["binding"])
        d["network"] = Network(**d["network"])
        return cls(**d)


def parse_size(text: Any) -> int:
    """'512M' -> bytes. Units are binary as in Slurm (K, M, G, T, P; KB/KiB alike)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"expected a size such as 512M or 4G, got {text!r}")
    if isinstance(text, int) or text.strip().isdigit():
        raise ValueError(f"size {text!r} has no unit; write e.g. {text}M or {text}G")
    m = re.fullmatch(_SIZE_RE, text, re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot read size {text!r}; write e.g. 512M, 4G or 1.5T")
    size = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if size >= 2**63:
        raise ValueError(f"size {text!r} is too large; at most 8191P")
    value = int(size)
    if value <= 0:
        raise ValueError(f"size {text!r} must be more than zero")
    return value


def parse_walltime(value: Any) -> int:
    """'1-02:03:04', '02:03:04', '03:04' (MM:SS) or minutes (int or digits) -> seconds."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    m = re.fullmatch(_TIME_RE, text) if text is not None else None
    if m is None:
        raise ValueError(f"cannot read walltime {value!r}; write HH:MM:SS, D-HH:MM:SS or minutes")
    d, h, mi, sec, mm, ss, minutes = m.groups()
    if minutes is not None:
        total = int(minutes) * 60
    elif mm is not None:
        total = int(mm) * 60 + int(ss)
    else:
        total = int(d or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + int(sec)
    if total <= 0:
        raise ValueError(f"walltime {value!r} must be more than zero")
    return total


def absolute_path(path: str | None, home: str) -> str | None:
    """A folder from the spec, absolute: ~ is `home`, symbolic links resolved."""
    if path is None:
        return None
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return os.path.realpath(path)


# ---------------------------------------------------------------- overrides and loading


def site_config_path(environ: Mapping[str, str]) -> str | None:
    explicit = environ.get(ENV_CONFIG)
    if explicit:
        if not os.path.isfile(explicit):
            raise SpecError(f"${ENV_CONFIG}={explicit}: no such file")
        return explicit
    default = os.path.join(os.path.expanduser(environ.get("HOME", "~")), ".config", "t2mpi", "config.yaml")
    return default if os.path.isfile(default) else None


def default_jobs_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where job folders are when no job file says: the site config's jobs_dir, else the default."""
    environ = os.environ if environ is None else environ
    site = site_config_path(environ)
    jobs_dir = read_yaml(site, {}).get("jobs_dir") if site else None
    if not isinstance(jobs_dir, str) or not jobs_dir or not jobs_dir.isprintable():
        jobs_dir = DEFAULTS["jobs_dir"]
    return absolute_path(jobs_dir, environ.get("HOME") or os.path.expanduser("~")) or jobs_dir


def load(
    job_file: str | os.PathLike[str],
    *,
    workers: int | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobSpec:
    """Resolve a job file with its layers into a JobSpec; raise SpecError naming file:line and key."""
    environ = os.environ if environ is None else environ
    job_path = os.fspath(job_file)
    if not os.path.isfile(job_path):
        raise SpecError(f"{job_path}: no such job file")
    where: Where = {}
    layers: dict[tuple[str, ...], int] = {}
    data = deep_copy(DEFAULTS)
    site = site_config_path(environ)
    if site is not None:
        site_data = read_yaml(site, where)
        for key in ("name", "worker", "workers"):
            if key in site_data:
                raise SpecError(f"{where[(key,)]}: '{key}' belongs in a job file, not the site config")
        data = merge(data, site_data)
        layers.update(dict.fromkeys(where, 1))
    if environ.get(ENV_MPIEXEC):
        data = apply_override(data, ("mpi", "launcher"), environ[ENV_MPIEXEC])
        where[("mpi", "launcher")] = f"${ENV_MPIEXEC}"
        layers[("mpi", "launcher")] = 1
    job_where: Where = {}
    data = merge(data, read_yaml(job_path, job_where))
    where.update(job_where)
    layers.update(dict.fromkeys(job_where, 2))
    if workers is not None:
        data["workers"] = workers
        where[("workers",)] = "-n/--workers"
        layers[("workers",)] = 3
    for text in overrides:
        path, value = parse_override(text)
        data = apply_override(data, path, value)
        where[path] = f"--set {'.'.join(path)}"
        layers[path] = 3
    from .validate import validate

    return validate(data, where, layers, job_path, environ.get("HOME") or os.path.expanduser("~"))
