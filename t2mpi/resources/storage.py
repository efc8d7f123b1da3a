"""The filesystems under a job's folders on this node: mount point, type, device, size, free space."""

from __future__ import annotations

import os
from collections import namedtuple

Volume = namedtuple("Volume", "path mount fstype source total free")
Volume.__doc__ = """The filesystem holding `path`: its mount point, type (ext4, nfs, lustre, tmpfs…),
source (device or server:export), and its size and the space free to this user, in bytes."""

SHARED_TYPES = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "fuse.sshfs")


def volume(path: str, mountinfo: str = "/proc/self/mountinfo") -> Volume:
    """The filesystem of `path` (the nearest existing folder above it, when it is not there yet)."""
    where = os.path.abspath(path)
    while not os.path.exists(where):
        where = os.path.dirname(where)
    real = os.path.realpath(where)
    mount, fstype, source = "/", "?", "?"
    for line in _lines(mountinfo):
        # id parent major:minor root MOUNT options [optional...] - TYPE SOURCE superoptions
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        if _within(real, point) and len(point) >= len(mount):
            mount, fstype, source = point, tail[0], _unescape(tail[1])
    st = os.statvfs(real)
    return Volume(path, mount, fstype, source, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def is_shared(vol: Volume) -> bool:
    """A network or parallel filesystem, seen alike from every node."""
    return vol.fstype in SHARED_TYPES


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _within(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 …)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text
