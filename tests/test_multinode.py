"""Jobs that really span nodes: the multi-node cluster of slurm/multinode.sh (./dev test starts it),
head = login node, n1..n3 = compute nodes, each a network namespace with its own address and
hostname. Client commands run inside `head`; psutil sees every node's processes (one pid namespace)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    JOBS,
    PYTHON,
    ROOT,
    events_of,
    job_dirs,
    only_job,
    processes_mentioning,
    state_of,
    wait_for,
    write_job,
)

from t2mpi.mpi.launcher import OPENMPI, detect

pytestmark = pytest.mark.mpi
MULTINODE = str(ROOT / "slurm" / "multinode.sh")
NSRSH = str(ROOT / "slurm" / "nsrsh")
MPI = detect(str(Path(PYTHON).parent / "mpiexec"))
NODES = ["n1", "n2", "n3"]
NET = os.environ.get("T2MPI_MULTI_NET", "10.77.0")
IFNAME = os.environ.get("T2MPI_MULTI_IFNAME", "nic0")  # every host's interface (not the machine's)
ADDRESS = {"head": f"{NET}.10", **{f"n{k}": f"{NET}.{10 + k}" for k in (1, 2, 3)}}
KMEANS = ["--set", "config.points=30000", "--set", "config.iterations=10"]


@pytest.fixture(scope="session")
def cluster():
    """The multi-node cluster must be up with n1..n3: if not, these tests fail, never skip."""
    done = subprocess.run([MULTINODE, "status"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not all(f"\n{n} " in done.stdout for n in NODES):
        pytest.fail(
            "no multi-node test cluster with nodes n1..n3: run `slurm/multinode.sh start` "
            f"(./dev test does)\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def on(host: str, *argv: str, cwd: Path, timeout: float = 120, env: dict | None = None):
    """Run argv on `host` (head or nK) through slurm/multinode.sh exec."""
    return subprocess.run(
        [MULTINODE, "exec", host, "--", *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def t2mpi_on(host: str, *args: str, cwd: Path, timeout: float = 120):
    return on(host, PYTHON, "-m", "t2mpi", *args, cwd=cwd, timeout=timeout)


def submit(work: Path, job: Path | str, *args: str, wait: bool = True):
    done = t2mpi_on(
        "head",
        "submit",
        str(job),
        "-n",
        "3",
        "--set",
        "scheduler.nodes=3",
        *args,
        *(["--wait"] if wait else []),
        cwd=work,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, only_job(work)


def results(folder: Path) -> dict:
    return pickle.loads((folder / "results.pkl").read_bytes())


SPAN = """
    import os
    import psutil
    from mpi4py import MPI
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            total = ctx.comm.allreduce(ctx.worker_id + 1, op=MPI.SUM)
            hosts = ctx.comm.allgather(os.uname().nodename)
            with open(os.path.join(ctx.scratch_dir, "written-on"), "w") as fh:
                fh.write(os.uname().nodename)
            peers = sorted({c.raddr.ip for c in psutil.Process().net_connections("tcp")
                            if c.status == psutil.CONN_ESTABLISHED and c.raddr})
            addrs = {name: [a.address for a in found if a.family.name == "AF_INET"]
                     for name, found in psutil.net_if_addrs().items()}
            return {"host": ctx.host, "total": total, "hosts": hosts, "scratch": ctx.scratch_dir,
                    "persistent": ctx.persistent_dir, "peers": peers, "addrs": addrs,
                    "workers": [tuple(w) for w in ctx.controller.workers()]}
