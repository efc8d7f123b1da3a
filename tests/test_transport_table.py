"""The transport choice pinned to literal values: fabric facts written by hand, and for each the
environment every rank gets, the reasons, the `t2mpi doctor` lines and the `run --dry-run`
launch line, as literal strings (the doctor and dry-run tests on this node take
t2mpi.net.choice.choose as their oracle; these do not)."""

from __future__ import annotations

import pytest
from conftest import JOBS

from t2mpi.job.spec import load
from t2mpi.mpi.launcher import Host, MpiLauncher, command
from t2mpi.net import choice as netchoice
from t2mpi.net.fabric import Fabric, NetIf, Port

ETH0 = NetIf("eth0", "up", 10000, False, True)
LO = NetIf("lo", "unknown", None, True, False)
IB = Port("mlx5_0", 1, "4: ACTIVE", "InfiniBand", "100 Gb/sec (4X EDR)", 0)
ROCE = Port("mlx5_1", 1, "4: ACTIVE", "Ethernet", "25 Gb/sec (1X EDR)", 1)
OPA = Port("hfi1_0", 1, "4: ACTIVE", "InfiniBand", "100 Gb/sec (4X EDR)", 1)
OFI_PLAIN = ["tcp;ofi_rxm", "shm", "tcp"]
OFI_IB = ["verbs;ofi_rxm", "tcp;ofi_rxm", "shm", "tcp"]

TCP_NODE = Fabric([], [], [ETH0, LO], "1.16.0", OFI_PLAIN)
IB_NODE = Fabric([IB], [], [ETH0, LO], "1.16.0", OFI_IB, ["self/memory0", "tcp/eth0", "rc_mlx5/mlx5_0:1"])
ROCE_NO_UCX = Fabric([ROCE], [], [ETH0, LO], None, OFI_IB)
OPA_NODE = Fabric([], [OPA], [ETH0, LO], None, ["psm2", "tcp;ofi_rxm", "shm", "tcp"])
TWO_NICS = Fabric(
    [],
    [],
    [
        NetIf("eth0", "up", 1000, False, True),
        NetIf("eth1", "up", 25000, False, True),
        NetIf("br0", "up", None, False, False),
        LO,
    ],
    "1.16.0",
    OFI_PLAIN,
)

OMPI5 = {"pml": ["cm", "monitoring", "ob1", "ucx", "v"], "mtl": ["ofi"], "btl": ["self", "ofi", "sm", "tcp", "uct"]}
MPICH_UCX_OFI = {"device": "ch4:ucx ofi", "netmods": ["ucx", "ofi"]}
AUTO = {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None}

OMPI_TCP_WHY = "Open MPI: pml ob1 with btls self,sm,tcp only (no fabric btl, no ofi shutdown sleep)"
UCX_WHY = "ucx over InfiniBand mlx5_0:1 (active, 100 Gb/sec (4X EDR)), UCX 1.16.0"

