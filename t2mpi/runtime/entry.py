"""The launch entry: `mpiexec -n W+1 python -m t2mpi.launch (JOBFILE | --job-dir DIR) [...]`.

Rank roles are decided here and nowhere else: rank 0 is the job master, ranks 1..W run one
IWorker each. Any uncaught error on any rank ends the whole launch with MPI_Abort: nothing hangs.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import T2mpiError

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    from mpi4py import MPI

    from ..job.spec import JobSpec
    from .master import Master


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--spawned"]:
        return _spawned_worker(argv[1:])
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    setup: Any = None
    if rank == 0:
        try:
            setup = _prepare(argv)
        except T2mpiError as exc:
            setup = str(exc)
        except BaseException:
            _abort(world, f"t2mpi.launch: the job master failed to start:\n{_traceback()}")
    if not _wait_for_everyone(world, setup[0].timeouts.start if isinstance(setup, tuple) else None):
        _abort(
            world,
            f"t2mpi.launch: not all {size} ranks started within "
            f"timeouts.start = {setup[0].timeouts.start:g} s; the launch is ended",
        )
    setup = world.bcast(setup, root=0)
    if isinstance(setup, str):  # rank 0 could not prepare the job: every rank ends, rank 0 says why
        if rank == 0 and setup:
            print(f"t2mpi.launch: {setup}", file=sys.stderr, flush=True)
        return 2 if setup else 0  # "": help was asked for
    spec, job_dir, quiet, make_dir, binding = setup
    if spec.master == "client" and size == 1:  # the client's master part, under mpiexec -n 1
        return _spawning_master(spec, job_dir, make_dir, binding)
    if size != spec.world_size:
        print(
            f"t2mpi.launch: rank {rank}: job '{spec.name}' needs {spec.world_size} MPI processes "
            f"({spec.workers} workers + 1 master) but was started with {size}; run "
            f"mpiexec -n {spec.world_size}, or give -n {size - 1} to run {size - 1} workers",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_everyone(world, None)  # every rank has said it before any exits,
        MPI.Finalize()  # and the launcher sees ends, not an abort
        return 2
    try:
        if make_dir and rank == 0:  # after the broadcast: workers import meanwhile
            from ..job.folder import JobDir

            JobDir.make(job_dir, spec.to_dict())
        return _run(world, rank, spec, job_dir, quiet, binding)
    except BaseException:
        role = "the job master" if rank == 0 else f"worker {rank - 1}"
        _abort(world, f"t2mpi.launch: {role} on {_host()} failed:\n{_traceback()}")
    return 1


def _wait_for_everyone(world: MPI.Intracomm, timeout: float | None) -> bool:
    """A barrier that sleeps while it waits: workers idle here while rank 0 reads the job file,
    and a blocking collective would spin on the cores that rank 0 needs. Rank 0 gives up after
    the job's start timeout (False); workers wait for rank 0, which either comes or aborts."""
    from .channel import Backoff

    request = world.Ibarrier()
    backoff = Backoff(longest=0.001)  # the barrier's rounds advance only while ranks look
    deadline = None if timeout is None else time.monotonic() + timeout
    while not request.Test():
        if deadline is not None and time.monotonic() > deadline:
            return False
        backoff.idle()
    return True


def _prepare(argv: list[str]) -> tuple[JobSpec, str, bool, bool, tuple[str, str]] | str:
    """Rank 0: resolve the spec (job file, or a job folder the client made), the job folder
    (its path, and whether it is still to be made), and whether the workers bind (binding.mode
    auto is decided here, where the launch runs: t2mpi.resources.autobind)."""
    from ..job import spec as specmod
    from ..job.folder import JobDir
    from ..resources.autobind import here

    args = _parse_args(argv)
    if isinstance(args, str):
        return args
    if (args.job is None) == (args.job_dir is None):
        return "give a job file or --job-dir, not both or neither"
    if args.job_dir:
        if args.workers is not None or args.set:
            return "-n and --set go with a job file; a job folder's spec is already resolved"
        spec = _prepared_spec(args.job_dir)
        return spec, JobDir(args.job_dir).path, args.quiet, False, here(spec)
    spec = specmod.load(args.job, workers=args.workers, overrides=args.set)
    return spec, JobDir.new_path(spec.jobs_dir, spec.name), args.quiet, True, here(spec)


