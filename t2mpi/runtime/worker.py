"""The user's API: IWorker, and the WorkerContext its execute() receives."""

from __future__ import annotations

import importlib
import os
import sys
from functools import cached_property

from ..errors import SpecError

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    import logging
    from typing import Any

    from mpi4py import MPI

    from ..data.api import Data
    from ..job.spec import JobSpec, Resources
    from ..resources.threads import WorkerThreads
    from ..stream.api import StreamContext
    from .master import WorkerInfo


class IWorker:
    """Subclass this and implement execute(ctx); its return value is the worker's result."""

    def execute(self, ctx: WorkerContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(self, ctx)")


# A control channel is what the controller needs from a transport (MPI or another):
#   barrier(seq: int, timeout: float) -> None      (raises BarrierError)
#   progress(fraction: float | None, message: str) -> None


class BarrierError(RuntimeError):
    """A barrier failed: it timed out, or a worker ended without reaching it."""


class Preempted(BaseException):
    """Raised by ctx.checkpoint() when the job is to stop (preemption, walltime) and this
    checkpoint is committed: let it pass (like SystemExit); the job goes on from it when restarted."""


class WorkerController:
    """Twister2's IWorkerController: the job's worker list and barriers."""

    def __init__(self, workers: list[WorkerInfo], channel: Any, default_timeout: float):
        self._workers = workers
        self._channel = channel
        self._default_timeout = default_timeout
        self._seq = 0

    def workers(self) -> list[WorkerInfo]:
        return list(self._workers)

    def barrier(self, timeout: float | None = None) -> None:
        """Wait until every worker reaches this barrier; raise BarrierError on timeout."""
        self._seq += 1
        self._channel.barrier(self._seq, self._default_timeout if timeout is None else float(timeout))


class WorkerContext:
    """What a worker knows: who it is, the job's config and resources, its communicators."""

    def __init__(
        self,
        *,
        spec: JobSpec,
        worker_id: int,
        host: str,
        comm: MPI.Intracomm,
        controller: WorkerController,
        channel: Any,
        job_dir: str,
        thread_cores: tuple[int, ...] | None = None,
        committed: int | None = None,
        restart_count: int = 0,
    ):
        self.worker_id = worker_id
        self.num_workers = spec.workers
        self.host = host
        self.config: dict[str, Any] = spec.config
        self.resources: Resources = spec.resources
        self.comm = comm
        self.controller = controller
        self.job_id = os.path.basename(job_dir)
        self.job_dir = job_dir
        self._spec = spec
        self._channel = channel
        self._thread_cores = thread_cores
        self.restart_count = restart_count  # how often this job was restarted before this run
        self._committed = committed  # the checkpoint version this run starts from
        self.checkpoint_version = committed or 0  # the last version this worker wrote or restored
        self._stop_agreed = False  # all workers know of a checkpoint request

    @cached_property
    def threads(self) -> WorkerThreads:
        """This worker's resources.threads threads (pinned one per core with binding: cores):
        ctx.threads.map(fn, items), .submit(fn, *args), .run_on_each(fn). Started on first use."""
        from ..resources.threads import WorkerThreads

        return WorkerThreads(self._thread_cores, threads=self.resources.threads, name=f"t2mpi-w{self.worker_id}")

    @cached_property
    def data(self) -> Data:
        """The batch dataflow API on this job's workers (t2mpi.data.api.Data); made on first use."""
        from ..data.api import Data

        memory = self.resources.data_memory or self.resources.memory // 2
        channel = self._channel

        def on_step(where: Any) -> None:  # the live status: the operation this worker is in
            channel.operation(where.op, where.site)

        def on_end(stats: Any) -> None:  # events.jsonl: what it moved (batched by the channel)
            channel.operation_ended(tuple(stats))

        # Spills go to a private folder of their own under the job's scratch_dir (the node's
        # temporary folder when unset), removed when read; ctx.scratch_dir, a folder that stays, is
        # not made for them.
        return Data(
            self.comm,
            scratch_dir=self._spec.scratch_dir,
            memory_budget=memory or None,
            on_step=on_step,
            job_dir=self.job_dir,
            checkpoint_version=self.checkpoint_version,
            on_end=on_end,
        )

    @cached_property
    def stream(self) -> StreamContext:
        """The streaming dataflow API on this job's workers (t2mpi.stream.api.StreamContext): its
        run() checkpoints through ctx.checkpoint and stops on the job's stop request."""
        from ..job.folder import JobDir
        from ..stream.api import StreamContext
        from ..stream.engine import Hooks

        channel = self._channel

        def asked() -> bool:
            channel.notices()
            return channel.checkpoint_asked is not None

        hooks = Hooks(
            checkpoint=self.checkpoint,
            next_version=lambda: self.checkpoint_version + 1,
            committed=lambda: JobDir(self.job_dir).committed_version(),
            asked=asked,
            restored=lambda: self.restored,
            progress=lambda message: channel.progress(None, message),
            operation=channel.operation,
        )
        return StreamContext(self.comm, hooks)

    def close(self) -> None:
        """End what the context started (its data API's last operation, its threads); the launch
        calls this after execute."""
        data = self.__dict__.get("data")
        if data is not None:
            data.close()
        pool = self.__dict__.get("threads")
        if pool is not None:
            pool.close()
        scratch = self.__dict__.get("scratch_dir")
        if scratch is not None and not self._spec.keep_scratch:
            _remove_scratch(scratch)

    @cached_property
    def persistent_dir(self) -> str:
        """This worker's folder inside the job folder (on the shared filesystem)."""
        return _private_dir(self.job_dir, "workers", str(self.worker_id))

    @cached_property
    def scratch_dir(self) -> str:
        """This worker's node-local folder (scratch_dir, or the node's temporary folder), made on
        first use; removed when the worker ends, after a failure too, unless keep_scratch is set."""
        import tempfile

        base = self._spec.scratch_dir or tempfile.gettempdir()
        names = (base, f"t2mpi-{self.job_id}", f"worker-{self.worker_id}")
        if not self._spec.keep_scratch:  # goes even if this worker is killed (t2mpi/reaper.py)
            from ..reaper import remove_at_end

            remove_at_end(os.path.join(*names), with_parent=True)
        return _private_dir(*names)

    @cached_property
    def log(self) -> WorkerLog:
        """This worker's log: debug/info/warning/error/exception(msg, *args), like a Logger;
        its lines go to the worker's (prefixed) output and log file. .logger gives a real one."""
        return WorkerLog(self.worker_id)

    @cached_property
    def restored(self) -> Any:
        """This worker's state from the job's last committed checkpoint, or None (a first run)."""
        if self._committed is None:
            return None
        import pickle

        from ..job.folder import JobDir

        return pickle.loads(JobDir(self.job_dir).read_checkpoint(self._committed, self.worker_id))

    def checkpoint(self, state: Any) -> int:
        """Save this worker's `state` (picklable) as the next checkpoint version and return it.
        Collective: every worker checkpoints at the same points; a version is committed when all
        have written it, and a restart gives each worker its part as ctx.restored. When the job is
        asked to stop (see should_checkpoint), this waits for the commit and raises Preempted."""
        from ..job.folder import JobDir

        channel = self._channel
        channel.notices()
        if channel.stop_version is not None:  # committed already; this worker is to stop
            raise Preempted(f"checkpoint {channel.stop_version} committed; the job stops")
        version = self.checkpoint_version + 1
        JobDir(self.job_dir).save_checkpoint(version, self.worker_id, state)
        self.checkpoint_version = version
        if "data" in self.__dict__:  # persist()'s default names count from this version
            self.data.checkpointed(version)
        channel.checkpointed(version)
        if self._agree(channel.checkpoint_asked is not None):  # all stop at the same version
            channel.wait_stop(self._spec.timeouts.checkpoint + self._spec.timeouts.abort)
            raise Preempted(f"checkpoint {version} written; the job stops")
        return version

    def should_checkpoint(self) -> bool:
        """True when the job is asked to checkpoint and stop (Slurm's signal before the walltime,
        preemption, SIGUSR1 to t2mpi run). Collective over ctx.comm: every worker calls it at the
        same point, and all get the same answer."""
        self._channel.notices()
        return self._agree(self._channel.checkpoint_asked is not None)

    def _agree(self, asked: bool) -> bool:
        """Whether any worker was asked for a checkpoint (collective; once true, it stays)."""
        if not self._stop_agreed:
            from mpi4py import MPI

            self._stop_agreed = bool(self.comm.allreduce(asked, op=MPI.LOR))
        return self._stop_agreed

    def on_checkpoint_request(self, callback: Any) -> None:
        """Call `callback(why)` (from t2mpi's own thread) as soon as a checkpoint is asked for."""
        self._channel.on_checkpoint_request = callback

    def progress(self, fraction: float | None = None, message: str = "") -> None:
        """Tell the master how far this worker is (0.0-1.0) and what it does."""
        if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"progress fraction must be within 0.0-1.0, got {fraction}")
        self._channel.progress(None if fraction is None else float(fraction), str(message))


