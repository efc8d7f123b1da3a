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
from .layers import kind_of as _kind

TYPE_CHECKING = False   # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

ENV_CONFIG = "T2MPI_CONFIG"
ENV_MPIEXEC = "T2MPI_MPIEXEC"

# Patterns are compiled on first use (re caches them): workers import this module for JobSpec
# alone, and compiling them there would cost every rank start-up time.
_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_WORKER_RE = r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)"
_SIZE_RE = r"\s*(\d+(?:\.\d+)?)\s*([KMGTP])(?:I?B)?\s*"
_ENV_NAME_RE = r"[A-Za-z_][A-Za-z0-9_]*"
_MAX_SECONDS = 1e9   # a timeout's ceiling (31 years): a lock's wait overflows near 9.2e9
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

# The spec's parts are named tuples: frozen, picklable to every rank, and cheap to import there
# (dataclasses would cost a worker 20 ms of start-up).

Resources = namedtuple("Resources", "cpus threads memory")
Resources.__doc__ = "What one worker is given: cores, the threads that run its code, memory in bytes."
MpiOptions = namedtuple("MpiOptions", "launcher args env")
MpiOptions.__doc__ = "launcher: path or name or None; args: extra launcher arguments; env: ((key, value), ...)."
Timeouts = namedtuple("Timeouts", "start barrier abort heartbeat progress checkpoint")
Timeouts.__doc__ = """Seconds: all ranks joined, a barrier's default, a failed worker's wait for the abort,
silence after which a worker counts as dead (it heartbeats every third of it), (or None)
time without ctx.progress() after which a worker counts as hung, and the wait for the workers'
checkpoint after a stop request (preemption, walltime) before the job ends without one."""

# The packaged defaults: the lowest layer, under the site config, the job file and the command line.
DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "max_restarts": 0,       # re-runs of a failed or preempted job from its last committed checkpoint
    "master": "rank0",       # rank0: MPI rank 0 of the launch; client: a one-rank launch that spawns
    "binding": {"mode": "none", "policy": "compact", "near": "none"},   # cores: pin workers, threads, memory
    "network": {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None},
    "resources": {"cpus": 1, "threads": 1, "memory": "1G"},
    "config": {},
    "jobs_dir": "./t2mpi-jobs",
    "scratch_dir": None,     # None: the node's temporary folder ($TMPDIR or /tmp) on each node
    "mpi": {
        "launcher": None,    # None: $T2MPI_MPIEXEC, then mpiexec beside Python, then on PATH
        "args": [],          # extra launcher arguments, before the program
        "env": {},           # extra environment for every rank
    },
    "scheduler": {
        "kind": "slurm",     # slurm, pbs or torque (t2mpi script/submit --scheduler)
        "time": None,        # walltime: [D-]HH:MM:SS, MM:SS or minutes; None: the queue's default
        "partition": None,   # Slurm partition, PBS queue
        "account": None,
        "qos": None,         # Slurm only
        "nodes": None,       # None: as many as the scheduler gives
        "launcher": "mpiexec",  # mpiexec (the MPI's own) or srun
        "directives": [],    # extra directive lines, e.g. ["--exclusive"] or ["-l place=scatter"]
        "skip": [],          # generated directives to leave out (site quirks), e.g. [mem]
        "prologue": [],      # commands run first, e.g. ["module load python/3.12"]
        "python": None,      # Python on the compute nodes; None: the client's
        "signal": 60,        # Slurm: seconds before the walltime to ask for a checkpoint
                             # (--signal=B:USR1@N, with max_restarts > 0); 0: no signal
        # slurm: {...}, pbs: {...}, torque: {...}: site defaults for that scheduler only
    },
    "timeouts": {
        "start": 120.0,      # seconds for all ranks to join
        "barrier": 300.0,    # default timeout of ctx.controller.barrier()
        "abort": 10.0,       # seconds a failed worker waits for the master's abort
        "heartbeat": 60.0,   # seconds without a heartbeat before a worker counts as dead
        "progress": None,    # seconds without ctx.progress() before a worker counts as hung
        "checkpoint": 30.0,  # seconds for the workers' checkpoint after a stop request
    },
}

Batch = namedtuple("Batch", "kind time partition account qos nodes launcher directives skip prologue python "
                           "signal")
Batch.__doc__ = """The batch-scheduler part of a job (t2mpi script / submit): kind (slurm, pbs, torque),
time (walltime in seconds or None), partition (PBS: queue), account, qos, nodes (or None),
launcher (mpiexec or srun), directives (extra directive lines), skip (generated directives to
leave out), prologue (commands, each a tuple of words), python (on the compute nodes, or None),
signal (seconds before the walltime at which Slurm asks for a checkpoint; 0: never)."""