"""


def test_workers_span_the_nodes_and_talk_over_their_interfaces(work, cluster):
    job = write_job(work, "span", SPAN, keep_scratch=True)  # its scratch files are read afterwards
    done, folder = submit(work, job)
    state = state_of(folder)
    assert state["state"] == "COMPLETED", state
    assert [(w["id"], w["host"], w["node"], w["local"]) for w in state["workers"]] == [
        (0, "n1", 0, 0),
        (1, "n2", 1, 0),
        (2, "n3", 2, 0),
    ]
    out = results(folder)
    for wid, host in enumerate(NODES):
        r = out[wid]
        assert r["host"] == host and r["total"] == 6 and r["hosts"] == NODES
        assert [w[1] for w in r["workers"]] == NODES
        # persistent_dir: in the shared job folder; scratch_dir: made and written on its own node
        assert Path(r["persistent"]).resolve().parent.parent == folder.resolve()
        assert Path(r["scratch"], "written-on").read_text() == host
        assert not Path(r["scratch"]).resolve().is_relative_to(folder.resolve())
        # TCP over the node's own interface (the same name on every node), never lo, never head
        assert r["addrs"][IFNAME] == [ADDRESS[host]]
        remote = set(r["peers"]) - {ADDRESS[host], "127.0.0.1"}
        assert remote and remote <= {ADDRESS[n] for n in NODES if n != host}, r["peers"]
    assert len({r["scratch"] for r in out.values()}) == 3
    iface = {w["id"]: w["network"] for w in state["workers"]}
    key = "OMPI_MCA_btl_tcp_if_include" if MPI.flavour == OPENMPI else "FI_TCP_IFACE"
    assert all(net[key] == IFNAME for net in iface.values()), iface
    chosen = json.loads((folder / "network.json").read_text())  # on the job's first node, when it started
    assert (chosen["host"], chosen["env"][key]) == ("n1", IFNAME)
    script = (folder / "job.sh").read_text()
    assert ADDRESS["head"] not in script and "head" not in script.replace("#!/bin/bash", "")
    # status and logs say which worker ran where
    status = t2mpi_on("head", "status", folder.name, cwd=work)
    assert status.returncode == 0 and "COMPLETED" in status.stdout, status.stderr
    rows = [line.split() for line in status.stdout.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]
    assert [(row[0], row[1]) for row in rows] == [("0", "n1"), ("1", "n2"), ("2", "n3")], status.stdout
    logs = t2mpi_on("head", "logs", folder.name, cwd=work)
    assert f"3 workers on n1, n2, n3; folder {folder}" in logs.stdout, logs.stdout


SLEEPER = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            if ctx.host == ctx.config.get("fail_on"):
                raise RuntimeError(f"broken on {ctx.host}")
            ctx.progress(0.0, "sleeping")
            threading.Event().wait(600)
"""


def running_everywhere(work: Path, *args: str) -> Path:
    """A submitted job whose 3 workers (one per node) all sleep; its folder."""
    job = write_job(work, "sleepy", SLEEPER, timeouts={"heartbeat": 10})
    submit(work, job, *args, wait=False)
    folder = only_job(work)
    wait_for(
        lambda: (folder / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(folder)) == 3,
        60,
        "the workers to run",
    )
    assert processes_mentioning(str(folder))  # its ranks are there now
    return folder


def no_process_left(folder: Path) -> None:
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes on every node to go")
    job_id = json.loads((folder / "scheduler.json").read_text())["id"]
    wait_for(
        lambda: job_id not in on("head", "squeue", "-h", "-o", "%i", cwd=folder).stdout.split(),
        30,
        f"slurm job {job_id} to leave the queue",
    )


