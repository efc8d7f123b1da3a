"""The network transport for a job: a pure function from the node's fabric (t2mpi.net.fabric),
the MPI's flavour and build (t2mpi.mpi.build) and the job's `network` settings to the
transport, the rank environment that selects it, and one-line reasons a person reads in
`t2mpi doctor`.
"""

from __future__ import annotations

from ..job.spec import TRANSPORTS
from ..mpi.build import INTELMPI, MPICH, OPENMPI
from .fabric import OFI_LIBRARY, UCX_LIBRARY, Choice, Fabric, FabricError, NotHereError, Port, is_active

OPA_PROVIDERS = ("opx", "psm2")  # Omni-Path, best first
IB_OFI_PROVIDERS = ("mlx", "verbs;ofi_rxm")  # InfiniBand/RoCE through libfabric, best first
# (mlx: Intel MPI's own libfabric, over UCX)


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
    env = {"ucx": _ucx_env, "ofi": _ofi_env, "tcp": _tcp_env}[transport](fabric, flavour, components, network, why)
    if network.get("ucx_tls") and transport != "ucx" and "UCX_TLS" not in env:
        why.append(f"network.ucx_tls ignored: the transport is {transport}")
    return Choice(transport, env, why)


def _auto(fabric: Fabric, flavour: str, components: dict, why: list[str]) -> str:
    ports = _active_fabric_ports(fabric)
    for port in fabric.ib_ports:
        if port not in ports:
            why.append(f"{_port_name(port)} ({_layer(port)}) is not active ({port.state or 'no state'}): not used")
    opa = [p for p in fabric.opa if is_active(p)]
    if fabric.opa and not opa:
        why.append(f"Omni-Path {fabric.opa[0].device} has no active port: not used")
    elif opa and _mpi_lacks(flavour, components, "ofi") is not None:
        why.append(f"Omni-Path {_port_name(opa[0])} is active but {_mpi_lacks(flavour, components, 'ofi')}")
    elif opa and _opa_provider(fabric) is None:
        why.append(
            f"Omni-Path {_port_name(opa[0])} is active but libfabric has no usable "
            f"{' or '.join(OPA_PROVIDERS)} provider ({_ofi_seen(fabric)}): not used"
        )
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
        raise NotHereError(
            "network.transport ucx: no active InfiniBand or RoCE port on this node"
            + (f" ({down})" if down else "")
            + "; use transport: auto or tcp"
        )
    lacks = _ucx_lacks(fabric, flavour, components)
    if lacks is not None:  # the MPI's lack holds on every node; the library's only on this one
        mpi = flavour == INTELMPI or _mpi_lacks(flavour, components, "ucx") is not None
        raise (FabricError if mpi else NotHereError)(f"network.transport ucx: {lacks}; use transport: auto")
    layer = ports[0].link_layer
    ports = [p for p in ports if p.link_layer == layer]
    env = {"UCX_NET_DEVICES": ",".join(_port_name(p) for p in ports)}
    why.append(
        f"ucx over {_layer(ports[0])} {env['UCX_NET_DEVICES']} (active, {ports[0].rate or 'rate unknown'}), "
        f"UCX {fabric.ucx}"
    )
    if network.get("ucx_tls"):
        env["UCX_TLS"] = network["ucx_tls"]
    if flavour == OPENMPI:
        env["OMPI_MCA_pml"] = "ucx"
        env["OMPI_MCA_btl"] = "^ofi"
        why.append("Open MPI: pml ucx; the ofi btl is off (unused beside ucx, and it costs a 1 s shutdown sleep)")
    else:
        _mpich_netmod(components, "ucx", env, why)
    return env