SCHEDULERS = ("slurm", "pbs", "torque")
SIGNAL_SLACK = 30   # seconds Slurm may send --signal early (its time-limit check runs every 30 s)
BATCH_LAUNCHERS = ("mpiexec", "srun")
SKIPPABLE = ("job-name", "ntasks", "cpus-per-task", "mem", "time", "partition", "account", "qos", "nodes",
             "requeue", "signal")

Binding = namedtuple("Binding", "mode policy near")
Binding.__doc__ = """mode: none (the OS places threads) or cores (each worker pinned to its planned cores, its
threads each to one, its memory to their NUMA domain); policy: compact or spread on each node;
near: nic (fill the NUMA domain of the active InfiniBand/RoCE/Omni-Path adapter first) or none."""
BINDING_MODES = ("none", "cores")

Network = namedtuple("Network", "transport interface ucx_tls provider")
Network.__doc__ = """transport: auto (what the node's fabric does best), ucx, ofi or tcp; interface: the TCP
interface (None: the first one up, not lo); ucx_tls: UCX_TLS if asked; provider: the libfabric
provider (None: the best usable one)."""
TRANSPORTS = ("auto", "ucx", "ofi", "tcp")

# Thread pools a worker's libraries start; each gets the worker's thread count so that
# workers x library threads never oversubscribe a node.
THREAD_LIMIT_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")

# The variables by which a transport is chosen (t2mpi.net.choice.choose writes them).
TRANSPORT_PREFIXES = ("OMPI_MCA_", "UCX_", "FI_", "I_MPI_", "MPICH_CH4_", "PMIX_MCA_")

_FIELDS = ("name worker worker_dir workers resources config jobs_dir scratch_dir mpi timeouts master batch "
           "binding network max_restarts source")
MASTER_MODES = ("rank0", "client")


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
        d["mpi"] = MpiOptions(mpi["launcher"], tuple(mpi["args"]), tuple(tuple(p) for p in mpi["env"]))
        d["timeouts"] = Timeouts(**d["timeouts"])
        b = dict(d["batch"])
        for key in ("directives", "skip"):
            b[key] = tuple(b[key])
        b["prologue"] = tuple(tuple(words) for words in b["prologue"])
        d["batch"] = Batch(**b)
        d["binding"] = Binding(**d["binding"])
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


def _dotted(path: tuple[str, ...]) -> str:
    """A key path for a one-line message (a key with a newline or such is shown quoted)."""
    return ".".join(p if p.isprintable() else repr(p) for p in path)


# ---------------------------------------------------------------- validation

