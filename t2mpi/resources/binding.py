"""Applying one worker's placement inside its own process, before the user's code runs.

bind_worker() pins the process to the worker's cores, binds its memory to the worker's NUMA
domain and caps BLAS/OpenMP thread pools at the worker's thread count; read_binding() is what
the kernel says now, for every thread; check() compares the two; limit_memory() makes an
allocation beyond the worker's memory raise MemoryError in that worker instead of taking the
node down.  Pure Python over t2mpi._native: no MPI, no hwloc, and cheap on every rank (no
dataclasses or typing: Binding and MemoryLimit are namedtuples).

Thread pools: the variables in t2mpi.job.spec.THREAD_LIMIT_VARS are always set; a BLAS or OpenMP runtime reads them
when it loads, which costs nothing now.  A runtime that is already loaded (numpy imported before
bind_worker) ignores them, so then, and only then, threadpoolctl.threadpool_limits() is applied
as well: importing threadpoolctl costs 35-60 ms in a bare interpreter (about 7 ms once numpy is
imported), which a rank should not pay for nothing.  limit_pools() does the same later.

Memory limit: RLIMIT_DATA (Linux >= 4.7 counts every private writable mapping in it), never
RLIMIT_AS.  Measured on a Python 3.12 + numpy (OpenBLAS) + MPICH rank, in MiB:

    after                      VmSize  VmData  RSS
    python start                   13       4   10
    import numpy                  128      85   24
    MPI init (mpiexec -n 2)       272     137   42
    8 threads alive               848     203   42   (8 MiB stack + 64 MiB malloc arena each)
    8 threads that called BLAS   1016     395   50   (~26 MiB OpenBLAS buffer each)

The address space grows 60 MiB per thread that RSS never sees, so RLIMIT_AS either starves
threads or limits nothing.  VmData grows too, with reservations: thread stacks and OpenBLAS
buffers (~40 MiB per pool thread at import, ~26 MiB per Python thread that calls BLAS).  A limit
that starves them does not give MemoryError: OpenBLAS prints "Memory allocation still failed"
and exits, or the process segfaults.  So the limit is VmData now + the worker's memory +
headroom, HEADROOM + HEADROOM_PER_CPU for each CPU the process may use: a guard against
runaway allocations, not exact accounting (that is the batch system's cgroup).
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from .. import _native
from ..errors import T2mpiError
from ..job.spec import THREAD_LIMIT_VARS
from .cpuset import format_cpuset

# Shared libraries whose thread pools ignore THREAD_LIMIT_VARS once loaded (names in /proc/self/maps).
POOL_LIBRARIES = ("openblas", "libmkl", "mkl_rt", "libgomp", "libomp", "libiomp", "libblis", "flexiblas")
HEADROOM = 64 << 20
HEADROOM_PER_CPU = 96 << 20

Binding = namedtuple(
    "Binding",
    [
        "worker",  # the worker id of the placement
        "cores",  # requested: the worker's cores (PU OS indices)
        "affinity",  # read back: the calling thread's CPUs, from the kernel
        "rebound",  # tids of the process's other threads, moved onto the cores too
        "numa",  # requested: the NUMA domain of the worker's memory
        "mem_policy",  # requested mode ("bind", "preferred", ...) or None
        "mempolicy",  # read back: (mode, nodes) of the calling thread
        "mem_note",  # "" when the policy was applied, else why not
        "threads",  # the thread count that pools are capped at
        "pools",  # how: "env", or "env + threadpoolctl (...)", or why threadpoolctl was not used
        "ms",  # what binding cost, in milliseconds
    ],
)

MemoryLimit = namedtuple(
    "MemoryLimit",
    [
        "resource",  # "RLIMIT_DATA", or None when this kernel cannot limit (see note)
        "nbytes",  # the worker's memory, as asked
        "base",  # VmData when the limit was set
        "headroom",  # bytes added for start-up reservations
        "soft",  # the soft limit set (bytes); the hard limit is left as it was
        "hard",
        "note",
    ],
)


class BindingError(T2mpiError, OSError):
    """The worker's placement cannot be applied here; the one-line message says why."""


def bind_worker(placement, *, mem_policy: str | None = "bind") -> Binding:
    """Pin this process to placement.cores, bind its memory to placement.numa, cap thread pools.

    The calling thread (the rank's main thread) and every thread the process already has get
    the worker's cores; threads started later inherit them.  The memory policy is the calling
    thread's (the kernel has no other): threads started later inherit it, earlier ones keep
    theirs.  It is skipped, with the reason in mem_note, when the domain is not a memory node
    this process may use (a plan for another machine, a synthetic topology).
    """
    started = time.perf_counter()
    worker, cores = placement.worker, tuple(placement.cores)
    try:
        _native.setaffinity(0, cores)
    except (OSError, ValueError) as exc:
        raise BindingError(
            f"worker {worker}: cannot bind to CPUs {format_cpuset(cores)}: {_reason(exc)}; "
            f"this process may use CPUs {format_cpuset(os.sched_getaffinity(0))} "
            "(was the plan made for another node?)"
        ) from None
    rebound = _rebind_other_threads(cores)
    mem_note = _bind_memory(placement.numa, mem_policy)
    threads = len(placement.thread_cores)
    pools = _cap_pools(threads)
    return Binding(
        worker,
        cores,
        _native.getaffinity(),
        rebound,
        placement.numa,
        mem_policy,
        _native.get_mempolicy(),
        mem_note,
        threads,
        pools,
        (time.perf_counter() - started) * 1e3,
    )


