"""t2mpi: an MPI execution engine for Python jobs (the Twister2 job model).

The names below are imported on first use, so that `import t2mpi` stays cheap on every rank.
"""

TYPE_CHECKING = False  # importing typing would cost every rank ~10 ms of start-up
__all__ = [
    "IWorker",
    "WorkerContext",
    "WorkerInfo",
    "BarrierError",
    "Preempted",
    "JobResult",
    "JobSpec",
    "T2mpiError",
    "load",
    "run",
]

_WHERE = {
    "IWorker": "runtime.worker",
    "WorkerContext": "runtime.worker",
    "BarrierError": "runtime.worker",
    "Preempted": "runtime.worker",
    "WorkerInfo": "runtime.master",
    "JobResult": "client",
    "run": "client",
    "JobSpec": "job.spec",
    "load": "job.spec",
    "T2mpiError": "errors",
}

if TYPE_CHECKING:
    from .client import JobResult, run
    from .errors import T2mpiError
    from .job.spec import JobSpec, load
    from .runtime.master import WorkerInfo
    from .runtime.worker import BarrierError, IWorker, Preempted, WorkerContext


def __getattr__(name: str) -> object:
    if name == "__version__":  # meson.build's project version, installed as t2mpi/_version.py
        from ._version import version

        globals()[name] = version
        return version
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 't2mpi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