class _Check:
    """Validates the merged layers, naming where each bad value came from."""

    def __init__(self, data: dict[str, Any], where: Where, layers: dict[tuple[str, ...], int]):
        self.data = data
        self.where = where
        self.layers = layers

    def layer(self, path: tuple[str, ...]) -> int:
        """Which layer set the value at `path`: 0 defaults, 1 site config, 2 job file, 3 command line."""
        return self.layers.get(path, 0)

    def at(self, path: tuple[str, ...]) -> str:
        """Where the value at `path` was set: the deepest layer entry at or above it, else one
        below it (a --set of a misspelt nested key), else the packaged defaults."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.where:
                return self.where[path[:n]]
        below = [where for key, where in self.where.items() if key[: len(path)] == path]
        return below[0] if below else "defaults"

    def fail(self, path: tuple[str, ...], message: str) -> SpecError:
        return SpecError(f"{self.at(path)}: {_dotted(path)}: {message}")

    def get(self, path: tuple[str, ...]) -> Any:
        value: Any = self.data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def mapping(self, path: tuple[str, ...], allowed: Sequence[str] | None) -> dict[str, Any]:
        value = self.get(path)
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {_kind(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise self.unknown(path + (str(key),), allowed)
        return value

    def unknown(self, path: tuple[str, ...], allowed: Sequence[str]) -> SpecError:
        import difflib

        close = difflib.get_close_matches(path[-1], allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        where = self.at(path)
        return SpecError(f"{where}: unknown key '{_dotted(path)}'{hint} "
                         f"(valid keys here: {', '.join(sorted(allowed))})")

    def integer(self, path: tuple[str, ...], minimum: int) -> int:
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be a whole number, got {_kind(value)} {value!r}")
        if value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        return value

    def seconds(self, path: tuple[str, ...]) -> float:
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.fail(path, f"must be a number of seconds above 0, got {value!r}")
        if not value <= _MAX_SECONDS:
            raise self.fail(path, f"must be at most {_MAX_SECONDS:g} seconds, got {value!r}")
        return float(value)

    def string(self, path: tuple[str, ...], pattern: str | None = None,
               hint: str = "", optional: bool = False) -> str | None:
        value = self.get(path)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_kind(value)}")
        if not value:
            raise self.fail(path, "must not be empty")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.fail(path, f"{value!r} is not valid: {hint}")
        return value

    def converted(self, path: tuple[str, ...], convert: Callable[[Any], Any]) -> Any:
        try:
            return convert(self.get(path))
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None


_TOP = ("name", "worker", "workers", "max_restarts", "master", "binding", "network", "resources", "config", "jobs_dir",
        "scratch_dir", "mpi", "scheduler", "timeouts")
_SCHEDULER = ("kind", "time", "partition", "account", "qos", "nodes", "launcher", "directives", "skip",
              "prologue", "python", "signal")
_SITE_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
_TIME_RE = r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)|(\d+):(\d\d)|(\d+)"
_RESOURCES = ("cpus", "threads", "memory")
_MPI = ("launcher", "args", "env")
_TIMEOUTS = ("start", "barrier", "abort", "heartbeat", "progress", "checkpoint")


def _absolute(path: str | None, home: str) -> str | None:
    if path is None:
        return None
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return os.path.realpath(path)


def _validate(data: dict[str, Any], where: Where, layers: dict[tuple[str, ...], int], job_file: str,
              home: str) -> JobSpec:
    c = _Check(data, where, layers)
    c.mapping((), _TOP)
    for key in ("name", "worker"):
        if data.get(key) is None:
            raise SpecError(f"{job_file}: required key '{key}' is missing")
    name = c.string(("name",), _NAME_RE, "use letters, digits, '_', '.', '-' (at most 64, "
                    "starting with a letter or digit)")
    worker = c.string(("worker",), _WORKER_RE, "write module:Class, e.g. hello:Hello")
    workers = c.integer(("workers",), 1)
    max_restarts = c.integer(("max_restarts",), 0)
    c.mapping(("resources",), _RESOURCES)
    cpus = c.integer(("resources", "cpus"), 1)
    threads = c.integer(("resources", "threads"), 1)
    if threads > cpus:
        raise c.fail(("resources", "threads"), f"{threads} threads need at least {threads} cpus, "
                     f"but resources.cpus is {cpus} (a worker's T threads can use at most T cores)")
    memory = c.converted(("resources", "memory"), parse_size)
    if not isinstance(c.get(("config",)), dict):
        raise c.fail(("config",), f"must be a mapping, got {_kind(c.get(('config',)))}")
    c.mapping(("mpi",), _MPI)
    launcher = c.string(("mpi", "launcher"), optional=True)
    args = c.get(("mpi", "args"))
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise c.fail(("mpi", "args"), "must be a list of strings, e.g. [--mca, btl, self,tcp]")
    env = c.mapping(("mpi", "env"), None)
    for key, value in env.items():
        if not re.fullmatch(_ENV_NAME_RE, str(key)):
            raise c.fail(("mpi", "env", str(key)), "is not a valid environment variable name")
        if isinstance(value, (dict, list)) or value is None:
            raise c.fail(("mpi", "env", str(key)), f"must be a string, got {_kind(value)}")
        if not _env_value(value).isprintable():
            raise c.fail(("mpi", "env", str(key)), f"{value!r} has a newline or another control character")
    c.mapping(("timeouts",), _TIMEOUTS)
    timeouts = Timeouts(*(None if k == "progress" and c.get(("timeouts", k)) is None
                          else c.seconds(("timeouts", k)) for k in _TIMEOUTS))
    master = c.string(("master",))
    if master not in MASTER_MODES:
        raise c.fail(("master",), f"{master!r} is not a master mode; use one of {', '.join(MASTER_MODES)}")
    jobs_dir = c.string(("jobs_dir",))
    scratch_dir = c.string(("scratch_dir",), optional=True)
    for key, folder in (("jobs_dir", jobs_dir), ("scratch_dir", scratch_dir)):
        if folder is not None and not folder.isprintable():
            raise c.fail((key,), f"{folder!r} has a newline or another control character")
    batch = _batch(c)
    c.mapping(("binding",), ("mode", "policy", "near"))
    near = c.string(("binding", "near"))
    if near not in ("none", "nic"):
        raise c.fail(("binding", "near"), f"{near!r}: use none or nic")
    bind_mode = c.string(("binding", "mode"))
    if bind_mode not in BINDING_MODES:
        raise c.fail(("binding", "mode"), f"{bind_mode!r}: use one of {', '.join(BINDING_MODES)}")
    policy = c.string(("binding", "policy"))
    if policy not in ("compact", "spread"):
        raise c.fail(("binding", "policy"), f"{policy!r}: use compact or spread")
    c.mapping(("network",), Network._fields)
    transport = c.string(("network", "transport"))
    if transport not in TRANSPORTS:
        raise c.fail(("network", "transport"), f"{transport!r}: use one of {', '.join(TRANSPORTS)}")
    net = {key: c.string(("network", key), _SITE_NAME_RE.replace("+", "+,;:"),
                         "use letters, digits and _ . + - , ; :", optional=True)
           for key in ("interface", "ucx_tls", "provider")}
    return JobSpec(
        name=name, worker=worker, worker_dir=os.path.dirname(os.path.realpath(job_file)),
        workers=workers, resources=Resources(cpus, threads, memory), config=data["config"],
        jobs_dir=_absolute(jobs_dir, home), scratch_dir=_absolute(scratch_dir, home),
        mpi=MpiOptions(launcher, tuple(str(a) for a in args),
                       tuple((str(k), _env_value(v)) for k, v in env.items())),
        timeouts=timeouts, master=master, batch=batch, binding=Binding(bind_mode, policy, near),
        network=Network(transport, **net), max_restarts=max_restarts, source=str(job_file),
    )


def _batch(c: _Check) -> Batch:
    """The scheduler section, with the chosen kind's own subsection (site defaults) merged in."""
    section = c.mapping(("scheduler",), (*_SCHEDULER, *SCHEDULERS))
    kind = c.string(("scheduler", "kind"))
    if kind not in SCHEDULERS:
        raise c.fail(("scheduler", "kind"), f"{kind!r} is not a scheduler t2mpi knows; "
                     f"use one of {', '.join(SCHEDULERS)}")
    for other in SCHEDULERS:
        if other in section:
            c.mapping(("scheduler", other), _SCHEDULER[1:])
    if kind in section:   # site defaults for this scheduler, unless a later layer set the key itself
        merged = dict(section)
        for key, value in section[kind].items():
            if c.layer(("scheduler", kind, key)) >= c.layer(("scheduler", key)):
                merged[key] = value
                c.where[("scheduler", key)] = c.at(("scheduler", kind, key))
        c.data["scheduler"] = merged
    path = ("scheduler",)
    time_text = c.get(path + ("time",))
    seconds = None if time_text is None else c.converted(path + ("time",), parse_walltime)
    names = {}
    for key in ("partition", "account", "qos"):
        names[key] = c.string(path + (key,), _SITE_NAME_RE, "use letters, digits, '_', '.', '+', '-'",
                              optional=True)
    nodes = None if c.get(path + ("nodes",)) is None else c.integer(path + ("nodes",), 1)
    launcher = c.string(path + ("launcher",))
    if launcher not in BATCH_LAUNCHERS:
        raise c.fail(path + ("launcher",), f"{launcher!r}: use one of {', '.join(BATCH_LAUNCHERS)}")
    directives = _lines(c, path + ("directives",))
    skip = _lines(c, path + ("skip",))
    for name in skip:
        if name not in SKIPPABLE:
            raise c.fail(path + ("skip",), f"{name!r} is not a generated directive; "
                         f"one of {', '.join(SKIPPABLE)}")
    prologue = []
    for line in _lines(c, path + ("prologue",)):
        import shlex

        try:
            words = tuple(shlex.split(line))
        except ValueError as exc:
            raise c.fail(path + ("prologue",), f"{line!r}: {exc}") from None
        if words:
            prologue.append(words)
    python = c.string(path + ("python",), optional=True)
    signal = c.integer(path + ("signal",), 0)
    if signal and seconds is not None and c.get(("max_restarts",)) and seconds <= signal + SIGNAL_SLACK:
        raise c.fail(path + ("signal",), f"{signal} s before a walltime of {seconds} s: Slurm may send it "
                     f"up to {SIGNAL_SLACK} s early, so every run would be stopped as it starts; "
                     "ask for a longer time or a smaller signal")
    if python is not None and (not os.path.isabs(python) or not python.isprintable()):
        raise c.fail(path + ("python",), f"{python!r} must be an absolute path")
    return Batch(kind, seconds, names["partition"], names["account"], names["qos"], nodes, launcher,
                 tuple(directives), tuple(skip), tuple(prologue), python, signal)


def _lines(c: _Check, path: tuple[str, ...]) -> list[str]:
    value = c.get(path)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise c.fail(path, f"must be a list of strings, got {_kind(value)}")
    for v in value:
        if not v.isprintable():
            raise c.fail(path, f"{v!r} has a newline or another control character")
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


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


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
    return _absolute(jobs_dir, environ.get("HOME") or os.path.expanduser("~")) or jobs_dir


def load(job_file: str | os.PathLike[str], *, workers: int | None = None,
         overrides: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> JobSpec:
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
    return _validate(data, where, layers, job_path, environ.get("HOME") or os.path.expanduser("~"))
