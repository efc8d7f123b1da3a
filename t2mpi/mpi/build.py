"""What the MPI was built with, and the names of the MPI flavours t2mpi speaks.

Open MPI's components from `ompi_info --parsable`, MPICH's device and netmods from
`mpichversion`; the launcher (t2mpi.mpi.launcher) caches them per launcher file.
"""

from __future__ import annotations

import os

OPENMPI, MPICH, INTELMPI, UNKNOWN = "openmpi", "mpich", "intelmpi", "unknown"


def mpi_components(flavour: str, launcher_path: str) -> dict:
    """What the MPI was built with. Open MPI: {"pml": [...], "mtl": [...], "btl": [...]} from
    `ompi_info --parsable`; MPICH: {"device": "ch4:ofi", "netmods": ["ofi"]} from
    `mpichversion`; {} for other flavours or when the tool is not beside the launcher."""
    from ..procs import run

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
        parts = line.split(":")  # mca:pml:ucx:version:"component:5.0.11"
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
