"""Node topology: synthetic parser (cross-checked against libhwloc), sysfs, hwloc sources, JSON.

Everything that loads pyhwloc runs in a subprocess: pyhwloc loads libhwloc with RTLD_GLOBAL,
which must not leak into the test process (it breaks the Open MPI wheel).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from t2mpi.resources import topology as T

GiB = 2**30
EPYC_NPS4 = "package:2 numa:4 l3:2 core:8 pu:2(indexes=core:pu)"  # 2 × 64 cores, SMT numbered like Linux
INTEL_SNC2 = "package:2 numa:2(memory=128GiB) core:20 pu:2(indexes=core:pu)"


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "t2mpi.resources.topology", *args], capture_output=True, text=True, timeout=120
    )


def run_json(*args: str) -> T.Node:
    done = run_module(*args, "--json")
    assert done.returncode == 0, done.stderr
    return T.from_dict(json.loads(done.stdout))


# ---- cpusets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pus, text",
    [
        ((), ""),
        ((3,), "3"),
        ((0, 1, 2, 3), "0-3"),
        ((0, 1, 2, 3, 8), "0-3,8"),
        ((0, 2, 4), "0,2,4"),
        ((0, 1, 16, 17, 18), "0-1,16-18"),
    ],
)
def test_cpuset_text(pus, text):
    assert T.format_cpuset(pus) == text
    assert T.parse_cpuset(text) == pus


@given(st.sets(st.integers(0, 600)))
def test_cpuset_round_trip(pus):
    assert T.parse_cpuset(T.format_cpuset(pus)) == tuple(sorted(pus))


def test_bad_cpuset_is_one_line():
    with pytest.raises(T.TopologyError, match=r"^bad cpuset '0-x': expected ranges like 0-3,8$"):
        T.parse_cpuset("0-x")


# ---- synthetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "desc, packages, cores, pus, numa, core0, numa0, memory, l3_groups",
    [
        (EPYC_NPS4, 2, 128, 256, 8, (0, 128), "0-15,128-143", 16 * GiB, 16),
        ("package:2 numa:4 l3:2 core:8 pu:2", 2, 128, 256, 8, (0, 1), "0-31", 16 * GiB, 16),
        (INTEL_SNC2, 2, 80, 160, 4, (0, 80), "0-19,80-99", 128 * GiB, 0),
        ("package:2 numa:2(128GiB) core:20 pu:1", 2, 80, 80, 4, (0,), "0-19", 128 * GiB, 0),
        ("pack:2 [numa(32GB)] core:8 pu:1", 2, 16, 16, 2, (0,), "0-7", 32 * 10**9, 0),
        ("package:1 core:16", 1, 16, 16, 1, (0,), "0-15", 16 * GiB, 0),
        ("[numa(3GB)] package:2 core:2 pu:1", 2, 4, 4, 1, (0,), "0-3", 3 * 10**9, 0),
        ("socket:2 node:2(memory=64GiB) l3cache:2 core:2 pu:1", 2, 16, 16, 4, (0,), "0-3", 64 * GiB, 8),
        ("pack:2 core:2 pu:2(indexes=0,4,1,5,2,6,3,7)", 2, 4, 8, 1, (0, 4), "0-7", 16 * GiB, 0),
        ("machine:1 package:2 die:2 l2:2 core:2 pu:1", 2, 16, 16, 1, (0,), "0-15", 16 * GiB, 0),
    ],
)
def test_synthetic_machines(desc, packages, cores, pus, numa, core0, numa0, memory, l3_groups):
    node = T.from_synthetic(desc)
    assert (len(node.packages), len(node.cores), len(node.pus), len(node.numa)) == (packages, cores, pus, numa)
    assert node.cores[0].pus == core0
    assert T.format_cpuset(node.numa[0].cpuset) == numa0
    assert {d.memory for d in node.numa} == {memory}
    assert len({c.l3 for c in node.cores if c.l3 is not None}) == l3_groups
    assert node.allowed == node.pus
    assert sorted(p for d in node.numa for p in d.cpuset) == list(node.pus)
    for core in node.cores:
        assert set(core.pus) <= set(next(d.cpuset for d in node.numa if d.os_index == core.numa))


def test_epyc_cores_sit_in_their_package_domain_and_l3():
    node = T.from_synthetic(EPYC_NPS4)
    core = node.cores[70]  # package 1, its 7th core: NUMA 4, second L3 of that domain
    assert (core.pus, core.package, core.numa, core.l3) == ((70, 198), 1, 4, 8)


@pytest.mark.parametrize(
    "desc",
    [
        EPYC_NPS4,
        INTEL_SNC2,
        "pack:2 [numa(32GB)] core:8 pu:1",
        "package:1 core:16",
        "numa:2 core:2 pu:2",
        "package:2 l3:2 core:4 pu:2(indexes=core:pu)",
        "pack:2 core:2 pu:2(indexes=4*2:1*4)",
        "[numa(3GB)] package:2 core:2 pu:1",
        "l3:2 pack:2 numa:2 core:2 pu:2",
        "pack:2 core:2 pu:2(indexes=0,4,1,5,2,6,3,7)",
    ],
)
def test_synthetic_parser_agrees_with_libhwloc(desc):
    assert run_json("--synthetic", desc, "--hwloc") == T.from_synthetic(desc)


@pytest.mark.parametrize(
    "desc, message",
    [
        (
            "package:2 cores:8",
            "bad level 'cores:8' in synthetic description 'package:2 cores:8': "
            "use package:N, numa:N, [numa(32GiB)], l3:N, core:N, pu:N",
        ),
        ("package:2 pu:2", "synthetic description 'package:2 pu:2' must end with core:N pu:N (one of each)"),
        ("package core:2", "level 'package' in 'package core:2' needs a count of at least 1, e.g. core:8"),
        ("numa:2 [numa] core:2", "synthetic description 'numa:2 [numa] core:2' gives NUMA domains twice"),
        (
            "numa:2(lots) core:2",
            "bad memory size 'lots' in 'numa:2(lots) core:2': write e.g. 32GiB, 32GB or 34359738368",
        ),
        ("core:2 pu:2(indexes=0,1,2)", "indexes= in 'core:2 pu:2(indexes=0,1,2)' lists 3 distinct PUs, not 4"),
        (
            "core:2 pu:2(indexes=numa:pu)",
            "bad indexes=numa:pu in 'core:2 pu:2(indexes=numa:pu)': name its levels, e.g. core:pu",
        ),
    ],
)
def test_synthetic_errors_say_what_is_wrong(desc, message):
    with pytest.raises(T.TopologyError) as e:
        T.from_synthetic(desc)
    assert str(e.value) == message


def test_allowed_subset_and_unknown_pus():
    node = T.from_synthetic(EPYC_NPS4, hostname="epyc", allowed=[*range(8, 24), *range(136, 152)])
    assert [c.pus for c in node.allowed_cores] == [(p, p + 128) for p in range(8, 24)]
    with pytest.raises(T.TopologyError) as e:
        T.from_synthetic("package:1 core:16", hostname="vm", allowed=[15, 16, 17])
    assert str(e.value) == "allowed PUs 16-17 are not on node vm (PUs 0-15)"


def test_hwloc_is_not_loaded_by_importing_or_planning():
    code = (
        "import sys, t2mpi.resources.topology as t, t2mpi.resources.placement as p; n = t.from_synthetic('core:4');"
        "p.plan([n], 2, 2, 1, 0); t.from_sysfs(); print('pyhwloc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ---- sysfs --------------------------------------------------------------------------


def fake_sysfs(root: Path, online="0-7", nodes=("0-1,4-5", "2-3,6-7"), node_kb=(1024, 2048)) -> Path:
    """2 packages × 2 cores × 2 SMT threads (siblings i, i+4), one NUMA domain and one L3 per package."""
    cpu = root / "devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text(online + "\n")
    for pu in range(8):
        topo = cpu / f"cpu{pu}/topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{pu % 4 // 2}\n")
        (topo / "core_id").write_text(f"{pu % 2}\n")
        (topo / "thread_siblings_list").write_text(f"{pu % 4},{pu % 4 + 4}\n")
        l3 = cpu / f"cpu{pu}/cache/index3"
        l3.mkdir(parents=True)
        (l3 / "level").write_text("3\n")
        (l3 / "shared_cpu_list").write_text("0-1,4-5\n" if pu % 4 < 2 else "2-3,6-7\n")
    for i, (cpus, kb) in enumerate(zip(nodes, node_kb)):
        node = root / f"devices/system/node/node{i}"
        node.mkdir(parents=True)
        (node / "cpulist").write_text(cpus + "\n")
        (node / "meminfo").write_text(f"Node {i} MemTotal:       {kb} kB\nNode {i} MemFree:  12 kB\n")
    return root


def test_from_sysfs_reads_a_fake_tree(tmp_path):
    node = T.from_sysfs(fake_sysfs(tmp_path), hostname="fake", allowed=[0, 1, 4, 5])
    assert node.hostname == "fake"
    assert node.packages == (0, 1)
    assert node.cores == (
        T.Core((0, 4), 0, 0, 0),
        T.Core((1, 5), 0, 0, 0),
        T.Core((2, 6), 1, 1, 1),
        T.Core((3, 7), 1, 1, 1),
    )
    assert node.numa == (T.NumaDomain(0, (0, 1, 4, 5), 1024 * 1024), T.NumaDomain(1, (2, 3, 6, 7), 2048 * 1024))
    assert node.allowed == (0, 1, 4, 5)


def test_from_sysfs_skips_offline_pus_and_defaults_to_this_process_affinity(tmp_path):
    node = T.from_sysfs(fake_sysfs(tmp_path, online="0-2,4-6"), hostname="fake")
    assert [c.pus for c in node.cores] == [(0, 4), (1, 5), (2, 6)]
    assert node.allowed == tuple(sorted(os.sched_getaffinity(0) & {0, 1, 2, 4, 5, 6}))


def test_from_sysfs_without_numa_is_one_domain_with_all_memory(tmp_path):
    node = T.from_sysfs(fake_sysfs(tmp_path, nodes=()), hostname="fake", allowed=[0])
    assert node.numa == (T.NumaDomain(0, tuple(range(8)), os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")),)


def test_from_sysfs_names_the_missing_file(tmp_path):
    fake_sysfs(tmp_path)
    (tmp_path / "devices/system/cpu/cpu2/topology/physical_package_id").unlink()
    with pytest.raises(T.TopologyError, match=r"^cannot read .*cpu2/topology/physical_package_id: No such file"):
        T.from_sysfs(tmp_path, allowed=[0])


def test_from_sysfs_of_this_machine_matches_the_os():
    node = T.from_sysfs()
    assert len(node.pus) == os.cpu_count()
    assert set(node.allowed) == os.sched_getaffinity(0)
    assert node.hostname == socket.gethostname()
    assert all(d.memory > 0 for d in node.numa)


# ---- hwloc sources (subprocess) -----------------------------------------------------


def test_from_machine_matches_the_os_and_sysfs():
    node = run_json()
    assert len(node.pus) == os.cpu_count()
    assert set(node.allowed) == os.sched_getaffinity(0)
    sysfs = T.from_sysfs()
    assert sorted(c.pus for c in node.cores) == sorted(c.pus for c in sysfs.cores)
    assert [(d.os_index, d.cpuset) for d in node.numa if d.cpuset] == [
        (d.os_index, d.cpuset) for d in sysfs.numa if d.cpuset
    ]


def test_from_xml_reads_an_lstopo_export(tmp_path):
    xml = tmp_path / "epyc.xml"
    code = (
        f"import pyhwloc; t = pyhwloc.from_synthetic({EPYC_NPS4.replace('core:pu', '2*128:1*2')!r}, load=True);"
        f"t.export_xml_file({str(xml)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    node = run_json("--xml", str(xml))
    expected = T.from_synthetic(EPYC_NPS4)
    assert node.cores == expected.cores and node.allowed == expected.allowed
    assert [(d.os_index, d.cpuset) for d in node.numa] == [(d.os_index, d.cpuset) for d in expected.numa]


def test_cli_errors_are_one_line(tmp_path):
    done = run_module("--xml", str(tmp_path / "none.xml"))
    assert done.returncode == 2
    assert (
        done.stderr == f"t2mpi.resources.topology: topology XML {tmp_path / 'none.xml'} does not exist: "
        "export one with lstopo --of xml\n"
    )
    done = run_module("--synthetic", "package:2 cores:8")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)


def test_cli_prints_the_summary_and_sysfs_json():
    done = run_module("--synthetic", "package:1 core:16")
    assert done.stdout == T.summary(T.from_synthetic("package:1 core:16")) + "\n"
    assert run_json("--sysfs") == T.from_sysfs()


# ---- JSON and summary ---------------------------------------------------------------


def test_json_round_trip():
    nodes = [
        T.from_synthetic(EPYC_NPS4, hostname="epyc", allowed=range(8, 24)),
        T.from_synthetic("pack:2 [numa(32GB)] core:8 pu:1"),
        T.Node(
            "gpu1",
            (0,),
            (T.Core((0, 1), 0, 0, None),),
            (T.NumaDomain(0, (0, 1), GiB), T.NumaDomain(1, (), GiB)),
            (0,),
            gpus=(T.Device("cuda0", "gpu", 0),),
            nics=(T.Device("mlx5_0", "nic", None),),
        ),
    ]
    for node in nodes:
        assert T.from_dict(json.loads(json.dumps(T.to_dict(node)))) == node


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"extra": 1},
            "node JSON: unknown key 'extra'; valid keys: hostname, packages, cores, numa, allowed, gpus, nics",
        ),
        ({"cores": None}, "node JSON for 'vm' is malformed: TypeError 'NoneType' object is not iterable"),
    ],
)
def test_from_dict_errors(change, message):
    data = {**T.to_dict(T.from_synthetic("core:2", hostname="vm")), **change}
    with pytest.raises(T.TopologyError) as e:
        T.from_dict(data)
    assert str(e.value) == message
    del data["allowed"]
    with pytest.raises(T.TopologyError, match="^node JSON: missing key 'allowed'|^node JSON: unknown key"):
        T.from_dict(data)


def test_summary_names_domains_memory_and_allowed_cpuset():
    node = T.from_synthetic(INTEL_SNC2, hostname="snc", allowed=[*range(0, 10), *range(80, 90)])
    assert T.summary(node) == "\n".join(
        [
            "node snc: 2 package(s), 80 cores, 160 PUs (2 per core), 4 NUMA domain(s)",
            "  NUMA 0: PUs 0-19,80-99, 10 allowed cores, 128 GiB",
            "  NUMA 1: PUs 20-39,100-119, 0 allowed cores, 128 GiB",
            "  NUMA 2: PUs 40-59,120-139, 0 allowed cores, 128 GiB",
            "  NUMA 3: PUs 60-79,140-159, 0 allowed cores, 128 GiB",
            "  allowed: 0-9,80-89 (20 of 160 PUs, 10 cores)",
        ]
    )


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (512, "512 B"),
        (GiB, "1 GiB"),
        (32 * 10**9, "29.8 GiB"),
        (3 * 2**40, "3 TiB"),
        (1536 * 2**20, "1.5 GiB"),
    ],
)
def test_format_bytes(n, text):
    assert T.format_bytes(n) == text


# ---- storage and network of this machine (t2mpi topology without --xml/--synthetic) ----------


def test_volume_picks_the_deepest_mount_and_unescapes_it(tmp_path):
    from t2mpi.resources.storage import is_shared, volume

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"30 22 0:40 / {tmp_path}/my\\040data rw - nfs4 server:/export\\040x rw\n"
        f"31 22 0:41 / {tmp_path}/my rw - tmpfs tmpfs rw\n"
    )
    (tmp_path / "my data").mkdir()
    (tmp_path / "my").mkdir()
    v = volume(str(tmp_path / "my data" / "jobs" / "not-yet"), mountinfo=str(info))
    assert (v.mount, v.fstype, v.source) == (f"{tmp_path}/my data", "nfs4", "server:/export x")
    assert is_shared(v)
    st = os.statvfs(tmp_path / "my data")
    assert v.total == st.f_blocks * st.f_frsize and 0 <= v.free <= v.total
    assert volume(str(tmp_path / "my"), mountinfo=str(info)).fstype == "tmpfs"
    assert volume("/", mountinfo=str(info))[1:3] == ("/", "ext4")


def test_topology_shows_where_job_folders_go_and_the_interfaces(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), TMPDIR=str(tmp_path))
    env.pop("T2MPI_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "t2mpi", "topology", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    roles = {v["role"]: v for v in info["storage"]}
    assert roles["jobs_dir"]["path"] == str(tmp_path / "t2mpi-jobs")
    assert roles["scratch"]["path"] == str(tmp_path)
    st = os.statvfs(tmp_path)
    assert roles["scratch"]["total"] == st.f_blocks * st.f_frsize
    lo = next(n for n in info["network"] if n["name"] == "lo")
    assert lo["loopback"] and lo["address"] == "127.0.0.1"
    assert {n["name"] for n in info["network"]} == set(os.listdir("/sys/class/net"))
    text = subprocess.run(
        [sys.executable, "-m", "t2mpi", "topology"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    ).stdout
    assert f"  scratch: {tmp_path} on " in text and "  network: lo unknown 127.0.0.1 (loopback)" in text
    synthetic = subprocess.run(
        [sys.executable, "-m", "t2mpi", "topology", "--synthetic", "core:2 pu:1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    ).stdout
    assert "network:" not in synthetic  # another machine's description: nothing of this one
