"""t2mpi: an MPI execution engine for Python jobs (the Twister2 job model).

The names below are imported on first use, so that `import t2mpi` stays cheap on every rank.
"""

TYPE_CHECKING = False   # importing typing would cost every rank ~10 ms of start-up
__version__ = "0.1.0"
__all__ = ["IWorker", "WorkerContext", "WorkerInfo", "BarrierError", "Preempted", "JobResult", "JobSpec",
           "T2mpiError", "load", "run"]

_WHERE = {
    "IWorker": "worker", "WorkerContext": "worker", "BarrierError": "worker", "Preempted": "worker",
    "WorkerInfo": "master",
    "JobResult": "client", "run": "client", "JobSpec": "spec", "load": "spec", "T2mpiError": "errors",
}

if TYPE_CHECKING:
    from .client import JobResult, run
    from .errors import T2mpiError
    from .master import WorkerInfo
    from .spec import JobSpec, load
    from .worker import BarrierError, IWorker, Preempted, WorkerContext


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 't2mpi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
