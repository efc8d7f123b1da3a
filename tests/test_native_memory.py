"""t2mpi._native NUMA memory policy against the kernel's placement, and with bad arguments in a loop.

Works on one NUMA node and on many: the nodes come from /sys and the cpuset of this process. On one
node (this machine, CI) a page can only be on that node, so where a policy moves pages between
nodes the test checks what one node shows (the policy read back, first touch placing every page)
and records in the run's warnings what it could not check (one_node_leaves_unchecked).
"""

from __future__ import annotations

import errno
import mmap
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from t2mpi import _native

NODE_SYS = Path("/sys/devices/system/node")
SIZE = 16 << 20
MALLOC_SIZE = 64 << 20  # above glibc's largest mmap threshold (32 MiB): always fresh pages


def parse_list(text: str) -> set[int]:
    """'0-3,8' -> {0, 1, 2, 3, 8} (the kernel's list format)."""
    nodes: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        nodes.update(range(int(low), int(high or low) + 1))
    return nodes


def usable_nodes() -> tuple[int, ...]:
    """Online nodes with memory that this process's cpuset allows."""
    nodes = parse_list((NODE_SYS / "online").read_text())
    if (NODE_SYS / "has_memory").exists():
        nodes &= parse_list((NODE_SYS / "has_memory").read_text())
    allowed = re.search(r"^Mems_allowed_list:\s*(\S*)", Path("/proc/self/status").read_text(), re.M)
    if allowed:
        nodes &= parse_list(allowed.group(1))
    return tuple(sorted(nodes))


NODES = usable_nodes()
ABSENT = min(set(range(1024)) - parse_list((NODE_SYS / "possible").read_text()))  # no such node


def one_node_leaves_unchecked(what: str) -> bool:
    """True on one NUMA node, after saying in the test run's warnings that `what` was not checked
    (CI has one node, and no test may skip there); False where there are several."""
    if len(NODES) > 1:
        return False
    warnings.warn(pytest.PytestWarning(f"one NUMA node here (node {NODES[0]}): {what} was not checked"), stacklevel=2)
    return True


@pytest.fixture(autouse=True)
def default_policy():
    _native.set_mempolicy("default")
    yield
    _native.set_mempolicy("default")


def touched_mmap() -> mmap.mmap:
    """Fresh anonymous pages, written once so the kernel places them now."""
    mm = mmap.mmap(-1, SIZE)
    np.frombuffer(mm, dtype=np.uint8)[:] = 1
    return mm


def test_default_policy_has_no_nodes():
    assert _native.get_mempolicy() == ("default", ())


@pytest.mark.parametrize("node", NODES)
def test_bind_reads_back_and_resets(node):
    _native.set_mempolicy("bind", [node])
    assert _native.get_mempolicy() == ("bind", (node,))
    _native.set_mempolicy("default")
    assert _native.get_mempolicy() == ("default", ())


def test_interleave_and_preferred_and_local_read_back():
    _native.set_mempolicy("interleave", iter(NODES))
    assert _native.get_mempolicy() == ("interleave", NODES)
    _native.set_mempolicy("preferred", (NODES[-1],))
    assert _native.get_mempolicy() == ("preferred", (NODES[-1],))
    _native.set_mempolicy("local")
    assert _native.get_mempolicy() == ("local", ())


def test_bind_drops_nodes_the_kernel_cannot_use():
    # The kernel intersects the mask with the allowed nodes; only an empty result is an error.
    _native.set_mempolicy("bind", [NODES[0], ABSENT])
    assert _native.get_mempolicy() == ("bind", (NODES[0],))


def test_policy_is_per_thread_and_inherited_at_creation():
    seen = {}

    def child(key):
        seen[key] = _native.get_mempolicy()
        _native.set_mempolicy("bind", [NODES[-1]])
        seen[key + "_after"] = _native.get_mempolicy()

    t = threading.Thread(target=child, args=("fresh",))
    t.start()
    t.join()
    assert seen == {"fresh": ("default", ()), "fresh_after": ("bind", (NODES[-1],))}
    assert _native.get_mempolicy() == ("default", ())  # the caller is untouched

    _native.set_mempolicy("interleave", NODES)
    t = threading.Thread(target=child, args=("inherited",))
    t.start()
    t.join()
    assert seen["inherited"] == ("interleave", NODES)  # copied when the thread was made
    assert _native.get_mempolicy() == ("interleave", NODES)


