"""The transport chosen for this node goes into t2mpi run, batch scripts and each worker's report."""

from __future__ import annotations

import pytest
from conftest import JOBS, PYTHON, only_job, state_of, t2mpi

from t2mpi.mpi import launcher as mpilauncher
from t2mpi.net import choice as netchoice
from t2mpi.net import fabric, first_node

pytestmark = pytest.mark.mpi
MPI = mpilauncher.detect(str(__import__("pathlib").Path(PYTHON).parent / "mpiexec"))
CHOICE = netchoice.choose(
    fabric.scan(),
    MPI.flavour,
    mpilauncher.components(MPI),
    {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None},
)


def test_doctor_explains_the_choice(work):
    done = t2mpi("doctor", cwd=work)
    assert done.returncode == 0, done.stderr
    assert f"MPI: {MPI.flavour} {MPI.version}" in done.stdout
    assert f"transport: {CHOICE.transport}" in done.stdout
    for key, value in CHOICE.env.items():
        assert f"  {key}={value}" in done.stdout


def test_run_dry_run_carries_the_environment_and_a_script_chooses_when_it_starts(work):
    dry = t2mpi("run", str(JOBS / "hello.yaml"), "--dry-run", cwd=work)
    assert dry.returncode == 0, dry.stderr
    script = t2mpi("script", str(JOBS / "hello.yaml"), cwd=work)
    assert script.returncode == 0, script.stderr
    for key, value in CHOICE.env.items():
        assert f"#   {key}={value}" in dry.stdout
        assert f"export {key}=" not in script.stdout  # not this (login) node's choice...
    lines = script.stdout.splitlines()  # ...but the first compute node's, at the start
    assert lines[lines.index('eval "$t2mpi_network"') - 1].startswith(
        f"t2mpi_network=$({PYTHON} -P -m t2mpi.network --job-dir "
    )
    assert f"; where this script was made: {first_node.described(CHOICE)}" in script.stdout
    assert '"${T2MPI_NETWORK[@]}"' in lines[-1]
    if MPI.flavour == "openmpi":  # the btl list in the environment, no command-line override
        assert "--mca btl" not in dry.stdout and "OMPI_MCA_btl=self,sm,tcp" in dry.stdout
        assert "--mca btl" not in script.stdout


def test_each_worker_reports_the_transport_it_ran_with(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "2", cwd=work)
    assert done.returncode == 0, done.stderr
    for w in state_of(only_job(work))["workers"]:
        assert {k: w["network"].get(k) for k in CHOICE.env} == CHOICE.env


def test_a_transport_this_node_cannot_give_is_refused_before_launch(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "--set", "network.transport=ucx", cwd=work)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "t2mpi: network.transport ucx: no active InfiniBand or RoCE port on this node; use transport: auto or tcp"
    )
    assert not (work / "t2mpi-jobs").exists()


def test_a_script_refuses_nothing_this_node_lacks_and_says_it(work):
    script = t2mpi("script", str(JOBS / "hello.yaml"), "--set", "network.transport=ucx", cwd=work)
    assert script.returncode == 0, script.stderr
    assert (
        "# The network transport is chosen when the job starts, on its first node; where this "
        "script was made: none: network.transport ucx: no active InfiniBand or RoCE port on this "
        "node; use transport: auto or tcp"
    ) in script.stdout
    bad = t2mpi("script", str(JOBS / "hello.yaml"), "--set", "network.transport=infiniband", cwd=work)
    assert (bad.returncode, bad.stdout) == (2, "")  # a setting wrong anywhere is refused here
    assert bad.stderr.startswith("t2mpi: ") and "network.transport: 'infiniband'" in bad.stderr
