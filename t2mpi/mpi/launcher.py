"""The MPI launcher: find it, recognise its flavour, and render its argument list (pure)."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple

from ..errors import LaunchError
from ..job.spec import THREAD_LIMIT_VARS, JobSpec
from ..procs import CommandError
from ..procs import run as run_command
from .build import INTELMPI, MPICH, OPENMPI, UNKNOWN  # noqa: F401 (re-exported: the flavours)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MpiLauncher = namedtuple("MpiLauncher", "path flavour version")


class Host(namedtuple("Host", "cpus root ofi_fabric slurm_allocation name", defaults=(False, None))):
    """Facts about the launching node that change the command line: the CPUs this process may
    use, whether it runs as root (Open MPI refuses unless told), whether an OFI-capable fabric
    (InfiniBand, Omni-Path) is present (None: not known where the command is made, as for a
    batch job's nodes), whether it runs inside a Slurm allocation (salloc, sbatch: the launcher
    places ranks on the allocation's nodes), its node name (None: not known)."""

    __slots__ = ()

    @classmethod
    def here(cls, sysfs: str = "/sys") -> Host:
        def has_entries(folder: str) -> bool:
            return os.path.isdir(folder) and bool(os.listdir(folder))

        fabric = any(has_entries(os.path.join(sysfs, "class", name)) for name in ("infiniband", "hfi1"))
        return cls(
            len(os.sched_getaffinity(0)), os.geteuid() == 0, fabric, "SLURM_JOB_ID" in os.environ, os.uname().nodename
        )


def find(spec: JobSpec, python: str) -> str:
    """The launcher's path: mpi.launcher (job file, site config or $T2MPI_MPIEXEC), else the
    mpiexec beside this Python (a venv's MPI wheel), else mpiexec or mpirun on PATH."""
    wanted = spec.mpi.launcher
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            raise LaunchError(
                f"mpi.launcher: '{wanted}' is not an executable "
                f"{'file' if os.sep in wanted else 'on PATH'}; "
                "set mpi.launcher or $T2MPI_MPIEXEC to your MPI's mpiexec"
            )
        return found
    beside = os.path.join(os.path.dirname(python), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise LaunchError(
        "no MPI launcher: mpiexec is neither beside this Python nor on PATH; "
        "install one (pip install mpich) or set mpi.launcher / $T2MPI_MPIEXEC"
    )


def recognise(version_text: str) -> tuple[str, str]:
    """(flavour, version) from the output of `mpiexec --version`."""
    first = next((line.strip() for line in version_text.splitlines() if line.strip()), "")
    text = version_text.lower()
    if "open mpi" in text or "open-mpi" in text or "openrte" in text:
        return OPENMPI, first.split()[-1] if first else ""
    if "intel(r) mpi" in text:
        return INTELMPI, first
    if "hydra" in text or "mpich" in text:
        for line in version_text.splitlines():
            if line.strip().lower().startswith("version:"):
                return MPICH, line.split(":", 1)[1].strip()
        return MPICH, ""
    return UNKNOWN, first


def detect(path: str, cache: str | None = "~/.cache/t2mpi/launchers.json") -> MpiLauncher:
    """The launcher's flavour and version from its --version, remembered (in `cache`) for as
    long as the file at `path` is the same file (inode, size, modification time)."""
    try:
        real, key = _file_key(path)
    except OSError as exc:
        raise LaunchError(f"MPI launcher {path}: {exc.strerror or exc}") from None
    cache_file = os.path.expanduser(cache) if cache else None
    known = _read_cache(cache_file)
    hit = known.get(real)
    if hit and hit.get("key") == key:
        return MpiLauncher(path, hit["flavour"], hit["version"])
    try:
        done = run_command([path, "--version"], timeout=30)
    except CommandError as exc:
        raise LaunchError(f"MPI launcher {path} does not answer --version: {exc}") from None
    flavour, version = recognise(done.stdout + done.stderr)
    if cache_file and flavour != UNKNOWN:
        from ..job.files import keep_cache

        known[real] = {"key": key, "flavour": flavour, "version": version}
        keep_cache(cache_file, known)  # best effort: a miss costs a --version
    return MpiLauncher(path, flavour, version)


def components(mpi: MpiLauncher, cache: str | None = "~/.cache/t2mpi/launchers.json") -> dict:
    """What the MPI was built with (t2mpi.mpi.build.mpi_components: ompi_info, mpichversion),
    remembered like detect()'s answer while the launcher is the same file."""
    from ..job.files import keep_cache
    from .build import mpi_components

    real, key = _file_key(mpi.path)
    cache_file = os.path.expanduser(cache) if cache else None
    known = _read_cache(cache_file)
    hit = known.get(real, {})
    if hit.get("key") == key and "components" in hit:
        return hit["components"]
    found = mpi_components(mpi.flavour, mpi.path)
    if cache_file:
        known[real] = {**hit, "key": key, "flavour": mpi.flavour, "version": mpi.version, "components": found}
        keep_cache(cache_file, known)  # best effort: a miss costs another query
    return found


def _file_key(path: str) -> tuple[str, list[int]]:
    """The launcher's real path and what tells that it is still the same file."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, [st.st_ino, st.st_size, st.st_mtime_ns]


def _read_cache(cache_file: str | None) -> dict:
    import json

    try:
        with open(cache_file or "", encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def rank_environment(spec: JobSpec, network: dict[str, str] | None = None) -> dict[str, str]:
    """What every rank's environment gets: the chosen transport's settings, the thread-pool
    limits, and the job's own mpi.env over both."""
    env = dict(network or {})
    for var in THREAD_LIMIT_VARS:
        env[var] = str(spec.resources.threads)
    env.update(spec.mpi.env)
    return env


def mpiexec_args(
    mpi: MpiLauncher, nprocs: int, host: Host, env: dict[str, str], slots: int | None = None, idle: int = 0
) -> list[str]:
    """The launcher and its options for `nprocs` ranks, each with `env`, where `slots` processes
    will run in all (spawned ones included), `idle` of them mostly asleep (the job master) on
    this node alone (no hosts given); the program follows."""
    argv = [mpi.path, "-n", str(nprocs)]
    if mpi.flavour == OPENMPI:
        if host.root:
            argv.append("--allow-run-as-root")
        # t2mpi places and binds its ranks itself; Open MPI's own binding would fight it.
        argv += ["--bind-to", "none"]
        total = slots or nprocs
        if total > host.cpus and total - idle <= host.cpus and host.name and not host.slurm_allocation:
            # Only the idle master lacks a core: give this node a slot for it. Oversubscribed
            # ranks would all yield the CPU in every wait (Open MPI forces yield_when_idle
            # then), which costs the workers' messages latency for a rank that sleeps.
            argv += ["--host", f"{host.name}:{total}"]
        elif total > host.cpus:
            argv += ["--map-by", ":OVERSUBSCRIBE"]
        if host.ofi_fabric is False and "OMPI_MCA_btl" not in env:
            # No OFI fabric: the ofi BTL only costs a one-second shutdown sleep per launch.
            # (A transport choice that names the BTLs says it in the environment instead:
            # a command-line --mca would override it. ofi_fabric None: the transport is
            # chosen when a batch job starts, and its environment says it.)
            argv += ["--mca", "btl", "^ofi"]
    elif mpi.flavour not in (MPICH, INTELMPI):
        raise LaunchError(
            f"MPI launcher {mpi.path}: not recognised as Open MPI, MPICH or Intel MPI "
            f"(--version said: {mpi.version!r}); set mpi.launcher to one of those"
        )
    return argv + env_args(mpi.flavour, env)


def env_args(flavour: str, env: dict[str, str]) -> list[str]:
    """The launcher options that give every rank `env`: -x KEY=VALUE (Open MPI), -genv KEY VALUE
    (MPICH, Intel MPI)."""
    if flavour == OPENMPI:
        return [word for key, value in sorted(env.items()) for word in ("-x", f"{key}={value}")]
    if flavour in (MPICH, INTELMPI):
        return [word for key, value in sorted(env.items()) for word in ("-genv", key, value)]
    raise LaunchError(f"MPI flavour {flavour!r}: not Open MPI, MPICH or Intel MPI")


def _names_launcher(args: tuple[str, ...]) -> bool:
    return any(a.split("=")[0] in ("-launcher", "-bootstrap", "--launcher", "--bootstrap") for a in args)


_HOST_OPTIONS = (
    "--host",
    "-host",
    "-H",
    "--hostfile",
    "-hostfile",
    "--machinefile",
    "-machinefile",
    "--default-hostfile",
    "-f",
    "-hosts",
    "--hosts",
)


def _names_hosts(args: tuple[str, ...]) -> bool:
    return any(a.split("=")[0] in _HOST_OPTIONS for a in args)


def command(
    mpi: MpiLauncher,
    spec: JobSpec,
    job_dir: str,
    python: str,
    host: Host,
    quiet: bool = True,
    network: dict[str, str] | None = None,
    late: Sequence[str] = (),
) -> list[str]:
    """The argument list that runs `spec` as W+1 ranks of one MPI launch (no shell involved);
    `network`: the transport's environment (t2mpi.net.choice.choose); `late`: launcher words after
    the environment's (a batch script's transport, chosen when the job starts)."""
    env = rank_environment(spec, network)
    idle = 0 if _names_hosts(spec.mpi.args) else 1  # the master, when all ranks run here
    if spec.master == "client":
        # The master's part alone, as a one-rank launch; it spawns the workers.
        argv = mpiexec_args(mpi, 1, host, env, slots=spec.world_size, idle=idle)
        if host.slurm_allocation and mpi.flavour == MPICH and not _names_launcher(spec.mpi.args):
            # Hydra's Slurm launcher cannot spawn onto nodes it already serves (an assertion in
            # its proxy set-up); its ssh launcher can, over the allocation's node list.
            argv += ["-launcher", "ssh"]
    else:
        argv = mpiexec_args(mpi, spec.world_size, host, env, idle=idle)
    argv += [*late, *spec.mpi.args]
    # -P: the installed t2mpi, never a t2mpi folder in the working directory
    argv += [python, "-P", "-m", "t2mpi.launch", "--job-dir", job_dir]
    if quiet:
        argv.append("--quiet")
    return argv