@pytest.mark.parametrize("node", NODES)
def test_first_touch_follows_bind(node):
    _native.set_mempolicy("bind", [node])
    assert _native.get_mempolicy() == ("bind", (node,))
    mm = mmap.mmap(-1, SIZE)
    assert set(_native.page_nodes(mm)) == {-errno.ENOENT}  # no page yet: the first touch places it
    np.frombuffer(mm, dtype=np.uint8)[:] = 1
    arr = np.full(MALLOC_SIZE // 8, 1.0)  # numpy's own allocation, touched by the fill
    ba = bytearray(b"\x01") * MALLOC_SIZE
    _native.set_mempolicy("default")
    for buf in (mm, arr, ba):
        placed = _native.page_nodes(buf)
        assert len(placed) >= SIZE // mmap.PAGESIZE
        assert set(placed) == {node}
    mm.close()
    if one_node_leaves_unchecked("that bound pages go to the bound node rather than another"):
        return
    other = next(n for n in NODES if n != node)  # the same allocation bound elsewhere lands elsewhere
    _native.set_mempolicy("bind", [other])
    mm = touched_mmap()
    _native.set_mempolicy("default")
    assert set(_native.page_nodes(mm)) == {other}
    mm.close()


def test_interleave_spreads_pages_over_all_nodes():
    _native.set_mempolicy("interleave", NODES)
    assert _native.get_mempolicy() == ("interleave", NODES)
    mm = touched_mmap()
    placed = _native.page_nodes(mm)
    assert len(placed) == SIZE // mmap.PAGESIZE and set(placed) == set(NODES)
    mm.close()
    if one_node_leaves_unchecked("that interleaving spreads pages evenly over several nodes"):
        return
    share = len(placed) // len(NODES)  # round robin by page: each node holds about its share
    for n in NODES:
        assert placed.count(n) >= share // 2, (n, placed.count(n), share)


def test_page_nodes_of_untouched_pages_are_minus_enoent():
    for flags in (mmap.MAP_SHARED, mmap.MAP_PRIVATE):
        mm = mmap.mmap(-1, SIZE, flags=flags | mmap.MAP_ANONYMOUS)
        assert set(_native.page_nodes(mm)) == {-errno.ENOENT}
        mm.close()


def test_page_nodes_of_pages_only_read():
    # Private: a read maps the shared zero page (-EFAULT). Shared (mmap's default): a real page.
    for flags, expected in ((mmap.MAP_PRIVATE, {-errno.EFAULT}), (mmap.MAP_SHARED, {NODES[0]})):
        _native.set_mempolicy("bind", [NODES[0]])
        mm = mmap.mmap(-1, SIZE, flags=flags | mmap.MAP_ANONYMOUS)
        view = np.frombuffer(mm, dtype=np.uint8)
        assert view[:: mmap.PAGESIZE].sum() == 0
        assert set(_native.page_nodes(mm)) == expected
        del view
        mm.close()


def test_page_nodes_counts_pages_spanned():
    mm = touched_mmap()
    page = mmap.PAGESIZE
    with memoryview(mm) as whole:
        assert len(_native.page_nodes(whole[:0])) == 0
        assert len(_native.page_nodes(whole[:1])) == 1
        assert len(_native.page_nodes(whole[page - 1 : page + 1])) == 2
        assert len(_native.page_nodes(whole[: 3 * page])) == 3
    mm.close()


def test_errors_carry_errno_and_arguments():
    with pytest.raises(OSError) as info:
        _native.set_mempolicy("bind", [ABSENT])
    assert info.value.errno == errno.EINVAL
    assert f"set_mempolicy(mode=bind, nodes=({ABSENT},))" in str(info.value)
    with pytest.raises(OSError) as info:
        _native.set_mempolicy("default", [NODES[0]])  # default takes no nodes
    assert info.value.errno == errno.EINVAL and "mode=default" in str(info.value)
    assert _native.get_mempolicy() == ("default", ())


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: _native.set_mempolicy("nope"), ValueError),
        (lambda: _native.set_mempolicy("BIND", [0]), ValueError),
        (lambda: _native.set_mempolicy("bind", [5000]), ValueError),
        (lambda: _native.set_mempolicy("bind", [1024]), ValueError),
        (lambda: _native.set_mempolicy("bind", [-1]), ValueError),
        (lambda: _native.set_mempolicy("bind", []), ValueError),
        (lambda: _native.set_mempolicy("bind"), ValueError),
        (lambda: _native.set_mempolicy("interleave", ()), ValueError),
        (lambda: _native.set_mempolicy("preferred", ()), ValueError),
        (lambda: _native.set_mempolicy("bind", [ABSENT]), OSError),
        (lambda: _native.set_mempolicy("local", [0]), OSError),
        (lambda: _native.set_mempolicy("bind", ["0"]), TypeError),
        (lambda: _native.set_mempolicy("bind", [0.0]), TypeError),
        (lambda: _native.set_mempolicy("bind", [2**70]), OverflowError),
        (lambda: _native.set_mempolicy("bind", 0), TypeError),
        (lambda: _native.set_mempolicy(2, [0]), TypeError),
        (lambda: _native.set_mempolicy(), TypeError),
        (lambda: _native.get_mempolicy(0), TypeError),
        (lambda: _native.page_nodes(42), TypeError),
        (lambda: _native.page_nodes("text"), TypeError),
        (lambda: _native.page_nodes(), TypeError),
    ],
)
def test_bad_arguments_in_a_loop(call, exc):
    _native.set_mempolicy("bind", [NODES[0]])
    for _ in range(2000):
        with pytest.raises(exc):
            call()
    assert _native.get_mempolicy() == ("bind", (NODES[0],))


def test_good_calls_in_a_loop():
    mm = touched_mmap()
    for _ in range(2000):
        _native.set_mempolicy("interleave", NODES)
        assert _native.get_mempolicy() == ("interleave", NODES)
        assert len(_native.page_nodes(memoryview(mm)[: 2 * mmap.PAGESIZE])) == 2
    mm.close()
