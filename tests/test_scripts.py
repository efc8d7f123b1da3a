"""Batch scripts rendered from job specs: golden files per scheduler variant, quoting, bad input.

Directive references: Slurm sbatch(1) (22.05); PBS Professional 2022.1 Reference Guide, qsub
(-N, -l select=N:ncpus=C:mpiprocs=M:mem=…mb, -l walltime=hh:mm:ss, -q, -A, -j oe, -o);
Torque 6 qsub (-l nodes=N:ppn=P, -l mem=…mb)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import JOBS, PYTHON, t2mpi
from hypothesis import given, settings
from hypothesis import strategies as st

from t2mpi.errors import SpecError
from t2mpi.job.spec import load
from t2mpi.mpi.launcher import Host, MpiLauncher, command
from t2mpi.net import first_node
from t2mpi.scheduler import scripts

GOLDEN = Path(__file__).parent / "golden"
MPICH = MpiLauncher("/opt/mpi/bin/mpiexec", "mpich", "5.0")
OPENMPI = MpiLauncher("/opt/ompi/bin/mpirun", "openmpi", "5.0.11")
HOST = Host(cpus=2, root=False, ofi_fabric=False)

VARIANTS = {
    "slurm-default": ([], MPICH),
    "slurm-full": (
        [
            "workers=3",
            "scheduler.time=1-02:03:04",
            "scheduler.partition=debug",
            "scheduler.account=proj1",
            "scheduler.qos=high",
            "scheduler.nodes=2",
            "scheduler.directives=[--exclusive, --constraint=ib]",
            'scheduler.prologue=["module load python/3.12", "source /opt/venv/bin/activate"]',
            "mpi.env={UCX_TLS: rc}",
        ],
        MPICH,
    ),
    "slurm-cpus2-openmpi": (["resources.cpus=2", "resources.threads=2", "scheduler.skip=[mem]"], OPENMPI),
    "slurm-srun-mpich": (["scheduler.launcher=srun"], MPICH),
    "slurm-srun-openmpi": (["scheduler.launcher=srun", "resources.cpus=2"], OPENMPI),
    "slurm-restarts": (["max_restarts=3", "scheduler.time=02:00:00", "scheduler.signal=120"], MPICH),
    "pbs-default": (["scheduler.kind=pbs"], MPICH),
    "pbs-restarts": (["scheduler.kind=pbs", "max_restarts=1"], OPENMPI),
    "pbs-full": (
        [
            "scheduler.kind=pbs",
            "workers=8",
            "resources.cpus=4",
            "scheduler.nodes=2",
            "scheduler.time=48:00",
            "scheduler.partition=workq",
            "scheduler.account=proj1",
            "scheduler.directives=['-l place=scatter']",
        ],
        OPENMPI,
    ),
    "torque-default": (["scheduler.kind=torque", "scheduler.time=90"], MPICH),
    "torque-nodes": (["scheduler.kind=torque", "workers=6", "scheduler.nodes=3"], OPENMPI),
}


def render(overrides, mpi, job_dir="/jobs/hello-1", environ=None):
    spec = load(JOBS / "hello.yaml", overrides=overrides, environ=environ or {"HOME": "/nonexistent"})
    return scripts.get(spec.batch.kind).script(spec, job_dir, mpi, "/opt/venv/bin/python", HOST)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_golden_scripts(variant):
    overrides, mpi = VARIANTS[variant]
    text = render(overrides, mpi)
    golden = GOLDEN / f"{variant}.sh"
    if os.environ.get("T2MPI_REGOLD"):  # regenerate after a deliberate change, then review the diff
        golden.write_text(text)
    assert text == golden.read_text()


def test_master_costs_at_most_one_core():
    one = render(["workers=4"], MPICH)
    assert "--ntasks=5\n" in one and "--cpus-per-task=1\n" in one  # 4 + 1 cores
    four = render(["workers=4", "resources.cpus=4"], MPICH)
    assert "--ntasks=4\n" in four and "--cpus-per-task=4\n" in four  # 16 cores, master beside
    pbs = render(["scheduler.kind=pbs", "workers=4", "resources.cpus=4"], MPICH)
    assert "select=1:ncpus=17:mpiprocs=5:" in pbs


def test_site_defaults_per_scheduler(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        textwrap.dedent("""\
        scheduler:
          account: general
          slurm: {partition: batch, prologue: ["module load mpi"]}
          pbs: {partition: workq}
    """)
    )
    env = {"HOME": str(tmp_path), "T2MPI_CONFIG": str(site)}
    slurm = render([], MPICH, environ=env)
    assert "#SBATCH --partition=batch\n" in slurm and "#SBATCH --account=general\n" in slurm
    assert "\nmodule load mpi\n" in slurm
    assert "#PBS -q workq\n" in render(["scheduler.kind=pbs"], MPICH, environ=env)
    mine = render(["scheduler.partition=mine"], MPICH, environ=env)  # the job's own key wins
    assert "#SBATCH --partition=mine\n" in mine


def _fake_launcher(folder: Path) -> MpiLauncher:
    fake = folder / "mpiexec"
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv.txt"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return MpiLauncher(str(fake), "mpich", "fake")


NASTY = st.sampled_from(
    [
        "$(touch MARK)",
        "`touch MARK`",
        "; touch MARK",
        "&& touch MARK",
        "| touch MARK",
        "> MARK",
        "'",
        '"',
        "\\",
        "$HOME",
        "${X:-y}",
        "\n touch MARK",
        "#",
        "*",
        "~",
    ]
)
# Printable free text around the hostile pieces. Quotes come unbalanced too, and newlines: a prologue
# line with one is refused (shlex, or a control character), so 7 prologue lines in 8 are BALANCED.
FREE = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs")), min_size=1, max_size=8
)
TEXT = st.lists(st.one_of(NASTY, FREE), min_size=1, max_size=5).map("".join)
BALANCED = TEXT.map(lambda t: "".join(c for c in t if c not in "'\"\\#\n"))
EXAMPLES = 150


def test_user_strings_never_run_as_shell_code(tmp_path_factory):
    reached = []

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(
        prologue=st.lists(st.integers(0, 7).flatmap(lambda i: TEXT if i == 0 else BALANCED), max_size=3),
        env_value=TEXT.filter(lambda t: "\n" not in t),
        config_value=TEXT,
    )
    def one(prologue, env_value, config_value):
        if one_example(tmp_path_factory, prologue, env_value, config_value):
            reached.append(1)

    one()
    assert len(reached) >= 120, f"only {len(reached)} of {EXAMPLES} examples reached bash"


def one_example(tmp_path_factory, prologue, env_value, config_value) -> bool:
    """One hostile job through its batch script and bash; False when the spec refused it."""
    folder = tmp_path_factory.mktemp("inject")
    job_dir = folder / "job"
    job_dir.mkdir()
    mpi = _fake_launcher(folder)
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    overrides = [
        "scheduler.prologue=" + dump(["true " + line for line in prologue]),
        "mpi.env=" + dump({"T2X": env_value}),
        "config.v=" + dump(config_value),
    ]
    try:
        spec = load(JOBS / "hello.yaml", overrides=overrides, environ={"HOME": str(folder)})
    except SpecError as exc:  # refused (e.g. a newline, an unbalanced quote): a clear message
        assert "\n" not in str(exc)
        return False
    # the job folder as submit makes it: the script's first step chooses the transport from it
    (job_dir / "spec.json").write_text(json.dumps(spec.to_dict()))
    (job_dir / "mpi.json").write_text(json.dumps(dict(mpi._asdict(), components={})))
    script = folder / "job.sh"  # `here` (a comment) may quote the job file too
    script.write_text(scripts.get("slurm").script(spec, str(job_dir), mpi, PYTHON, HOST, here=config_value))
    done = subprocess.run(
        ["bash", str(script)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "HOME": str(folder)},
    )
    # the fake launcher ends without a job master: the batch supervisor says so and fails the job
    assert done.returncode == 1, done.stderr
    reason = json.loads((job_dir / "state.json").read_text())["reason"]
    assert reason == "the MPI launch exited with status 0 before the job ended", done.stderr
    assert not list(folder.rglob("MARK")), script.read_text()
    argv = (folder / "argv.txt").read_text().split("\n")  # not splitlines: a value may hold \x85
    assert argv[argv.index("T2X") + 1] == env_value  # passed through exactly, as one word
    chosen = json.loads((job_dir / "network.json").read_text())["env"]
    for key, value in chosen.items():  # and the transport chosen at the start
        assert argv[argv.index(key) - 1 : argv.index(key) + 2] == ["-genv", key, value]
    return True


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scheduler.kind=lsf"], "scheduler.kind: 'lsf' is not a scheduler t2mpi knows; use one of slurm, pbs, torque"),
        (["scheduler.time=forever"], "scheduler.time: cannot read walltime 'forever'"),
        (["scheduler.partition=a b"], "scheduler.partition: 'a b' is not valid"),
        (["scheduler.skip=[output]"], "scheduler.skip: 'output' is not a generated directive"),
        (['scheduler.directives=["--x\\n#SBATCH --y"]'], "has a newline or another control character"),
        (['mpi.env={X: "a\\nb"}'], "mpi.env.X: 'a\\nb' has a newline or another control character"),
        (["scheduler.prologue=['echo \"unbalanced']"], "scheduler.prologue: 'echo \"unbalanced': No closing quotation"),
        (["scheduler.launcher=aprun"], "scheduler.launcher: 'aprun': use one of mpiexec, srun"),
        (
            ["max_restarts=1", "scheduler.time=1", "scheduler.signal=30"],
            "scheduler.signal: 30 s before a walltime of 60 s: Slurm may send it up to 30 s early",
        ),
        (["max_restarts=-1"], "max_restarts: must be at least 0, got -1"),
    ],
)
def test_bad_scheduler_settings(overrides, message):
    with pytest.raises(SpecError) as info:
        load(JOBS / "hello.yaml", overrides=overrides, environ={"HOME": "/nonexistent"})
    assert message in str(info.value)


def test_srun_needs_slurm_and_odd_job_folders_are_refused():
    with pytest.raises(SpecError, match="srun needs Slurm; with pbs use mpiexec"):
        render(["scheduler.kind=pbs", "scheduler.launcher=srun"], MPICH)
    with pytest.raises(SpecError, match="has characters a batch directive cannot carry"):
        render([], MPICH, job_dir="/jobs/my job")


def test_script_command_prints_and_writes_nothing(work):
    done = t2mpi("script", str(JOBS / "hello.yaml"), "--scheduler", "torque", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#!/bin/bash\n#PBS -N hello\n#PBS -l nodes=1:ppn=5\n")
    assert not (work / "t2mpi-jobs").exists()
    bad = t2mpi("script", str(JOBS / "hello.yaml"), "--scheduler", "lsf", cwd=work)
    assert bad.returncode == 2 and "invalid choice: 'lsf'" in bad.stderr


@pytest.mark.parametrize(
    "flavour, launcher, words",
    [
        ("openmpi", "mpiexec", ["-x", "FI_TCP_IFACE=e 0'$(touch MARK)`x`", "-x", "UCX_TLS=rc,sm"]),
        ("mpich", "mpiexec", ["-genv", "FI_TCP_IFACE", "e 0'$(touch MARK)`x`", "-genv", "UCX_TLS", "rc,sm"]),
        ("mpich", "srun", []),  # srun passes the exported environment itself
    ],
)
def test_the_transport_chosen_at_the_start_reaches_the_script_exactly(tmp_path, flavour, launcher, words):
    env = {"FI_TCP_IFACE": "e 0'$(touch MARK)`x`", "UCX_TLS": "rc,sm"}
    text = first_node.shell_text(env, flavour, launcher)
    probe = (
        'eval "$1"; printf "%s\\n" "$FI_TCP_IFACE" "$UCX_TLS" "${#T2MPI_NETWORK[@]}"; '
        'printf "%s\\n" "${T2MPI_NETWORK[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe, "bash", text], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")[:-1]
    assert lines[:3] == [env["FI_TCP_IFACE"], "rc,sm", str(len(words))]
    assert lines[3:] == (words or [""])  # printf prints one empty line for an empty array
    assert not (tmp_path / "MARK").exists()


def test_open_mpi_gives_the_idle_master_a_slot_rather_than_oversubscribing():
    """Oversubscribed, Open MPI makes every rank yield the CPU whenever it waits (it forces
    yield_when_idle), which costs the workers latency for a master that sleeps."""
    here = Host(cpus=2, root=True, ofi_fabric=False, slurm_allocation=False, name="vm")

    def argv(*overrides, mpi=OPENMPI, host=here):
        spec = load(JOBS / "hello.yaml", overrides=list(overrides), environ={"HOME": "/nonexistent"})
        return command(mpi, spec, "/jobs/j", "/opt/venv/bin/python", host)

    two = argv("workers=2")  # 2 workers on 2 cores, + the master
    assert two[two.index("--host") + 1] == "vm:3" and ":OVERSUBSCRIBE" not in two
    spawning = argv("workers=2", "master=client")
    assert spawning[spawning.index("--host") + 1] == "vm:3"
    for crowded in (
        argv("workers=3"),  # the workers alone lack cores
        argv("workers=2", 'mpi.args=["--host", "n1:2,n2:2"]'),  # the job names hosts
        argv("workers=2", host=here._replace(slurm_allocation=True)),
        argv("workers=2", host=here._replace(name=None)),
    ):
        assert crowded[crowded.index("--map-by") + 1] == ":OVERSUBSCRIBE"
        assert "vm:3" not in crowded
    assert "--host" not in argv("workers=2", mpi=MPICH) and "--host" not in argv("workers=1")