def _prepared_spec(job_dir: str) -> JobSpec:
    """The resolved spec of a job folder the client made."""
    from ..job.folder import JobDir
    from ..job.spec import JobSpec

    return JobSpec.from_dict(JobDir(job_dir).read_spec())


_USAGE = """usage: python -m t2mpi.launch (JOBFILE [-n N] [--set KEY=VALUE ...] | --job-dir DIR) [--quiet]

Run a t2mpi job as the ranks of this MPI launch: rank 0 is the job master, ranks 1..N the workers.
  JOBFILE            the job file (YAML); a job folder is made under its jobs_dir
  --job-dir DIR      a job folder prepared by the t2mpi client (holds the resolved spec.json)
  -n, --workers N    number of workers (overrides the job file)
  --set KEY=VALUE    override a job file key, e.g. --set resources.cpus=2 (repeatable)
  --quiet            the master prints errors only"""


class _Args:
    job: str | None = None
    job_dir: str | None = None
    workers: int | None = None
    quiet = False

    def __init__(self) -> None:
        self.set: list[str] = []


def _parse_args(argv: list[str]) -> _Args | str:
    """The launch entry's options (argparse would cost rank 0, and so every rank, 5 ms)."""
    args, rest = _Args(), list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-h", "--help"):
            print(_USAGE)
            return ""
        if arg == "--quiet":
            args.quiet = True
        elif arg in ("--job-dir", "-n", "--workers", "--set") or arg.startswith(("--job-dir=", "--workers=", "--set=")):
            name, eq, value = arg.partition("=")
            if not eq:
                if not rest:
                    return f"{name} needs a value\n{_USAGE}"
                value = rest.pop(0)
            if name == "--job-dir":
                args.job_dir = value
            elif name == "--set":
                args.set.append(value)
            else:
                try:
                    args.workers = int(value)
                except ValueError:
                    return f"{name}: {value!r} is not a whole number"
        elif arg.startswith("-") or args.job is not None:
            return f"unexpected argument {arg!r}\n{_USAGE}"
        else:
            args.job = arg
    return args


def _run(world: MPI.Intracomm, rank: int, spec: JobSpec, job_dir: str, quiet: bool, binding: tuple[str, str]) -> int:
    from mpi4py import MPI

    ctrl = world.Dup()  # control traffic never meets the user's messages
    comm = world.Split(0 if rank else MPI.UNDEFINED, rank)
    if rank == 0:
        from ..job.folder import JobDir
        from .serve import new_master

        master = new_master(spec, JobDir(job_dir), binding=binding)
    else:
        master = None
    # the master's entry also carries the checkpoint the run starts from, the restart count and
    # the binding mode it decided
    me = (_host(), os.getpid()) if master is None else (_host(), os.getpid(), *master.registration)
    registrations = ctrl.allgather(me)
    if rank == 0:
        assert master is not None
        return _serve(world, ctrl, master, spec, job_dir, registrations, quiet)
    return _work(world, ctrl, comm, rank - 1, spec, job_dir, registrations)


def _spawned_worker(argv: list[str]) -> int:
    """A worker started by a master with MPI_Comm_spawn: --spawned --job-dir DIR."""
    from mpi4py import MPI

    world, parent = MPI.COMM_WORLD, MPI.Comm.Get_parent()
    try:
        if argv[:1] != ["--job-dir"] or len(argv) != 2 or parent == MPI.COMM_NULL:
            raise RuntimeError(f"--spawned is for workers that a t2mpi master spawns, got {argv}")
        spec = _prepared_spec(argv[1])
        me = (_host(), os.getpid())
        master = parent.allgather(me)  # the master learns the workers, they the master
        registrations = master + world.allgather(me)
        rc = _work(world, parent, world, world.Get_rank(), spec, argv[1], registrations)
    except BaseException:
        _abort(world, f"t2mpi.launch: spawned worker {world.Get_rank()} on {_host()} failed:\n{_traceback()}")
    parent.Disconnect()
    return rc


