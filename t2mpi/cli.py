"""The `t2mpi` command."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from .errors import T2mpiError

TYPE_CHECKING = False   # typing costs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2mpi", description="Run Python jobs (a job master and IWorkers) on MPI.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a job here with mpiexec and follow it to its end",
                         description="Run a job with the MPI launcher (workers + 1 ranks; rank 0 is "
                                     "the job master), show its live status and a summary. Exit "
                                     "status: 0 if the job completed, 1 if it failed or was killed, "
                                     "2 for bad input.")
    run.add_argument("job", help="job file (YAML)")
    run.add_argument("-n", "--workers", type=int, help="number of workers (overrides the job file)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a job file key, e.g. --set resources.cpus=2 (repeatable)")
    run.add_argument("--master", choices=("rank0", "client"),
                     help="where the job master runs: MPI rank 0 (default) or this client process, "
                          "which then spawns the workers")
    run.add_argument("--dry-run", action="store_true",
                     help="print the exact command and environment instead of running")
    run.add_argument("-q", "--quiet", action="store_true", help="no live status, only output and summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except T2mpiError as exc:
        print(f"t2mpi: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("t2mpi: interrupted; every rank was ended", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from . import client, console
    from .launcher import rank_environment

    launch = client.prepare(args.job, workers=args.workers, master=args.master, overrides=args.set)
    if args.dry_run:
        env = rank_environment(launch.spec)
        print(f"# {launch.mpi.flavour} {launch.mpi.version} ({launch.mpi.path}); "
              f"{launch.spec.workers} workers + 1 master; the job folder is made at launch")
        print("# environment for every rank (passed by the launcher):")
        for key, value in sorted(env.items()):
            print(f"#   {key}={value}")
        print(shlex.join(launch.argv(f"{launch.spec.jobs_dir}/{launch.spec.name}-<timestamp>")))
        return 0
    live: dict[str, Any] = {}

    def started(jd: Any, argv: list[str]) -> None:
        live["status"] = console.LiveStatus(jd.job_id) if not args.quiet else None
        print(f"t2mpi: job {jd.job_id} ({launch.spec.workers} workers, {launch.mpi.flavour}); "
              f"folder {jd.path}", file=sys.stderr, flush=True)

    def output(stream: Any) -> Any:
        def write(text: str) -> None:
            status = live.get("status")
            if status is None:
                stream.write(text)
                stream.flush()
            else:
                status.output(lambda t: (stream.write(t), stream.flush()), text)
        return write

    def events(evs: list[dict[str, Any]], state: dict[str, Any] | None) -> None:
        if live.get("status") is not None:
            live["status"].events(evs, state)

    signal.signal(signal.SIGTERM, _terminate)
    follower = client.Follower(on_stdout=output(sys.stdout), on_stderr=output(sys.stderr),
                               on_events=events, on_start=started)
    try:
        result = client.execute(launch, follower)
    finally:
        if live.get("status") is not None:
            live["status"].close()
    from .jobdir import JobDir

    state = JobDir(result.job_dir).read_state()
    print(console.summary(state) if state else f"job {result.job_id}: {result.state}", file=sys.stderr)
    return result.exit_code


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_COMMANDS = {"run": _run}
