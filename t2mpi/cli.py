"""The `t2mpi` command."""

from __future__ import annotations

import argparse
import os
import sys

from .commands import COMMANDS as _COMMANDS
from .errors import T2mpiError

TYPE_CHECKING = False  # typing costs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Any


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, as every other t2mpi error (usage: --help)."""

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix("t2mpi").strip()
        text = f"{command}: {message}" if command else message
        self.exit(2, f"t2mpi: {_one_line(text)} (see {self.prog} --help)\n")


JOBS_DIR_HELP = "where job folders are (default: the site config's jobs_dir, else ./t2mpi-jobs)"
QUIET_HELP = "no live status, only output and summary"


def _job_options(cmd: argparse.ArgumentParser, set_help: str, scheduler: bool = False) -> None:
    """The options of a command that reads a job file: the file, [--scheduler,] -n and --set."""
    cmd.add_argument("job", help="job file (YAML)")
    if scheduler:
        cmd.add_argument(
            "--scheduler",
            choices=("slurm", "pbs", "torque"),
            help="the scheduler (default: scheduler.kind of the job file, else slurm)",
        )
    cmd.add_argument("-n", "--workers", type=int, help="number of workers (overrides the job file)")
    cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def _job_id(cmd: argparse.ArgumentParser) -> None:
    """The options of a command about one job folder: the job and --jobs-dir."""
    cmd.add_argument("job", help="job id (see t2mpi list) or job folder")
    cmd.add_argument("--jobs-dir", help=JOBS_DIR_HELP)


def _node_source(cmd: argparse.ArgumentParser) -> None:
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--xml", metavar="FILE", help="an `lstopo --of xml` export of a compute node")
    source.add_argument(
        "--synthetic", metavar="DESC", help="an hwloc synthetic description, e.g. 'package:2 numa:2 core:8 pu:2'"
    )
    source.add_argument("--sysfs", action="store_true", help="this machine from /sys, without hwloc")


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a job here with mpiexec and follow it to its end",
        description="Run a job with the MPI launcher (workers + 1 ranks; rank 0 is "
        "the job master), show its live status and a summary. Exit "
        "status: 0 if the job completed, 1 if it failed or was killed, "
        "2 for bad input, 130 after Ctrl-C, 129 after a hang-up (SIGHUP: the "
        "ssh session or terminal went; every rank is ended, state KILLED; under nohup "
        "SIGHUP is ignored and the job goes on). A launch whose job master has not "
        "started within timeouts.start (default 120 s) is ended: FAILED, exit 1. "
        "max_restarts in the job file re-runs a failed run from its "
        "last committed checkpoint; SIGUSR1 asks the job to checkpoint "
        "and stop (PREEMPTED, exit 1; t2mpi restart goes on from there), and so does "
        "the first Ctrl-C to a job that runs a stream (ctx.stream; Ctrl-C again ends it at once).",
    )
    _job_options(run, "override a job file key, e.g. --set resources.cpus=2 (repeatable)")
    run.add_argument(
        "--master",
        choices=("rank0", "client"),
        help="where the job master runs: MPI rank 0 (default), or beside this client "
        "as a one-rank launch that spawns the workers (client)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print the exact command and environment instead of running"
    )
    run.add_argument(
        "--oversubscribe",
        action="store_true",
        help="start the workers even when they are more than 4 per CPU here, or more than the "
        "allocation's tasks inside one (same as --set mpi.oversubscribe=true)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    run.add_argument(
        "--detach",
        action="store_true",
        help="print the job id and return at once; the job runs on in a session of its own (a hang-up "
        "does not end it), its output in the job folder's batch.out (t2mpi status/logs --follow JOB)",
    )
    run.add_argument(
        "--report-bindings",
        action="store_true",
        help="after the summary, whether the workers were bound and why, and each bound worker's planned cores "
        "and what its kernel reports",
    )


_NODE_DESCRIPTION = ". The node is this machine (hwloc) unless --xml, --synthetic or --sysfs names another."


def _add_topology(sub: Any) -> None:
    helptext = (
        "describe a node: packages, cores, NUMA domains, allowed cpuset "
        "(and of this machine: the filesystems of jobs_dir and scratch, "
        "network interfaces and addresses)"
    )
    cmd = sub.add_parser("topology", help=helptext, description=helptext + _NODE_DESCRIPTION)
    _node_source(cmd)
    cmd.add_argument("--json", action="store_true", help="print JSON")


def _add_plan(sub: Any) -> None:
    helptext = "show where a job's workers would run (cores, NUMA) on a node"
    cmd = sub.add_parser("plan", help=helptext, description=helptext + _NODE_DESCRIPTION)
    _job_options(cmd, "override a job file key")
    cmd.add_argument("--nodes", type=int, default=1, help="that many nodes like it (default 1)")
    _node_source(cmd)


def _add_script_and_submit(sub: Any) -> None:
    for name, helptext in (
        ("script", "print the batch script of a job (nothing is written or submitted)"),
        ("submit", "submit a job to the batch scheduler (sbatch / qsub)"),
    ):
        cmd = sub.add_parser(
            name,
            help=helptext,
            description=helptext + ". The job's network transport "
            "is chosen when it starts, on its first node, by the script's first step "
            "(python -m t2mpi.network); what this node lacks is only a note here.",
        )
        _job_options(cmd, "override a job file key, e.g. --set scheduler.time=01:00:00", scheduler=True)
        if name == "submit":
            cmd.add_argument("--wait", action="store_true", help="follow the job to its end and exit with its status")


def _add_restart(sub: Any) -> None:
    restart = sub.add_parser(
        "restart",
        help="run a failed, killed or stopped job again from its last committed checkpoint",
        description="Run a job that ended (FAILED, KILLED, LOST, or stopped: PREEMPTED) again in its job "
        "folder; each worker gets its part of the last committed checkpoint as "
        "ctx.restored, and ctx.restart_count counts the restarts. A job started with "
        "t2mpi run runs here again (exit status as for run); a submitted job is "
        "submitted again. A job is named by its t2mpi job id or its folder.",
    )
    _job_id(restart)
    restart.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    restart.add_argument("--wait", action="store_true", help="a submitted job: follow it to its end")


def _add_job_queries(sub: Any) -> None:
    for name, helptext in (
        (
            "status",
            "show a job's state (the scheduler's view merged with the master's; a local job whose master "
            "process is gone is settled LOST)",
        ),
        ("logs", "print a job's output (the batch output, or a worker's log)"),
        (
            "cancel",
            "cancel a job: a submitted one with scancel / qdel, a local one (t2mpi run) by asking its master, "
            "then signalling its processes; its state ends KILLED",
        ),
    ):
        cmd = sub.add_parser(
            name, help=helptext, description=helptext + ". A job is named by its t2mpi job id or its folder."
        )
        _job_id(cmd)
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the state as JSON")
            cmd.add_argument(
                "-f",
                "--follow",
                action="store_true",
                help="show the live state until the job ends, then its summary; exit 0 if it completed, else 1",
            )
        if name == "logs":
            cmd.add_argument("--worker", type=int, metavar="N", help="worker N's own log")
            cmd.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="what this node's network offers and the MPI transport a job would use, and why",
        description="Show this node's fabric (InfiniBand, RoCE, Omni-Path, TCP "
        "interfaces, the UCX and libfabric libraries), the MPI, the "
        "transport a job would use and the environment that selects it.",
    )
    doctor.add_argument(
        "job", nargs="?", help="job file (its network section and MPI); default: a job with the default settings"
    )
    doctor.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job file key, e.g. --set network.transport=tcp",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON")


def _add_list(sub: Any) -> None:
    lst = sub.add_parser(
        "list", help="list the jobs in the jobs folder", description="List the jobs in the jobs folder, one line each."
    )
    lst.add_argument("--jobs-dir", help=JOBS_DIR_HELP)


def _add_clean(sub: Any) -> None:
    helptext = "remove the folders of jobs that have ended (COMPLETED, FAILED, KILLED or LOST)"
    cmd = sub.add_parser(
        "clean",
        help=helptext,
        description=helptext + ". A job that may still run (not ended, or PREEMPTED, which its scheduler "
        "may requeue) is never touched. Each folder removed is named; --dry-run only names them.",
    )
    cmd.add_argument("--jobs-dir", help=JOBS_DIR_HELP)
    cmd.add_argument(
        "--older-than",
        metavar="AGE",
        default="0",
        help="only jobs that ended at least AGE ago: a number and a unit, s, m, h or d (e.g. 7d, 12h); default 0",
    )
    cmd.add_argument(
        "--state",
        default="COMPLETED,FAILED,KILLED,LOST",
        help="only jobs in these states, comma-separated (default: COMPLETED,FAILED,KILLED,LOST)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="name what would be removed; remove nothing")


def _add_report(sub: Any) -> None:
    helptext = "write a job's data operations as an HTML page (a timeline per worker, bytes moved and spilled)"
    cmd = sub.add_parser(
        "report",
        help=helptext,
        description=helptext + ". The page is self-contained (no network, no script): one lane per worker, "
        "a bar per data operation (hover for its rows, bytes shuffled and spilled), a table per operation "
        "and the job's state. A job is named by its t2mpi job id or its folder.",
    )
    _job_id(cmd)
    cmd.add_argument(
        "-o", "--output", metavar="FILE", help="where to write it (default: report.html in the job folder)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="t2mpi",
        description="Run Python jobs (a job master and IWorkers) on MPI.",
        epilog=f"Exit status {INTERNAL_ERROR}: an unexpected error inside t2mpi (one line; --debug or "
        f"{DEBUG_VARIABLE}=1 shows its traceback).",
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show the traceback of an unexpected error (or set {DEBUG_VARIABLE}=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_run,
        _add_topology,
        _add_plan,
        _add_script_and_submit,
        _add_restart,
        _add_job_queries,
        _add_doctor,
        _add_list,
        _add_clean,
        _add_report,
    ):
        add(sub)
    return parser


INTERNAL_ERROR = 3  # the exit status of an error t2mpi did not foresee
DEBUG_VARIABLE = "T2MPI_DEBUG"  # =1: such an error shows its traceback


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except T2mpiError as exc:
        print(f"t2mpi: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        try:  # after a hang-up the terminal may be gone
            print(f"t2mpi: {getattr(exc, 'why', 'interrupted')}; every rank was ended", file=sys.stderr)
        except OSError:
            pass
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:  # output piped into `head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug or a missing library: one line, the traceback when asked
        if args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            import traceback

            traceback.print_exc()
            return INTERNAL_ERROR
        print(
            f"t2mpi {args.command}: unexpected error: {_one_line(_described(exc))} "
            f"(--debug or {DEBUG_VARIABLE}=1 shows the traceback)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


def _described(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"the Python module '{exc.name}' is not installed ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
