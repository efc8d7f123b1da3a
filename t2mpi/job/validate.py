"""Checking the merged layers of a job spec, one function per section.

Every error names where the bad value came from (file:line, a --set option, $T2MPI_MPIEXEC or
the defaults) and its key path. Only the client imports this module (t2mpi.job.spec.load);
ranks rebuild a resolved spec with JobSpec.from_dict and never validate again.
"""

from __future__ import annotations

import os
import re

from ..errors import SpecError
from .layers import kind_of as _kind
from .spec import (
    BATCH_LAUNCHERS,
    BINDING_MODES,
    BINDING_NEAR,
    BINDING_POLICIES,
    MASTER_MODES,
    REQUIRED,
    SCHEDULERS,
    SIGNAL_SLACK,
    SKIPPABLE,
    TOP_KEYS,
    TRANSPORTS,
    WORLDS,
    Batch,
    BindingOptions,
    JobSpec,
    MpiOptions,
    Network,
    Resources,
    Timeouts,
    absolute_path,
    parse_size,
    parse_walltime,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .layers import Where

_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_WORKER_RE = r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)"
_ENV_NAME_RE = r"[A-Za-z_][A-Za-z0-9_]*"
_SITE_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
_MAX_SECONDS = 1e9  # a timeout's ceiling (31 years): a lock's wait overflows near 9.2e9


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
        return SpecError(
            f"{where}: unknown key '{_dotted(path)}'{hint} (valid keys here: {', '.join(sorted(allowed))})"
        )

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

    def string(
        self, path: tuple[str, ...], pattern: str | None = None, hint: str = "", optional: bool = False
    ) -> str | None:
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


def validate(
    data: dict[str, Any], where: Where, layers: dict[tuple[str, ...], int], job_file: str, home: str
) -> JobSpec:
    """The JobSpec of the merged layers `data`, or a SpecError naming where a bad value came from."""
    c = _Check(data, where, layers)
    c.mapping((), TOP_KEYS)
    for key in REQUIRED:
        if data.get(key) is None:
            raise SpecError(f"{job_file}: required key '{key}' is missing")
    name = c.string(
        ("name",), _NAME_RE, "use letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)"
    )
    worker = c.string(("worker",), _WORKER_RE, "write module:Class, e.g. hello:Hello")
    workers = c.integer(("workers",), 1)
    max_restarts = c.integer(("max_restarts",), 0)
    keep_scratch = c.get(("keep_scratch",))
    if not isinstance(keep_scratch, bool):
        raise c.fail(("keep_scratch",), f"must be true or false, got {_kind(keep_scratch)} {keep_scratch!r}")
    resources = _resources(c)
    if not isinstance(c.get(("config",)), dict):
        raise c.fail(("config",), f"must be a mapping, got {_kind(c.get(('config',)))}")
    mpi = _mpi(c)
    timeouts = _timeouts(c)
    master = c.string(("master",))
    if master not in MASTER_MODES:
        raise c.fail(("master",), f"{master!r} is not a master mode; use one of {', '.join(MASTER_MODES)}")
    jobs_dir, scratch_dir = _folders(c, home)
    batch = _batch(c)
    binding = _binding(c)
    network = _network(c)
    return JobSpec(
        name=name,
        worker=worker,
        worker_dir=os.path.dirname(os.path.realpath(job_file)),
        workers=workers,
        resources=resources,
        config=data["config"],
        jobs_dir=jobs_dir,
        scratch_dir=scratch_dir,
        mpi=mpi,
        timeouts=timeouts,
        master=master,
        batch=batch,
        binding=binding,
        network=network,
        max_restarts=max_restarts,
        keep_scratch=keep_scratch,
        source=str(job_file),
    )


def _resources(c: _Check) -> Resources:
    c.mapping(("resources",), Resources._fields)
    cpus = c.integer(("resources", "cpus"), 1)
    threads = c.integer(("resources", "threads"), 1)
    if threads > cpus:
        raise c.fail(
            ("resources", "threads"),
            f"{threads} threads need at least {threads} cpus, "
            f"but resources.cpus is {cpus} (a worker's T threads can use at most T cores)",
        )
    memory = c.converted(("resources", "memory"), parse_size)
    data_memory = None
    if c.get(("resources", "data_memory")) is not None:
        data_memory = c.converted(("resources", "data_memory"), parse_size)
        if data_memory > memory:
            raise c.fail(
                ("resources", "data_memory"),
                f"{data_memory} bytes is more than resources.memory ({memory} bytes); a worker's data "
                "operations hold part of its memory",
            )
    return Resources(cpus, threads, memory, data_memory)


def _mpi(c: _Check) -> MpiOptions:
    c.mapping(("mpi",), MpiOptions._fields)
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
    world = c.string(("mpi", "world"))
    if world not in WORLDS:
        raise c.fail(("mpi", "world"), f"{world!r}: use {' or '.join(WORLDS)}")
    oversubscribe = c.get(("mpi", "oversubscribe"))
    if not isinstance(oversubscribe, bool):
        raise c.fail(("mpi", "oversubscribe"), f"must be true or false, got {_kind(oversubscribe)} {oversubscribe!r}")
    return MpiOptions(
        launcher,
        tuple(str(a) for a in args),
        tuple((str(k), _env_value(v)) for k, v in env.items()),
        world,
        oversubscribe,
    )