def _spawning_master(spec: JobSpec, job_dir: str, make_dir: bool, binding: tuple[str, str]) -> int:
    """`master: client`: this one-rank launch is the master and spawns the workers, with the
    transport chosen for the job (network.json: by t2mpi run where it runs, by a batch job on
    its first node)."""
    from ..job.folder import JobDir
    from ..job.states import COMPLETED
    from .output import failure_report
    from .spawn import run_master

    jd = JobDir.make(job_dir, spec.to_dict()) if make_dir else JobDir(job_dir)
    client = None if make_dir else jd.read_client()
    network_env = {} if make_dir else (jd.read_network() or {}).get("env") or {}
    snapshot = run_master(spec, jd, sys.executable, network_env=network_env, client=client, binding=binding)
    if snapshot["state"] != COMPLETED:
        # MPI_Finalize is collective over connected processes, and the workers are gone:
        # end this launch with an abort instead of waiting for them forever.
        from mpi4py import MPI

        _abort(MPI.COMM_WORLD, failure_report(snapshot))
    return 0


def _host() -> str:
    return os.uname().nodename


# ------------------------------------------------------------------ the master


def _serve(
    world: MPI.Intracomm,
    ctrl: MPI.Intracomm,
    master: Master,
    spec: JobSpec,
    job_dir: str,
    registrations: list[tuple[str, int]],
    quiet: bool,
) -> int:
    from .. import console
    from ..job.folder import JobDir
    from ..job.states import FAILED, KILLED, PREEMPTED
    from .channel import MasterPort
    from .master import worker_list
    from .output import failure_report
    from .serve import serve

    master.joined(worker_list(registrations[1:]), registrations[0][:2], time.time())
    if master.binding_mode["mode"] == "cores":  # the master, too, where the plan puts it on its node
        from ..resources.nodeplan import bind_master

        here = sum(1 for host, *_ in registrations[1:] if host == registrations[0][0])
        try:
            master.binding = bind_master(here, spec.resources, spec.binding.policy, spec.binding.near)
        except Exception as exc:  # e.g. the workers do not fit: they say so themselves
            master.binding = {"error": str(exc)}
    say = (lambda text: None) if quiet else (lambda text: print(f"[master] {text}", flush=True))
    say(
        f"job {master.job_id}: {spec.workers} workers on "
        f"{', '.join(sorted({h for h, _ in registrations[1:]}))}; folder {job_dir}"
    )
    snapshot = serve(MasterPort(ctrl, first_worker_rank=1), master, JobDir(job_dir), spec.timeouts.abort)
    if master.state == FAILED:
        print(failure_report(snapshot), file=sys.stderr, flush=True)
        world.Abort(1)
    if master.state == KILLED:  # cancelled: the workers are still at work
        print(f"t2mpi.launch: job {master.job_id} KILLED: {master.reason}", file=sys.stderr, flush=True)
        world.Abort(1)
    if master.state == PREEMPTED and not master.all_stopped:  # workers that did not stop: end them
        print(f"t2mpi.launch: {snapshot['reason']}; ending the workers", file=sys.stderr, flush=True)
        world.Abort(1)
    say(console.summary(snapshot))
    return 0


# ------------------------------------------------------------------ a worker


def _work(
    world: MPI.Intracomm,
    ctrl: MPI.Intracomm,
    comm: MPI.Intracomm,
    wid: int,
    spec: JobSpec,
    job_dir: str,
    registrations: list[tuple[str, int]],
) -> int:
    """A worker rank: prepare (channel, output, thread limits), run the user's worker, report
    how it ended; a failure aborts the launch once the master has heard of it."""
    from .worker import Preempted

    host = _host()
    port = _prepare_worker(ctrl, wid, spec, job_dir)
    started = time.monotonic()
    try:
        result = _run_worker(port, comm, wid, spec, job_dir, host, registrations)
        port.completed(result, time.monotonic() - started)
    except Preempted:  # its checkpoint is committed: end in order, the next run goes on from it
        port.stopped()
    except BaseException as exc:
        _report_failure(world, port, exc, wid, spec, host, time.monotonic() - started)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _prepare_worker(ctrl: MPI.Intracomm, wid: int, spec: JobSpec, job_dir: str) -> Any:
    """The worker's channel to the master (heartbeating), its prefixed output and log, and the
    thread-pool limits, before any user code runs."""
    from ..job.folder import JobDir
    from ..job.spec import THREAD_LIMIT_VARS, TRANSPORT_PREFIXES
    from .channel import WorkerPort
    from .output import PrefixedOutput

    port = WorkerPort(ctrl, wid, spec.timeouts.abort)
    port.start_heartbeat(spec.timeouts.heartbeat / 3)
    # the transport it runs with
    port.report({"network": {k: v for k, v in os.environ.items() if k.startswith(TRANSPORT_PREFIXES)}})
    PrefixedOutput.install(f"[w{wid}] ", JobDir(job_dir).worker_log(wid))
    for var in THREAD_LIMIT_VARS:  # before the user's module loads a BLAS or OpenMP runtime,
        os.environ.setdefault(var, str(spec.resources.threads))  # however the ranks were started
    return port


