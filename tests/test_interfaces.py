"""The network interfaces t2mpi chooses from are this process's own (its network namespace's), not
what /sys/class/net lists: a namespace entered without remounting /sys, as in many containers,
shows the host's interfaces there (issue #16, part 7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import JOBS, PYTHON, only_job, state_of
from test_fabric import AUTO, COMPONENTS, node

from t2mpi.net import choice as netchoice
from t2mpi.net import fabric


def test_the_interfaces_are_the_kernels_and_sysfs_only_gives_their_attributes(tmp_path):
    sysfs = node(tmp_path, "none")  # a fake /sys that lists eth0 (up) and lo
    fab = fabric.scan(str(sysfs), interfaces=["lo", "vi-t2t-n1"])
    assert [n.name for n in fab.nets] == ["lo", "vi-t2t-n1"]
    lo, other = fab.nets
    assert lo.loopback and lo.operstate == "unknown"  # lo's attributes from the fake sysfs
    assert other.operstate == "unknown" and not other.physical  # no such interface here: no flags
    chosen = netchoice.choose(fab, "mpich", COMPONENTS["mpich"], AUTO)
    assert chosen.env["FI_TCP_IFACE"] == "lo"  # never the eth0 that only sysfs has
    with pytest.raises(fabric.NotHereError, match="network.interface: eth0 is not an interface on this node"):
        netchoice.choose(fab, "mpich", COMPONENTS["mpich"], {"transport": "auto", "interface": "eth0"})
    assert [n.name for n in fabric.scan(str(sysfs)).nets] == ["eth0", "lo"]  # a fake sysfs alone: its own list


def test_the_real_scan_lists_what_if_nameindex_gives():
    assert [n.name for n in fabric.scan().nets] == sorted(name for _, name in socket.if_nameindex())
    lo = next(n for n in fabric.scan().nets if n.name == "lo")
    assert lo.loopback


# In a network namespace of its own: lo up, and a veth pair whose both ends stay inside it (nothing
# on the host's side); then the command. /sys is not remounted, so it still lists the host's.
IN_NAMESPACE = textwrap.dedent(
    """
    import os, subprocess, sys
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "link", "add", "t2t-a", "type", "veth", "peer", "name", "t2t-b"],
                 ["ip", "link", "set", "t2t-a", "up"], ["ip", "link", "set", "t2t-b", "up"],
                 ["ip", "addr", "add", "10.251.7.1/24", "dev", "t2t-a"]):
        subprocess.run(argv, check=True, timeout=10)
    os.execv(sys.executable, [sys.executable, "-m", "t2mpi", *sys.argv[1:]])
    """
)


def in_namespace(work, *args: str) -> subprocess.CompletedProcess[str]:
    script = work / "netns.py"
    script.write_text(IN_NAMESPACE)
    argv = ["unshare", "--net", PYTHON, str(script), *args]
    return subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=120)


@pytest.mark.mpi
def test_a_job_in_a_namespace_without_its_own_sysfs_runs_over_the_namespaces_interface(work):
    host_only = sorted(set(os.listdir("/sys/class/net")) - {"lo"})
    assert host_only, "this machine's /sys/class/net lists no interface but lo"
    doctor = in_namespace(work, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    line = next(x for x in doctor.stdout.splitlines() if x.startswith("interfaces: "))
    assert line == "interfaces: lo unknown (loopback); t2t-a up; t2t-b up", line
    flavour = "openmpi" if "openmpi" in sys.prefix else "mpich"
    wanted = "OMPI_MCA_btl_tcp_if_include=t2t-a" if flavour == "openmpi" else "FI_TCP_IFACE=t2t-a"
    assert f"  {wanted}" in doctor.stdout.splitlines(), doctor.stdout
    assert not any(name in line for name in host_only)
    done = in_namespace(work, "run", str(JOBS / "hello.yaml"), "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert state_of(only_job(work))["state"] == "COMPLETED"