@pytest.fixture
def login_view(tmp_path, cluster):
    """A login node with an interface of its own that the compute nodes lack: a real `dmz0` in head's
    network namespace (one end of a veth pair whose other end is there too; a documentation-range
    address, 192.0.2.1/24, that routes nowhere), and what head sees of it in /sys/class/net: fast and
    physical (mounted over /sys/class/net for one command on head only, as the namespace was entered
    without remounting /sys). The kernel's list of head's interfaces names dmz0; sysfs describes it."""
    net = tmp_path / "login-net"
    for name, facts in {
        "dmz0": {"operstate": "up", "speed": "100000", "type": "1"},
        "lo": {"operstate": "unknown", "type": "772"},
    }.items():
        (net / name).mkdir(parents=True)
        for key, value in facts.items():
            (net / name / key).write_text(value + "\n")
    (net / "dmz0" / "device").mkdir()
    on("head", "ip", "link", "del", "dmz0", cwd=tmp_path)  # one a killed earlier run left, if any
    for step in (
        ["ip", "link", "add", "dmz0", "type", "veth", "peer", "name", "dmz0p"],
        ["ip", "addr", "add", "192.0.2.1/24", "dev", "dmz0"],
        ["ip", "link", "set", "dmz0p", "up"],
        ["ip", "link", "set", "dmz0", "up"],
    ):
        made = on("head", *step, cwd=tmp_path)
        assert made.returncode == 0, f"{' '.join(step)} on head: {made.stderr}"
    yield net
    gone = on("head", "ip", "link", "del", "dmz0", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr


def on_login_view(net: Path, *args: str, cwd: Path):
    """t2mpi ARGS on head, in a private mount namespace whose /sys/class/net is `net`."""
    script = 'mount --bind "$1" /sys/class/net && shift && exec "$@"'
    return on(
        "head",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(net),
        PYTHON,
        "-m",
        "t2mpi",
        *args,
        cwd=cwd,
    )


def test_the_login_nodes_interface_never_reaches_the_compute_nodes(work, cluster, login_view):
    key = "OMPI_MCA_btl_tcp_if_include" if MPI.flavour == OPENMPI else "FI_TCP_IFACE"
    doctor = on_login_view(login_view, "doctor", cwd=work)
    assert f"  {key}=dmz0" in doctor.stdout, doctor.stdout + doctor.stderr  # what head would use
    done = on_login_view(
        login_view,
        "submit",
        str(write_job(work, "span", SPAN)),
        "-n",
        "3",
        "--set",
        "scheduler.nodes=3",
        "--wait",
        cwd=work,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    folder = only_job(work)
    state = state_of(folder)
    assert state["state"] == "COMPLETED", state
    assert [w["network"][key] for w in state["workers"]] == [IFNAME] * 3
    chosen = json.loads((folder / "network.json").read_text())
    assert (chosen["host"], chosen["env"][key]) == ("n1", IFNAME)
    # the script names head's interface only in a comment, never in what runs
    script = (folder / "job.sh").read_text().splitlines()
    assert [line.startswith("# ") for line in script if "dmz0" in line] == [True]
    for r in results(folder).values():  # and the workers met over the nodes' own addresses
        remote = set(r["peers"]) - {ADDRESS[r["host"]], "127.0.0.1"}
        assert remote and remote <= {ADDRESS[n] for n in NODES if n != r["host"]}, r["peers"]


def test_each_node_reads_its_own_topology_once_and_binds_on_it(work, cluster):
    job = write_job(
        work,
        "bound",
        "from t2mpi import IWorker\n\nclass Job(IWorker):\n    def execute(self, ctx):\n        return ctx.host\n",
        binding={"mode": "cores"},
    )
    _, folder = submit(work, job)
    state = state_of(folder)
    assert state["state"] == "COMPLETED", state
    for host in NODES:
        mine = [w for w in state["workers"] if w["host"] == host]
        read = [w for w in mine if w.get("topology")]
        assert [w["local"] for w in read] == [0], mine  # once per node, by its first worker
        assert read[0]["topology"]["hostname"] == host  # that node's own
        assert all(w["binding"]["mismatches"] == [] and w["binding"]["affinity"] for w in mine)


def test_cancel_leaves_no_process_on_any_node(work, cluster):
    folder = running_everywhere(work)
    hosts = {w["host"] for w in state_of(folder)["workers"]}
    assert hosts == set(NODES)
    cancel = t2mpi_on("head", "cancel", folder.name, cwd=work)
    assert cancel.returncode == 0, cancel.stderr
    assert state_of(folder)["state"] == "KILLED"
    no_process_left(folder)


def test_a_worker_failing_on_one_node_ends_the_job_everywhere(work, cluster):
    job = write_job(work, "failing", SLEEPER, config={"fail_on": "n3"})
    done = t2mpi_on("head", "submit", str(job), "-n", "3", "--set", "scheduler.nodes=3", "--wait", cwd=work)
    assert done.returncode == 1, done.stdout + done.stderr
    folder = only_job(work)
    state = state_of(folder)
    assert state["state"] == "FAILED"
    assert "on n3" in state["reason"] and "RuntimeError: broken on n3" in state["workers"][2]["error"], state
    no_process_left(folder)


def test_a_worker_killed_on_one_node_ends_the_job_everywhere(work, cluster):
    folder = running_everywhere(work)
    victim = state_of(folder)["workers"][1]
    assert victim["host"] == "n2"
    os.kill(victim["pid"], signal.SIGKILL)
    no_process_left(folder)
    # the MPI may end the master before it writes the failure: then the client settles it
    # from the scheduler's view
    status = t2mpi_on("head", "status", folder.name, cwd=work)
    assert status.stdout.startswith(f"job {folder.name}: FAILED"), status.stdout + status.stderr


QUICK = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return ctx.host
"""


def test_a_node_that_cannot_resolve_the_first_one_fails_an_mpich_job_at_the_start_timeout(work, cluster):
    """n2's private /etc/hosts lacks the other nodes. MPICH: Hydra's proxy there cannot reach the
    launcher on n1 (`unable to get host address for n1`), Hydra's mpiexec stays up, and the launch
    never starts its master; the batch supervisor ends it after timeouts.start, FAILED with the
    launcher's lines. Open MPI reaches the nodes by address: the job completes."""
    import time

    hosts = work / "hosts-n2"
    hosts.write_text(f"127.0.0.1 localhost\n{ADDRESS['n2']} n2\n")
    mounted = on("n2", "mount", "--bind", str(hosts), "/etc/hosts", cwd=work)
    assert mounted.returncode == 0, mounted.stderr
    try:
        job = write_job(work, "unresolved", QUICK, timeouts={"start": 10})
        began = time.monotonic()
        done = t2mpi_on(
            "head", "submit", str(job), "-n", "3", "--set", "scheduler.nodes=3", "--wait", cwd=work, timeout=120
        )
        took = time.monotonic() - began
    finally:
        unmounted = on("n2", "umount", "/etc/hosts", cwd=work)
    assert unmounted.returncode == 0, unmounted.stderr
    print(
        f"unresolvable first node ({MPI.flavour}): t2mpi submit --wait ended after {took:.1f} s (timeouts.start 10 s)"
    )
    folder = only_job(work)
    state = state_of(folder)
    no_process_left(folder)
    if MPI.flavour == OPENMPI:
        assert done.returncode == 0 and state["state"] == "COMPLETED", done.stdout + done.stderr
        assert results(folder) == {0: "n1", 1: "n2", 2: "n3"}
        return
    assert done.returncode == 1, done.stdout + done.stderr
    assert state["state"] == "FAILED", state
    assert state["reason"].startswith(
        "the job master did not start within timeouts.start = 10 s; the MPI launch was ended; the launcher said: "
    ), state["reason"]
    assert "unable to get host address for n1" in state["reason"]
    assert f"t2mpi.restart: job {folder.name} FAILED: {state['reason']}" in (folder / "batch.out").read_text()
    assert f"job {folder.name}: FAILED — {state['reason']}" in done.stderr
    status = t2mpi_on("head", "status", folder.name, cwd=work)
    assert f"FAILED — {state['reason']}" in status.stdout, status.stdout + status.stderr
    assert took < 10 + 40  # well before any walltime


@pytest.fixture
def n3_cut_off(work, cluster):
    """n3's link to the others goes down (the machine's end of its veth pair); afterwards it comes
    back up and n3 is idle in Slurm again before the next test."""
    link = "t2mpiv-n3"

    def n3_idle():
        state = on("head", "sinfo", "-h", "-N", "-n", "n3", "-o", "%T", cwd=work).stdout.strip()
        if state.startswith("down") and not state.endswith("*"):  # set down, now answering: resume it
            on("head", "scontrol", "update", "nodename=n3", "state=resume", cwd=work)
        return state == "idle"

    wait_for(n3_idle, 180, "n3 to be idle in Slurm before its link goes down")  # done with earlier jobs
    cut = subprocess.run(["ip", "link", "set", link, "down"], capture_output=True, text=True, timeout=30)
    assert cut.returncode == 0, cut.stderr
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], capture_output=True, text=True, timeout=30, check=True)
        wait_for(n3_idle, 180, "n3 to be idle in Slurm again")


