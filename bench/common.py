"""Helpers shared by the benchmarks: timing commands, interleaved rounds, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)


def timed(argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    """Wall seconds of one run of argv; a failed run stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=cwd)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
    return took


def interleave(cases: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each case once per round, in turn, so drift on the machine hits all alike."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            out[name].append(case())
    return out


def describe(name: str, samples: list[float], unit: str = "s") -> str:
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return f"{name:<44} median {med:8.4f} {unit}  (min {lo:.4f}, max {hi:.4f}, n={len(samples)})"


def ratio_line(what: str, num: list[float], den: list[float], goal: str) -> str:
    r = statistics.median(num) / statistics.median(den)
    return f"{what:<44} ratio {r:6.3f}   goal {goal}"


def _launcher():
    from t2mpi.mpi import launcher

    return launcher.detect(os.path.join(BIN, "mpiexec"))


def mpi_flavour() -> str:
    return _launcher().flavour


def mpiexec(n: int, idle: int = 0, env: dict[str, str] | None = None) -> list[str]:
    """The bare launcher line for this venv's MPI, with the options t2mpi itself would use
    (`idle`: how many of the n ranks mostly sleep, as a job master does; `env`: what every rank
    is given through the launcher, as t2mpi gives a job's ranks rank_environment())."""
    from t2mpi.mpi import launcher

    return launcher.mpiexec_args(_launcher(), n, launcher.Host.here(), env or {}, idle=idle)


def rendered(job: str, workers: int, overrides: Sequence[str] = ()) -> tuple[list[str], dict[str, str], str]:
    """How `t2mpi run JOB -n WORKERS --set ...` would launch on this node, from t2mpi's own
    rendering (client.prepare, the launcher's argv): the launcher and its options up to the
    program, the environment every rank gets (the chosen transport, the thread limits, mpi.env),
    and the transport's name. A bare side launched with these cannot drift from t2mpi's."""
    from t2mpi import client
    from t2mpi.mpi.launcher import rank_environment

    prepared = client.prepare(job, workers=workers, overrides=overrides)
    argv = prepared.argv(os.path.join(prepared.spec.jobs_dir, "bench"))
    program = argv.index(prepared.python)  # the launcher's words end where the ranks' Python starts
    return argv[:program], rank_environment(prepared.spec, prepared.network.env), str(prepared.network.transport)


def launcher_words(argv: Sequence[str]) -> str:
    """A launcher prefix as one printable line, without its path."""
    return " ".join([os.path.basename(argv[0]), *argv[1:]])


def job_folder(name: str, worker: str, job: dict) -> str:
    """A fresh folder holding the job file NAME.yaml (`job` plus its name) and its worker module
    NAME.py (`worker`, dedented): a benchmark's job, run from that folder."""
    import json
    import tempfile
    import textwrap

    work = tempfile.mkdtemp(prefix="t2mpi-bench-")
    with open(os.path.join(work, f"{name}.py"), "w") as fh:
        fh.write(textwrap.dedent(worker))
    with open(os.path.join(work, f"{name}.yaml"), "w") as fh:
        json.dump({"name": name, **job}, fh)
    return work