def _run_worker(
    port: Any,
    comm: MPI.Intracomm,
    wid: int,
    spec: JobSpec,
    job_dir: str,
    host: str,
    registrations: list[tuple[str, int]],
) -> Any:
    """Bind (when the master says so), load the worker class, run its execute(ctx); its result."""
    from .master import worker_list
    from .worker import WorkerContext, WorkerController, load_worker_class

    workers = worker_list(registrations[1:])
    _mhost, _mpid, committed, restarts, bind_mode = registrations[0]
    thread_cores = None
    if bind_mode == "cores":  # as the master decided; before the user's module starts any thread pool
        thread_cores = _bind(port, comm, workers[wid], spec)
    _name_world(comm, spec)
    cls = load_worker_class(spec)
    controller = WorkerController(workers, port, spec.timeouts.barrier)
    ctx = WorkerContext(
        spec=spec,
        worker_id=wid,
        host=host,
        comm=comm,
        controller=controller,
        channel=port,
        job_dir=job_dir,
        thread_cores=thread_cores,
        committed=committed,
        restart_count=restarts,
    )
    try:
        return cls().execute(ctx)
    finally:
        ctx.close()


def _name_world(comm: MPI.Intracomm, spec: JobSpec) -> None:
    """mpi.world: workers (the default): from here on, mpi4py's MPI.COMM_WORLD in this worker is
    the workers' communicator (ctx.comm), so that code and libraries defaulting to it
    (mpi4py.futures.MPICommExecutor, most tutorials) never wait for the master, which joins no
    collective of theirs. Before the user's module is imported, so that its `from mpi4py.MPI import
    COMM_WORLD` sees it too. t2mpi itself keeps the launch's world in its own variables."""
    if spec.mpi.world == "workers":
        from mpi4py import MPI

        MPI.COMM_WORLD = comm


def _report_failure(
    world: MPI.Intracomm, port: Any, exc: BaseException, wid: int, spec: JobSpec, host: str, elapsed: float
) -> None:
    """Say why the worker failed (its traceback, or a t2mpi error's one line), tell the master,
    wait for its abort, and abort the launch."""
    header = f"worker {wid} of {spec.workers} on {host} (pid {os.getpid()})"
    detail = str(exc) if isinstance(exc, T2mpiError) else _traceback().rstrip()
    sys.stderr.write(f"{header} failed:\n{detail}\n")
    sys.stderr.flush()
    port.failed(f"{header}:\n{detail}", elapsed)
    port.await_abort(spec.timeouts.abort)
    world.Abort(1)


def _bind(port: Any, comm: MPI.Intracomm, me: Any, spec: JobSpec) -> tuple[int, ...]:
    """Pin this worker to its planned cores. One worker per node (its local 0) gets the node's
    plan (remembered, or made: t2mpi.resources.nodeplan), tells the master the node's facts and
    hands each worker of its node its part."""
    from ..resources.nodeplan import bind_part, node_plan, part

    node_comm = comm.Split(me.node, me.local)
    try:
        plan: Any = None
        if me.local == 0:
            try:
                plan = node_plan(node_comm.Get_size(), spec.resources, spec.binding.policy, spec.binding.near)
            except T2mpiError as exc:  # e.g. the workers do not fit: each of them says so
                plan = exc
        plan = node_comm.bcast(plan, root=0)
    finally:
        node_comm.Free()
    if isinstance(plan, BaseException):
        raise plan
    if me.local == 0:
        port.report({"topology": plan["facts"]})
    report = bind_part(part(plan, me.local), spec.resources)
    port.bound(report)
    return tuple(report["thread_cores"])


def _traceback() -> str:
    import traceback

    return traceback.format_exc()


def _abort(world: MPI.Intracomm, message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    finally:
        world.Abort(1)


if __name__ == "__main__":
    sys.exit(main())