def _rebind_other_threads(cores: tuple[int, ...]) -> tuple[int, ...]:
    me, moved = _native.gettid(), []
    for tid in _thread_ids():
        if tid == me:
            continue
        try:
            _native.setaffinity(tid, cores)
        except ProcessLookupError:  # it ended meanwhile
            continue
        moved.append(tid)
    return tuple(moved)


def _bind_memory(numa: int, mode: str | None) -> str:
    if mode is None:
        return "no memory policy was asked for"
    nodes = memory_nodes()
    if numa not in nodes:
        return (
            f"NUMA {numa} is not a memory node this process may use "
            f"(memory nodes: {format_cpuset(nodes) or 'none'}); memory policy left as it was"
        )
    _native.set_mempolicy(mode, (numa,))
    return ""


def _cap_pools(threads: int) -> str:
    for name in THREAD_LIMIT_VARS:
        os.environ[name] = str(threads)
    loaded = loaded_pool_libraries()
    if not loaded:
        return "env"
    return limit_pools(threads)


def limit_pools(threads: int) -> str:
    """Cap the thread pools of BLAS/OpenMP runtimes already loaded (threadpoolctl); what was done."""
    loaded = ", ".join(loaded_pool_libraries()) or "none loaded"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return f"env; threadpoolctl is not installed: loaded pools keep their size ({loaded})"
    threadpool_limits(threads)
    return f"env + threadpoolctl ({loaded})"