def test_a_node_whose_network_is_down_as_the_job_starts_fails_it_soon_and_leaves_nothing(work, cluster, n3_cut_off):
    """n3's link is down, and Slurm, which has not noticed yet, gives n3 to the job. The launch cannot
    start its part there: the job ends FAILED within seconds, with the launcher's own line, and no
    process of it stays on any node."""
    import time

    job = write_job(work, "cutoff", QUICK, timeouts={"start": 10})
    began = time.monotonic()
    done = t2mpi_on(
        "head", "submit", str(job), "-n", "3", "--set", "scheduler.nodes=3", "--wait", cwd=work, timeout=150
    )
    took = time.monotonic() - began
    print(f"a node cut off ({MPI.flavour}): t2mpi submit --wait ended after {took:.1f} s")
    folder = only_job(work)
    state = state_of(folder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert state["state"] == "FAILED", state
    said = "lost communication with a remote daemon" if MPI.flavour == OPENMPI else "failed on node n3"
    assert said in state["reason"], state["reason"]
    assert f"job {folder.name}: FAILED — {state['reason']}" in done.stderr
    # nothing of it on any node (n3 stays COMPLETING in Slurm until it answers again: the fixture waits)
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes on every node to go")
    assert took < 10 + 80  # the start timeout and Slurm's message timeouts, never the walltime


# ---------------------------------------------------------------- K-Means: 3 nodes = 1 node


@pytest.fixture(scope="module")
def one_node_centroids():
    """The reference, independent of t2mpi: jobs/kmeans.py's single-process K-Means over the same
    3 partitions (the job's config: jobs/kmeans.yaml with KMEANS's overrides)."""
    sys.path.insert(0, str(JOBS))
    try:
        import kmeans
    finally:
        sys.path.remove(str(JOBS))
    cfg = dict(seed=42, points=30000, dims=8, clusters=16, iterations=10)
    assert KMEANS == ["--set", f"config.points={cfg['points']}", "--set", f"config.iterations={cfg['iterations']}"]
    return kmeans.kmeans_sequential(cfg, parts=3)


def assert_same_centroids(folder: Path, expected) -> None:
    assert state_of(folder)["state"] == "COMPLETED"
    hosts = {w["host"] for w in state_of(folder)["workers"]}
    assert hosts == set(NODES), hosts
    out = results(folder)
    for wid in (0, 1, 2):
        np.testing.assert_allclose(out[wid], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_kmeans_through_slurm_on_three_nodes(work, cluster, one_node_centroids, launcher):
    _, folder = submit(work, JOBS / "kmeans.yaml", *KMEANS, "--set", f"scheduler.launcher={launcher}")
    assert_same_centroids(folder, one_node_centroids)


def remote_launch_args() -> list[str]:
    """Launcher options that start the remote daemons with slurm/nsrsh instead of ssh."""
    if MPI.flavour == OPENMPI:
        return ["--mca", "plm_ssh_agent", NSRSH, "--host", "n1:2,n2:1,n3:1"]
    return ["-launcher", "ssh", "-launcher-exec", NSRSH, "-hosts", "n1:2,n2:1,n3:1"]


def test_kmeans_by_mpiexec_from_the_login_node(work, cluster, one_node_centroids):
    args = json.dumps(remote_launch_args())
    done = t2mpi_on("head", "run", str(JOBS / "kmeans.yaml"), "-n", "3", *KMEANS, "--set", f"mpi.args={args}", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_same_centroids(only_job(work), one_node_centroids)


PBS_SCRIPT = """
import sys
from t2mpi import client
from t2mpi.scheduler import control
from t2mpi.job.folder import JobDir
job = client.prepare(sys.argv[1], workers=3, overrides=["scheduler.kind=pbs", "scheduler.nodes=3", *sys.argv[2:]])
final = JobDir.new_path(job.spec.jobs_dir, job.spec.name)
JobDir.make(final, job.spec.to_dict(), script=control.script(job, final))
print(final)
"""


def test_kmeans_pbs_script_on_three_nodes(work, cluster, one_node_centroids):
    """No PBS server here: the login node (head) writes the script, and bash runs it on n1 as a
    PBS MOM would, with a node file naming n1..n3 and nsrsh standing in for ssh."""
    made = on(
        "head", PYTHON, "-c", PBS_SCRIPT, str(JOBS / "kmeans.yaml"), *(s for s in KMEANS if s != "--set"), cwd=work
    )
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip())
    nodefile = work / "nodefile"
    nodefile.write_text("n1\nn1\nn2\nn3\n")
    env = dict(
        os.environ,
        PBS_NODEFILE=str(nodefile),
        PBS_O_WORKDIR=str(work),
        PBS_JOBID="1.head",
        PBS_JOBNAME="kmeans",
        PBS_ENVIRONMENT="PBS_BATCH",
        HYDRA_LAUNCHER="ssh",
        HYDRA_LAUNCHER_EXEC=NSRSH,
        PRTE_MCA_plm_ssh_agent=NSRSH,
    )
    done = on("n1", "bash", str(folder / "job.sh"), cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_same_centroids(folder, one_node_centroids)
    assert job_dirs(work) == [folder]


def test_master_client_in_an_allocation_spawns_its_workers_on_the_allocations_nodes(work, cluster):
    """salloc -N 3 on the login node, then t2mpi run --master client: the master spawns the
    workers over the allocation (Open MPI: map_by node; MPICH: Hydra's ssh launcher, here
    slurm/nsrsh as HYDRA_LAUNCHER_EXEC, as Hydra's Slurm launcher cannot spawn)."""
    job = write_job(
        work,
        "where",
        "import os\nfrom t2mpi import IWorker\n\nclass Job(IWorker):\n"
        "    def execute(self, ctx):\n        return os.uname().nodename\n",
        workers=3,
    )
    done = on(
        "head",
        "env",
        f"HYDRA_LAUNCHER_EXEC={NSRSH}",
        "salloc",
        "-N",
        "3",
        "-n",
        "4",
        PYTHON,
        "-m",
        "t2mpi",
        "run",
        str(job),
        "--master",
        "client",
        "-q",
        cwd=work,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deprecated" not in done.stderr.lower()
    folder = only_job(work)
    state = state_of(folder)
    assert state["master"]["mode"] == "client" and state["state"] == "COMPLETED"
    assert sorted(results(folder).values()) == NODES
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes to go")