def _timeouts(c: _Check) -> Timeouts:
    c.mapping(("timeouts",), Timeouts._fields)
    return Timeouts(
        *(
            None if k == "progress" and c.get(("timeouts", k)) is None else c.seconds(("timeouts", k))
            for k in Timeouts._fields
        )
    )


def _folders(c: _Check, home: str) -> tuple[str | None, str | None]:
    jobs_dir = c.string(("jobs_dir",))
    scratch_dir = c.string(("scratch_dir",), optional=True)
    for key, folder in (("jobs_dir", jobs_dir), ("scratch_dir", scratch_dir)):
        if folder is not None and not folder.isprintable():
            raise c.fail((key,), f"{folder!r} has a newline or another control character")
    return absolute_path(jobs_dir, home), absolute_path(scratch_dir, home)


def _binding(c: _Check) -> BindingOptions:
    c.mapping(("binding",), BindingOptions._fields)
    near = c.string(("binding", "near"))
    if near not in BINDING_NEAR:
        raise c.fail(("binding", "near"), f"{near!r}: use {' or '.join(BINDING_NEAR)}")
    mode = c.string(("binding", "mode"))
    if mode not in BINDING_MODES:
        raise c.fail(("binding", "mode"), f"{mode!r}: use one of {', '.join(BINDING_MODES)}")
    policy = c.string(("binding", "policy"))
    if policy not in BINDING_POLICIES:
        raise c.fail(("binding", "policy"), f"{policy!r}: use {' or '.join(BINDING_POLICIES)}")
    return BindingOptions(mode, policy, near)


def _network(c: _Check) -> Network:
    c.mapping(("network",), Network._fields)
    transport = c.string(("network", "transport"))
    if transport not in TRANSPORTS:
        raise c.fail(("network", "transport"), f"{transport!r}: use one of {', '.join(TRANSPORTS)}")
    names = {
        key: c.string(
            ("network", key), _SITE_NAME_RE.replace("+", "+,;:"), "use letters, digits and _ . + - , ; :", optional=True
        )
        for key in Network._fields[1:]
    }
    return Network(transport, **names)


def _batch(c: _Check) -> Batch:
    """The scheduler section, with the chosen kind's own subsection (site defaults) merged in."""
    section = c.mapping(("scheduler",), (*Batch._fields, *SCHEDULERS))
    kind = c.string(("scheduler", "kind"))
    if kind not in SCHEDULERS:
        raise c.fail(
            ("scheduler", "kind"), f"{kind!r} is not a scheduler t2mpi knows; use one of {', '.join(SCHEDULERS)}"
        )
    for other in SCHEDULERS:
        if other in section:
            c.mapping(("scheduler", other), Batch._fields[1:])
    if kind in section:  # site defaults for this scheduler, unless a later layer set the key itself
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
        names[key] = c.string(path + (key,), _SITE_NAME_RE, "use letters, digits, '_', '.', '+', '-'", optional=True)
    nodes = None if c.get(path + ("nodes",)) is None else c.integer(path + ("nodes",), 1)
    launcher = c.string(path + ("launcher",))
    if launcher not in BATCH_LAUNCHERS:
        raise c.fail(path + ("launcher",), f"{launcher!r}: use one of {', '.join(BATCH_LAUNCHERS)}")
    directives = _lines(c, path + ("directives",))
    skip = _lines(c, path + ("skip",))
    for name in skip:
        if name not in SKIPPABLE:
            raise c.fail(path + ("skip",), f"{name!r} is not a generated directive; one of {', '.join(SKIPPABLE)}")
    prologue = _prologue(c, path + ("prologue",))
    python = c.string(path + ("python",), optional=True)
    signal = c.integer(path + ("signal",), 0)
    if signal and seconds is not None and c.get(("max_restarts",)) and seconds <= signal + SIGNAL_SLACK:
        raise c.fail(
            path + ("signal",),
            f"{signal} s before a walltime of {seconds} s: Slurm may send it "
            f"up to {SIGNAL_SLACK} s early, so every run would be stopped as it starts; "
            "ask for a longer time or a smaller signal",
        )
    if python is not None and (not os.path.isabs(python) or not python.isprintable()):
        raise c.fail(path + ("python",), f"{python!r} must be an absolute path")
    return Batch(
        kind,
        seconds,
        names["partition"],
        names["account"],
        names["qos"],
        nodes,
        launcher,
        tuple(directives),
        tuple(skip),
        tuple(prologue),
        python,
        signal,
    )


def _prologue(c: _Check, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    import shlex

    prologue = []
    for line in _lines(c, path):
        try:
            words = tuple(shlex.split(line))
        except ValueError as exc:
            raise c.fail(path, f"{line!r}: {exc}") from None
        if words:
            prologue.append(words)
    return prologue


def _lines(c: _Check, path: tuple[str, ...]) -> list[str]:
    value = c.get(path)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise c.fail(path, f"must be a list of strings, got {_kind(value)}")
    for v in value:
        if not v.isprintable():
            raise c.fail(path, f"{v!r} has a newline or another control character")
    return value


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