def loaded_pool_libraries() -> tuple[str, ...]:
    """File names of loaded shared libraries that run thread pools (from /proc/self/maps)."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rpartition(" ")[2].rstrip("\n")
            name = path.rpartition("/")[2]
            if ".so" in name and any(key in name for key in POOL_LIBRARIES):
                found.add(name)
    return tuple(sorted(found))


def memory_nodes() -> tuple[int, ...]:
    """NUMA nodes with memory that this process may allocate from (sysfs and Mems_allowed)."""
    base = "/sys/devices/system/node/"
    nodes = None
    for name in ("has_memory", "online"):
        try:
            with open(base + name) as f:
                nodes = _parse_list(f.read())
            break
        except FileNotFoundError:
            continue
    if nodes is None:
        return ()
    allowed = status_field("Mems_allowed_list")
    return tuple(sorted(nodes & _parse_list(allowed))) if allowed is not None else tuple(sorted(nodes))


# ---- reading back ---------------------------------------------------------------------


def read_binding(pool=None) -> dict:
    """What the kernel says now: every thread of this process (tid, name, CPUs it may run on,
    the CPU it last ran on), the calling thread's memory policy, the memory nodes and limit.
    pool (a WorkerThreads): also which tid is its thread t, pinned to which core.  JSON-able."""
    import resource

    pool_tids = pool.tids if pool is not None else ()  # first: it starts the pool
    threads = []
    for tid in _thread_ids():
        try:
            name, last_cpu = _task_stat(tid)
            affinity = sorted(os.sched_getaffinity(tid))
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        threads.append({"tid": tid, "name": name, "affinity": affinity, "last_cpu": last_cpu})
    mode, nodes = _native.get_mempolicy()
    soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
    report = {
        "pid": os.getpid(),
        "tid": _native.gettid(),
        "affinity": list(_native.getaffinity()),
        "mempolicy": {"mode": mode, "nodes": list(nodes)},
        "memory_nodes": list(memory_nodes()),
        "memory_limit": None if soft == resource.RLIM_INFINITY else soft,
        "threads": threads,
    }
    if pool is not None:
        cores = pool.cores or [None] * len(pool_tids)
        report["pool"] = [
            {"thread": t, "tid": tid, "core": core} for t, (tid, core) in enumerate(zip(pool_tids, cores))
        ]
    return report


def check(plan_part, report: dict, *, mem_policy: str | None = "bind") -> list[str]:
    """Mismatches between a worker's placement and read_binding()'s report, one line each."""
    w, cores = plan_part.worker, set(plan_part.cores)
    where = f"worker {w}"
    problems = []
    by_tid = {t["tid"]: t for t in report["threads"]}
    mine = by_tid.get(report["tid"])
    if set(report["affinity"]) != cores:
        problems.append(
            f"{where}: its thread {report['tid']} may run on CPUs {format_cpuset(report['affinity'])}; "
            f"the plan gives it {format_cpuset(cores)}"
        )
    if mine is not None and mine["last_cpu"] not in cores:
        problems.append(
            f"{where}: its thread {report['tid']} last ran on CPU {mine['last_cpu']}, "
            f"outside its cores {format_cpuset(cores)}"
        )
    for t in report["threads"]:
        if t["tid"] != report["tid"] and not set(t["affinity"]) <= cores:
            problems.append(
                f"{where}: thread {t['tid']} ({t['name']}) may run on CPUs {format_cpuset(t['affinity'])}, "
                f"outside the worker's cores {format_cpuset(cores)}"
            )
    for p in report.get("pool", ()):
        problems.extend(_check_pool_thread(where, plan_part.thread_cores, p, by_tid.get(p["tid"])))
    if mem_policy is not None:
        problems.extend(_check_memory(where, plan_part.numa, mem_policy, report))
    return problems


def _check_pool_thread(where: str, thread_cores, entry: dict, seen: dict | None) -> list[str]:
    t, tid, core = entry["thread"], entry["tid"], entry["core"]
    if seen is None:
        return [f"{where}: pool thread {t} (tid {tid}) is not among the process's threads"]
    if core is None:  # an unbound pool: no core to check
        return []
    planned = thread_cores[t] if t < len(thread_cores) else None
    if planned is None:
        return [f"{where}: pool thread {t} (tid {tid}) is beyond the plan's {len(thread_cores)} threads"]
    if seen["affinity"] != [planned] or core != planned:
        return [
            f"{where}: pool thread {t} (tid {tid}) may run on CPUs {format_cpuset(seen['affinity'])}; "
            f"the plan pins it to CPU {planned}"
        ]
    return []


def _check_memory(where: str, numa: int, mode: str, report: dict) -> list[str]:
    if numa not in report["memory_nodes"]:
        return [
            f"{where}: the plan's NUMA domain {numa} is not a memory node here "
            f"(memory nodes: {format_cpuset(report['memory_nodes']) or 'none'}): was the plan made for another node?"
        ]
    policy = report["mempolicy"]
    if policy["mode"] != mode or policy["nodes"] != [numa]:
        return [
            f"{where}: memory policy is {policy['mode']} on nodes {format_cpuset(policy['nodes']) or 'none'}; "
            f"the plan wants {mode} on NUMA {numa}"
        ]
    return []


# ---- the memory limit -------------------------------------------------------------------


def limit_memory(nbytes: int, *, headroom: int | None = None) -> MemoryLimit:
    """Cap this process's data (RLIMIT_DATA, soft) at VmData now + nbytes + headroom.

    headroom=None: HEADROOM + HEADROOM_PER_CPU per CPU this process may use (call it after
    bind_worker, so that it counts the worker's cores).  The hard limit is left as it is, and a
    soft limit above it is lowered to it.  Before Linux 4.7 RLIMIT_DATA ignores mmap, which is
    where big arrays live: then nothing is set, resource is None and note says why.
    """
    import resource

    if int(nbytes) <= 0:
        raise ValueError(f"limit_memory: nbytes must be positive, got {nbytes!r}")
    if headroom is None:
        headroom = HEADROOM + HEADROOM_PER_CPU * len(os.sched_getaffinity(0))
    base = status_field("VmData")
    base = int(base.split()[0]) * 1024 if base else 0
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    soft = base + int(nbytes) + int(headroom)
    if _kernel_version() < (4, 7):
        return MemoryLimit(
            None,
            int(nbytes),
            base,
            int(headroom),
            None,
            hard,
            f"Linux {os.uname().release} < 4.7: RLIMIT_DATA does not count mmap; no limit set",
        )
    note = ""
    if hard != resource.RLIM_INFINITY and soft > hard:
        soft, note = hard, f"lowered to the hard limit {hard}"
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    return MemoryLimit("RLIMIT_DATA", int(nbytes), base, int(headroom), soft, hard, note)


# ---- small helpers ------------------------------------------------------------------------


def _thread_ids() -> list[int]:
    return sorted(int(name) for name in os.listdir("/proc/self/task"))


def _task_stat(tid: int) -> tuple[str, int]:
    """(name, last CPU) of a thread: /proc/self/task/TID/stat, field 2 and field 39."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        text = f.read()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()  # fields 3, 4, ...
    return name, int(fields[39 - 3])


def status_field(key: str) -> str | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return None


def _parse_list(text: str) -> set[int]:
    """'0-3,8' -> {0, 1, 2, 3, 8} (the kernel's list format)."""
    out: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def _reason(exc: BaseException) -> str:
    """'Invalid argument' for OSError(EINVAL, ...): t2mpi._native puts the call in strerror."""
    return os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)


def _kernel_version() -> tuple[int, ...]:
    """(major, minor) of the running kernel: '6.18.44-fc' -> (6, 18)."""
    version = []
    for piece in os.uname().release.split(".")[:2]:
        digits = ""
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        version.append(int(digits or 0))
    return tuple(version)
