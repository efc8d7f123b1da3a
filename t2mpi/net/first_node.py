"""The network transport a job runs with, chosen on the node where it starts.

`t2mpi run` chooses on the node it runs on. A batch job chooses when it starts, on its first
compute node, not on the login node that wrote its script (whose fabric and interface names
may differ). Its script runs

    t2mpi_network=$(python -P -m t2mpi.network --job-dir DIR)
    eval "$t2mpi_network"
    exec mpiexec ... "${T2MPI_NETWORK[@]}" python -P -m t2mpi.launch --job-dir DIR

which prints shell text: an `export` line for each variable of the chosen environment and the
array T2MPI_NETWORK of launcher options that give it to every rank (-x for Open MPI, -genv for
MPICH and Intel MPI; none under srun, which passes the whole environment). The choice is kept
in the job folder (network.json, and a `transport` event) and told on stderr (batch.out). A
transport this node cannot give ends the job FAILED, with the reason, before anything starts.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from ..errors import T2mpiError
from ..job import states
from ..mpi import launcher as mpilauncher

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..job.folder import JobDir
    from ..job.spec import JobSpec

ARRAY = "T2MPI_NETWORK"  # the batch script's array of launcher options


def choose_network(spec: JobSpec, mpi: mpilauncher.MpiLauncher, components: dict | None = None) -> Any:
    """The transport for this node (t2mpi.net.fabric.Choice): sysfs first; the UCX and libfabric
    libraries are probed (in a child process) only where a fabric is present or the job asks
    for one. `components`: what the MPI was built with, when already known."""
    from . import choice as netchoice
    from . import fabric

    found = fabric.scan()
    if found.ib_ports or found.opa or spec.network.transport in ("ucx", "ofi") or spec.network.provider:
        found = fabric.probe_libraries(found, mpi.path)
    if components is None:
        components = mpilauncher.components(mpi)
    return netchoice.choose(found, mpi.flavour, components, spec.network._asdict())


def record(mpi: mpilauncher.MpiLauncher) -> dict[str, Any]:
    """What a batch job's first node needs to know of the MPI that submitted it (kept in
    mpi.json): its path, flavour, version and compiled-in components."""
    return {**mpi._asdict(), "components": mpilauncher.components(mpi)}


def described(choice: Any) -> str:
    """One line: the transport and its environment, e.g. "tcp (FI_PROVIDER=tcp FI_TCP_IFACE=eth0)"."""
    if choice.transport is None:
        return "none: " + "; ".join(choice.why)
    env = " ".join(f"{key}={value}" for key, value in sorted(choice.env.items()))
    return f"{choice.transport} ({env})" if env else choice.transport


def shell_text(env: dict[str, str], flavour: str, launcher: str) -> str:
    """The lines a batch script evaluates: `export`s, and the launcher options array."""
    lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    words = [] if launcher == "srun" else mpilauncher.env_args(flavour, env)
    lines.append(f"{ARRAY}=({' '.join(shlex.quote(w) for w in words)})")
    return "\n".join(lines) + "\n"


def at_start(jd: JobDir, host: str) -> str:
    """Choose the transport of the job in `jd` here, keep the choice in its folder, and return
    the shell text for its batch script."""
    from ..job.spec import JobSpec

    spec = JobSpec.from_dict(jd.read_spec())
    known = jd.read_mpi()
    if known:  # as t2mpi submit found it
        mpi = mpilauncher.MpiLauncher(known["path"], known["flavour"], known["version"])
        components = known["components"]
    else:  # a folder made otherwise: the MPI this Python would use
        mpi = mpilauncher.detect(mpilauncher.find(spec, sys.executable))
        components = None
    choice = choose_network(spec, mpi, components)
    # the job's own mpi.env wins over the transport's settings, as in rank_environment
    env = {key: value for key, value in choice.env.items() if key not in dict(spec.mpi.env)}
    text = shell_text(env, mpi.flavour, spec.batch.launcher)
    jd.write_network({"host": host, **choice._asdict(), "env": env})
    jd.append_events(
        [{"t": time.time(), "event": "transport", "host": host, "transport": choice.transport, "env": env}]
    )
    print(f"t2mpi: transport chosen on {host}: {described(choice)}", file=sys.stderr, flush=True)
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m t2mpi.network --job-dir DIR`: a batch job's transport, chosen on its first node."""
    import argparse

    from ..job.folder import JobDir

    parser = argparse.ArgumentParser(prog="python -m t2mpi.network", description=main.__doc__)
    parser.add_argument("--job-dir", required=True, help="the job folder t2mpi submit made")
    args = parser.parse_args(argv)
    jd = JobDir(args.job_dir)
    host = os.uname().nodename
    try:
        sys.stdout.write(at_start(jd, host))
    except (T2mpiError, OSError, ValueError, KeyError, TypeError) as exc:
        why = str(exc) if isinstance(exc, T2mpiError) else f"{args.job_dir}: cannot read the job: {exc!r}"
        print(f"t2mpi: on {host}: {why}", file=sys.stderr, flush=True)
        try:
            jd.settle(states.FAILED, f"on {host}: {why}", by="t2mpi")
        except OSError:
            pass
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
