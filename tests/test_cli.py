"""The command line with bad input: one clear line, exit 2, nothing launched or left half made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import JOBS, PYTHON, job_dirs, t2mpi, write_job

OK_WORKER = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return 1
"""


def one_line_error(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("t2mpi: ")
    return lines[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nworker: [\n", ":3: not valid YAML"),
        (
            "name: x\nworker: hello:Hello\nresource: {cpus: 2}\n",
            ":3: unknown key 'resource'; did you mean 'resources'?",
        ),
        ("name: x\nworker: hello:Hello\nworkers: 0\n", ":3: workers: must be at least 1, got 0"),
        (
            "name: x\nworker: hello:Hello\nresources: {cpus: 1, threads: 2}\n",
            ":3: resources.threads: 2 threads need at least 2 cpus",
        ),
        ("name: x\nworker: hello:Hello\nresources:\n  memory: lots\n", ":4: resources.memory: cannot read size 'lots'"),
    ],
)
def test_bad_job_file(work, text, expected):
    (work / "hello.py").write_text((JOBS / "hello.py").read_text())
    (work / "job.yaml").write_text(text)
    line = one_line_error(t2mpi("run", "job.yaml", cwd=work))
    assert f"job.yaml{expected}" in line
    assert job_dirs(work) == []


def test_missing_worker_class(work):
    job = write_job(work, "nocls", OK_WORKER)
    job.write_text(job.read_text().replace("nocls:Job", "nocls:Missing"))
    line = one_line_error(t2mpi("run", str(job), cwd=work))
    assert "worker: nocls:Missing: module 'nocls'" in line and "has no class 'Missing'" in line
    assert job_dirs(work) == []


def test_worker_not_an_iworker(work):
    job = write_job(work, "notiw", "class Job:\n    pass\n")
    line = one_line_error(t2mpi("run", str(job), cwd=work))
    assert "'Job' is not a subclass of t2mpi.IWorker" in line


def test_missing_job_file_and_bad_override(work):
    assert "nothere.yaml: no such job file" in one_line_error(t2mpi("run", "nothere.yaml", cwd=work))
    line = one_line_error(t2mpi("run", str(JOBS / "hello.yaml"), "--set", "workers=two", cwd=work))
    assert "--set workers: workers: must be a whole number, got a string 'two'" in line


def test_launcher_not_found(work):
    line = one_line_error(t2mpi("run", str(JOBS / "hello.yaml"), "--set", "mpi.launcher=/no/mpiexec", cwd=work))
    assert "mpi.launcher: '/no/mpiexec' is not an executable file" in line
    assert job_dirs(work) == []


def test_site_config_layer(work):
    site = work / "site.yaml"
    site.write_text("mpi:\n  launcher: /site/mpiexec\n")
    import os

    done = t2mpi("run", str(JOBS / "hello.yaml"), cwd=work, env=dict(os.environ, T2MPI_CONFIG=str(site)))
    assert "'/site/mpiexec' is not an executable file" in one_line_error(done)


def test_launcher_detection_is_remembered_while_the_file_is_the_same(tmp_path):
    from t2mpi.mpi.launcher import detect

    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\necho 'HYDRA build details:'\necho '    Version: 4.9'\n")
    fake.chmod(0o755)
    cache = str(tmp_path / "cache.json")
    assert detect(str(fake), cache=cache)[1:] == ("mpich", "4.9")
    assert str(fake) in open(cache).read()
    fake.write_text("#!/bin/sh\necho 'mpirun (Open MPI) 5.0.11'\n")  # another file now
    assert detect(str(fake), cache=cache)[1:] == ("openmpi", "5.0.11")


def _no_allocation(**extra: str) -> dict[str, str]:
    """This environment outside any scheduler allocation, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    return {**env, **extra}


STAND_IN = """#!/bin/sh
# answers --version as the real launcher does; any launch only leaves a mark
[ "$1" = --version ] && exec {real} --version
touch {mark}
exit 3
"""


@pytest.mark.parametrize("dry", [["--dry-run"], []])
def test_a_typo_in_n_is_refused_before_anything_starts(work, dry):
    # A stand-in launcher: were the guard to fail, no 100001 processes start, only a mark is left
    launcher = work / "mpiexec"
    launcher.write_text(STAND_IN.format(real=Path(PYTHON).parent / "mpiexec", mark=work / "launched"))
    launcher.chmod(0o755)
    cpus = len(os.sched_getaffinity(0))
    done = t2mpi(
        "run", str(JOBS / "hello.yaml"), "-n", "100000", *dry, "--set", f"mpi.launcher={launcher}",
        cwd=work, env=_no_allocation(),
    )  # fmt: skip
    line = one_line_error(done)
    assert line == (
        f"t2mpi: 100000 workers are more than {4 * cpus} (4 x the {cpus} CPU{'s' if cpus > 1 else ''} "
        "this process may use here); if that is what you meant, "
        "give t2mpi run --oversubscribe or set mpi.oversubscribe: true in the job file"
    )
    assert done.stdout == ""  # no command printed
    assert job_dirs(work) == [] and not (work / "launched").exists()  # no job folder, no launch


@pytest.mark.parametrize("ask", [["--oversubscribe"], ["--set", "mpi.oversubscribe=true"]])
def test_oversubscribe_lets_a_dry_run_show_the_launch(work, ask):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "100000", "--dry-run", *ask, cwd=work, env=_no_allocation())
    assert done.returncode == 0, done.stderr
    assert " -n 100001 " in done.stdout.strip().splitlines()[-1]
    assert job_dirs(work) == []


def test_inside_an_allocation_its_tasks_are_the_limit(work):
    env = _no_allocation(SLURM_JOB_ID="99", SLURM_NTASKS="2")
    line = one_line_error(t2mpi("run", str(JOBS / "hello.yaml"), "-n", "3", "--dry-run", cwd=work, env=env))
    assert line.startswith("t2mpi: 3 workers are more than 2 (the 2 tasks of Slurm job 99 ($SLURM_NTASKS));")
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "2", "--dry-run", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