def _ofi_env(fabric, flavour, components, network, why) -> dict[str, str]:
    lacks = _mpi_lacks(flavour, components, "ofi")
    if lacks is not None:
        raise FabricError(f"network.transport ofi: {lacks}; use transport: auto")
    provider = network.get("provider") or _ofi_provider(fabric)
    if provider is None:
        raise NotHereError(
            "network.transport ofi: no fabric provider is usable here (Omni-Path "
            f"needs opx or psm2, InfiniBand verbs; {_ofi_seen(fabric)}); "
            "use transport: auto or tcp"
        )
    if fabric.ofi is None:
        raise NotHereError(
            f"network.transport ofi: no libfabric ({OFI_LIBRARY}) on this node or "
            "beside the MPI; install libfabric or use transport: auto"
        )
    missing = [part for part in provider.split(";") if part not in _provider_parts(fabric)]
    if missing:
        raise NotHereError(
            f"network.provider: libfabric provider {missing[0]} is not usable here "
            f"({_ofi_seen(fabric)}); use one of them or transport: auto"
        )
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
        why.append(f"Open MPI: pml ob1 with btls self,{shared},tcp only (no fabric btl, no ofi shutdown sleep)")
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
            raise NotHereError(
                f"network.interface: {wanted} is not an interface on this node (have: {', '.join(by_name) or 'none'})"
            )
        if by_name[wanted].operstate == "down":
            raise NotHereError(f"network.interface: {wanted} is down; name an interface that is up")
        why.append(f"tcp over {wanted} (network.interface)")
        return wanted
    up = [n for n in fabric.nets if n.operstate == "up" and not n.loopback]
    if up:
        best = min(up, key=lambda n: (not n.physical, -(n.speed or 0), n.name))
        speed = f"{best.speed} Mb/s" if best.speed else "speed unknown"
        why.append(
            f"tcp over {best.name} (up, {speed}; the first of: {', '.join(n.name for n in up)})"
            if len(up) > 1
            else f"tcp over {best.name} (up, {speed})"
        )
        return best.name
    loop = next((n.name for n in fabric.nets if n.loopback), None)
    if loop:
        why.append(f"tcp over {loop}: no other interface is up, so ranks can only meet on this node")
        return loop
    why.append("tcp: no network interface found; the MPI picks one itself")
    return None


# ---- small facts for choose ---------------------------------------------------------------


def _active_fabric_ports(fabric: Fabric) -> list[Port]:
    """Active InfiniBand ports, else active RoCE ones (one kind: UCX_NET_DEVICES lists them)."""
    active = [p for p in fabric.ib_ports if is_active(p)]
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
    if any(is_active(p) for p in fabric.opa) and _opa_provider(fabric):
        return _opa_provider(fabric)
    if _active_fabric_ports(fabric):
        return next((p for p in IB_OFI_PROVIDERS if _has_provider(fabric, p.split(";")[0])), None)
    return None


def _ofi_reason(fabric: Fabric, provider: str) -> str:
    if provider in OPA_PROVIDERS:
        opa = next((p for p in fabric.opa if is_active(p)), None)
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
            return (
                f"UCX {fabric.ucx} has no transport on {', '.join(ports)} (it can use: "
                f"{', '.join(fabric.ucx_resources) or 'nothing'}; is its ib module installed?)"
            )
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


def summary(fabric: Fabric, choice: Choice) -> str:
    """Some lines for `t2mpi doctor`: what the node has, the transport, its environment, why."""

    def port_line(p: Port) -> str:
        numa = "" if p.numa is None else f", NUMA {p.numa}"
        return f"{_port_name(p)} {p.state or 'no state'}, {p.rate or 'rate unknown'}{numa}"

    lines = [
        "InfiniBand/RoCE: " + ("; ".join(f"{_layer(p)} {port_line(p)}" for p in fabric.ib_ports) or "none"),
        "Omni-Path: " + ("; ".join(port_line(p) for p in fabric.opa) or "none"),
        "interfaces: "
        + (
            "; ".join(
                f"{n.name} {n.operstate}"
                + (f" {n.speed} Mb/s" if n.speed else "")
                + (" (loopback)" if n.loopback else "")
                for n in fabric.nets
            )
            or "none"
        ),
        f"UCX: {fabric.ucx or 'not found'}"
        + (f" (transports: {', '.join(fabric.ucx_resources) or 'none'})" if fabric.ucx_resources is not None else ""),
        f"libfabric: {_ofi_seen(fabric)}",
        f"transport: {choice.transport}",
    ]
    lines += [f"  {key}={value}" for key, value in sorted(choice.env.items())]
    lines += [f"  - {reason}" for reason in choice.why]
    return "\n".join(lines)