def _private_dir(*parts: str) -> str:
    path = os.path.join(*parts)
    for _ in range(9):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            return path
        except FileNotFoundError:  # a folder above was removed meanwhile: another worker of this job
            continue  # on this node ended and took the job's empty scratch folder away; make it again
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


class WorkerLog:
    """The few Logger methods workers use, without the cost of importing logging on every rank."""

    LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

    def __init__(self, worker_id: int, level: str = "INFO"):
        self.worker_id = worker_id
        self.level = self.LEVELS[level]

    def setLevel(self, level: str | int) -> None:  # noqa: N802 (the logging name)
        self.level = level if isinstance(level, int) else self.LEVELS[level.upper()]

    def log(self, level: int, msg: object, *args: object) -> None:
        if level >= self.level:
            name = next((n for n, v in self.LEVELS.items() if v == level), f"LEVEL{level}")
            text = str(msg) % args if args else str(msg)
            sys.stderr.write(f"{name} {text}\n")

    def debug(self, msg: object, *args: object) -> None:
        self.log(10, msg, *args)

    def info(self, msg: object, *args: object) -> None:
        self.log(20, msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        self.log(30, msg, *args)

    def error(self, msg: object, *args: object) -> None:
        self.log(40, msg, *args)

    def critical(self, msg: object, *args: object) -> None:
        self.log(50, msg, *args)

    def exception(self, msg: object, *args: object) -> None:
        import traceback

        self.log(40, msg, *args)
        sys.stderr.write(traceback.format_exc())

    @cached_property
    def logger(self) -> logging.Logger:
        """A real logging.Logger writing to the same output, for libraries that want one."""
        import logging

        logger = logging.getLogger(f"t2mpi.runtime.worker.{self.worker_id}")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(self.level)
        logger.propagate = False
        return logger


def load_worker_class(spec: JobSpec) -> type[IWorker]:
    """Import spec.worker ('module:Class') from the job file's folder; check it is an IWorker."""
    module_name, _, class_name = spec.worker.partition(":")
    where = f"{spec.source}: worker: {spec.worker}"
    if spec.worker_dir not in sys.path:
        sys.path.insert(0, spec.worker_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise SpecError(
                f"{where}: no module '{module_name}' in {spec.worker_dir} "
                "(the worker module is looked up beside the job file)"
            ) from None
        raise SpecError(f"{where}: importing '{module_name}' failed: {exc}") from None
    except Exception as exc:
        raise SpecError(f"{where}: importing '{module_name}' failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise SpecError(f"{where}: module '{module_name}' ({_module_file(module)}) has no class '{class_name}'")
    if not (isinstance(cls, type) and issubclass(cls, IWorker)):
        raise SpecError(f"{where}: '{class_name}' is not a subclass of t2mpi.IWorker")
    return cls


def _module_file(module: Any) -> str:
    path = getattr(module, "__file__", None)
    return os.path.relpath(path) if path else module.__name__


def _remove_scratch(folder: str) -> None:
    """A worker's scratch folder, and its job's folder above it once no other worker of this node
    holds one there."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(folder))
    except OSError:
        pass  # another worker of this job on this node still has its folder there
