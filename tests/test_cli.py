"""The command line with bad input: one clear line, exit 2, nothing launched or left half made."""

from __future__ import annotations

import pytest
from conftest import JOBS, job_dirs, t2mpi, write_job

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