# (fabric, flavour, components) -> (transport, environment, reasons)
TABLE = {
    "openmpi-tcp": (
        (TCP_NODE, "openmpi", OMPI5),
        "tcp",
        {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,sm,tcp", "OMPI_MCA_btl_tcp_if_include": "eth0"},
        ["tcp over eth0 (up, 10000 Mb/s)", OMPI_TCP_WHY],
    ),
    "mpich-tcp": (
        (TCP_NODE, "mpich", MPICH_UCX_OFI),
        "tcp",
        {"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "MPICH_CH4_NETMOD": "ofi"},
        ["tcp over eth0 (up, 10000 Mb/s)", "MPICH device ch4:ucx ofi: netmod ofi"],
    ),
    "intelmpi-tcp": (
        (TCP_NODE, "intelmpi", {}),
        "tcp",
        {"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "I_MPI_FABRICS": "shm:ofi"},
        ["tcp over eth0 (up, 10000 Mb/s)"],
    ),
    "openmpi-fastest-physical-nic": (
        (TWO_NICS, "openmpi", OMPI5),
        "tcp",
        {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,sm,tcp", "OMPI_MCA_btl_tcp_if_include": "eth1"},
        ["tcp over eth1 (up, 25000 Mb/s; the first of: eth0, eth1, br0)", OMPI_TCP_WHY],
    ),
    "openmpi-infiniband": (
        (IB_NODE, "openmpi", OMPI5),
        "ucx",
        {"UCX_NET_DEVICES": "mlx5_0:1", "OMPI_MCA_pml": "ucx", "OMPI_MCA_btl": "^ofi"},
        [
            UCX_WHY,
            "Open MPI: pml ucx; the ofi btl is off (unused beside ucx, and it costs a 1 s shutdown sleep)",
        ],
    ),
    "mpich-infiniband": (
        (IB_NODE, "mpich", MPICH_UCX_OFI),
        "ucx",
        {"UCX_NET_DEVICES": "mlx5_0:1", "MPICH_CH4_NETMOD": "ucx"},
        [UCX_WHY, "MPICH device ch4:ucx ofi: netmod ucx"],
    ),
    "mpich-roce-without-ucx": (
        (ROCE_NO_UCX, "mpich", MPICH_UCX_OFI),
        "ofi",
        {"FI_PROVIDER": "verbs;ofi_rxm", "MPICH_CH4_NETMOD": "ofi"},
        [
            "mlx5_1:1 (RoCE) is active but no UCX library (libucp.so.0) on this node or beside the MPI",
            "ofi with libfabric provider verbs;ofi_rxm for RoCE mlx5_1:1",
            "MPICH device ch4:ucx ofi: netmod ofi",
        ],
    ),
    "openmpi-omni-path": (
        (OPA_NODE, "openmpi", OMPI5),
        "ofi",
        {"FI_PROVIDER": "psm2", "OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi"},
        ["ofi with libfabric provider psm2 for Omni-Path hfi1_0:1", "Open MPI: pml cm with the ofi mtl"],
    ),
}


@pytest.mark.parametrize("case", sorted(TABLE))
def test_the_choice_for_hand_written_facts(case):
    (fabric, flavour, components), transport, env, why = TABLE[case]
    assert netchoice.choose(fabric, flavour, components, AUTO) == (transport, env, why)


def test_doctor_lines_for_an_infiniband_node():
    choice = netchoice.choose(IB_NODE, "openmpi", OMPI5, AUTO)
    assert netchoice.summary(IB_NODE, choice).splitlines() == [
        "InfiniBand/RoCE: InfiniBand mlx5_0:1 4: ACTIVE, 100 Gb/sec (4X EDR), NUMA 0",
        "Omni-Path: none",
        "interfaces: eth0 up 10000 Mb/s; lo unknown (loopback)",
        "UCX: 1.16.0 (transports: self/memory0, tcp/eth0, rc_mlx5/mlx5_0:1)",
        "libfabric: usable providers: verbs;ofi_rxm, tcp;ofi_rxm, shm, tcp",
        "transport: ucx",
        "  OMPI_MCA_btl=^ofi",
        "  OMPI_MCA_pml=ucx",
        "  UCX_NET_DEVICES=mlx5_0:1",
        f"  - {UCX_WHY}",
        "  - Open MPI: pml ucx; the ofi btl is off (unused beside ucx, and it costs a 1 s shutdown sleep)",
    ]


LAUNCH = ["/opt/venv/bin/python", "-P", "-m", "t2mpi.launch", "--job-dir", "/jobs/hello-1", "--quiet"]


@pytest.mark.parametrize(
    "case, mpi, ofi_fabric, launcher_words",
    [
        (
            "openmpi-tcp",
            MpiLauncher("/opt/ompi/bin/mpiexec", "openmpi", "5.0.5"),
            False,
            ["/opt/ompi/bin/mpiexec", "-n", "5", "--bind-to", "none",
             "-x", "BLIS_NUM_THREADS=1", "-x", "MKL_NUM_THREADS=1", "-x", "NUMEXPR_NUM_THREADS=1",
             "-x", "OMPI_MCA_btl=self,sm,tcp", "-x", "OMPI_MCA_btl_tcp_if_include=eth0", "-x", "OMPI_MCA_pml=ob1",
             "-x", "OMP_NUM_THREADS=1", "-x", "OPENBLAS_NUM_THREADS=1"],
        ),
        (
            "openmpi-infiniband",
            MpiLauncher("/opt/ompi/bin/mpiexec", "openmpi", "5.0.5"),
            True,
            ["/opt/ompi/bin/mpiexec", "-n", "5", "--bind-to", "none",
             "-x", "BLIS_NUM_THREADS=1", "-x", "MKL_NUM_THREADS=1", "-x", "NUMEXPR_NUM_THREADS=1",
             "-x", "OMPI_MCA_btl=^ofi", "-x", "OMPI_MCA_pml=ucx",
             "-x", "OMP_NUM_THREADS=1", "-x", "OPENBLAS_NUM_THREADS=1", "-x", "UCX_NET_DEVICES=mlx5_0:1"],
        ),
        (
            "mpich-tcp",
            MpiLauncher("/opt/mpi/bin/mpiexec", "mpich", "4.2.0"),
            False,
            ["/opt/mpi/bin/mpiexec", "-n", "5",
             "-genv", "BLIS_NUM_THREADS", "1", "-genv", "FI_PROVIDER", "tcp", "-genv", "FI_TCP_IFACE", "eth0",
             "-genv", "MKL_NUM_THREADS", "1", "-genv", "MPICH_CH4_NETMOD", "ofi",
             "-genv", "NUMEXPR_NUM_THREADS", "1", "-genv", "OMP_NUM_THREADS", "1",
             "-genv", "OPENBLAS_NUM_THREADS", "1"],
        ),
        (
            "mpich-roce-without-ucx",
            MpiLauncher("/opt/mpi/bin/mpiexec", "mpich", "4.2.0"),
            True,
            ["/opt/mpi/bin/mpiexec", "-n", "5",
             "-genv", "BLIS_NUM_THREADS", "1", "-genv", "FI_PROVIDER", "verbs;ofi_rxm",
             "-genv", "MKL_NUM_THREADS", "1", "-genv", "MPICH_CH4_NETMOD", "ofi",
             "-genv", "NUMEXPR_NUM_THREADS", "1", "-genv", "OMP_NUM_THREADS", "1",
             "-genv", "OPENBLAS_NUM_THREADS", "1"],
        ),
    ],
)  # fmt: skip
def test_the_dry_run_launch_line_for_hand_written_facts(tmp_path, case, mpi, ofi_fabric, launcher_words):
    """What `t2mpi run jobs/hello.yaml --dry-run` prints as its last line (4 workers + 1 master
    on an 8-CPU node, not root): the launcher, its options, every variable, then the ranks."""
    (fabric, flavour, components), *_ = TABLE[case]
    assert mpi.flavour == flavour
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(tmp_path)})
    choice = netchoice.choose(fabric, flavour, components, AUTO)
    host = Host(cpus=8, root=False, ofi_fabric=ofi_fabric, slurm_allocation=False, name="node1")
    argv = command(mpi, spec, "/jobs/hello-1", "/opt/venv/bin/python", host, network=choice.env)
    assert argv == launcher_words + LAUNCH
