"""The `t2mpi` command's commands: one function per command, each given the parsed arguments
(t2mpi.cli builds the parser and turns errors into one line)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time

from .errors import JobError
from .job import states
from .signals import hang_up, interrupt, terminate

TYPE_CHECKING = False  # typing costs ~10 ms of start-up
if TYPE_CHECKING:
    import argparse
    from typing import Any


def _run(args: argparse.Namespace) -> int:
    from . import client
    from .mpi.launcher import rank_environment
    from .mpi.limit import check_local_launch
    from .resources import autobind

    overrides = [*args.set, "mpi.oversubscribe=true"] if args.oversubscribe else args.set
    job = client.prepare(args.job, workers=args.workers, master=args.master, overrides=overrides)
    check_local_launch(job.spec, job.host.cpus, os.environ)  # a typo must not fork-bomb this node
    if args.detach and not args.dry_run:
        return _detached(job)
    if not args.dry_run:
        return _run_here(job, lambda follower: client.execute(job, follower), args.quiet, args.report_bindings)
    env = rank_environment(job.spec, job.network.env)
    print(
        f"# {job.mpi.flavour} {job.mpi.version} ({job.mpi.path}); "
        f"{job.spec.workers} workers + 1 master; the job folder is made at launch"
    )
    print(f"# transport: {job.network.transport} ({'; '.join(job.network.why)})")
    print("# binding: {} ({})".format(*autobind.here(job.spec)))
    print("# environment for every rank (passed by the launcher):")
    for key, value in sorted(env.items()):
        print(f"#   {key}={value}")
    print(shlex.join(job.argv(f"{job.spec.jobs_dir}/{job.spec.name}-<timestamp>")))
    return 0


def _detached(job: Any) -> int:
    """t2mpi run --detach: make the job folder, print the job id and return; the job runs on in a
    process of its own session (client.detach), its exit status the job's, as t2mpi run's would be."""
    from . import client

    jd, pid = client.detach(job)
    if pid == 0:
        return _run_here(job, lambda follower: client.run_in(job, jd, follower), True, False)
    print(
        f"t2mpi: job {jd.job_id} runs detached (pid {pid}); folder {jd.path}; follow it with "
        f"`t2mpi status --follow {jd.job_id}` or `t2mpi logs --follow {jd.job_id}`",
        file=sys.stderr,
        flush=True,
    )
    print(jd.job_id, flush=True)
    return 0


def _run_here(job: Any, runner: Any, quiet: bool, report_bindings: bool) -> int:
    """Run a job on this node through `runner(follower)` with live status and a summary;
    SIGUSR1 asks the job for a checkpoint and a stop (as a batch scheduler's signal would)."""
    from . import client, console

    live: dict[str, Any] = {}

    def started(jd: Any, argv: list[str]) -> None:
        live["jd"] = jd
        live["status"] = console.LiveStatus(jd.job_id) if not quiet else None
        print(
            f"t2mpi: job {jd.job_id} ({job.spec.workers} workers, {job.mpi.flavour}); folder {jd.path}",
            file=sys.stderr,
            flush=True,
        )

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

    signal.signal(signal.SIGTERM, terminate)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # under nohup the job goes on
        signal.signal(signal.SIGHUP, hang_up)
    signal.signal(
        signal.SIGUSR1, lambda signum, frame: live["jd"].request_stop("SIGUSR1 to t2mpi") if "jd" in live else None
    )
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT stays so
        signal.signal(signal.SIGINT, lambda signum, frame: interrupt(live))  # a stream stops first
    follower = client.Follower(
        on_stdout=output(sys.stdout), on_stderr=output(sys.stderr), on_events=events, on_start=started
    )
    try:
        result = runner(follower)
    finally:
        if live.get("status") is not None:
            try:
                live["status"].close()
            except OSError:  # the terminal went with a hang-up: the job's end is already written
                pass
    from .job.folder import JobDir

    state = JobDir(result.job_dir).read_state()
    if state and state.get("state") != result.state:  # the end could not be recorded (a full disk)
        state = None
    print(
        console.summary(state) if state else f"job {result.job_id}: {result.state} — {result.reason}", file=sys.stderr
    )
    if report_bindings and state:
        print(console.bindings(state), file=sys.stderr)
    return result.exit_code


def _restart(args: argparse.Namespace) -> int:
    from . import client
    from .scheduler import control

    jd = _job(args)
    state = control.status(jd)
    if state.get("state") not in states.RESTARTABLE:
        raise JobError(
            f"job {jd.job_id} is {state.get('state')}: only a FAILED, KILLED, LOST or stopped "
            "(PREEMPTED) job can be restarted"
        )
    if jd.read_scheduler() is not None:
        sched_id = control.resubmit(jd)
        print(
            f"t2mpi: resubmitted job {jd.job_id} ({jd.read_scheduler()['kind']} job {sched_id}) "
            f"from checkpoint {jd.committed_version()}",
            file=sys.stderr,
            flush=True,
        )
        return _follow_submitted(jd) if args.wait else 0
    job = client.load_prepared(jd)
    return _run_here(job, lambda follower: client.resume(job, jd, follower, "t2mpi restart"), args.quiet, False)


def _node(args: argparse.Namespace) -> Any:
    from .resources import topology

    if args.xml:
        return topology.from_xml(args.xml)
    if args.synthetic:
        return topology.from_synthetic(args.synthetic)
    if args.sysfs:
        return topology.from_sysfs()
    try:
        # The client never initialises MPI, so pyhwloc's clash with the Open MPI wheel (both in one
        # process) cannot happen here; MPI ranks read their node from sysfs instead.
        return topology.from_machine()
    except (ImportError, OSError) as exc:
        print(
            f"t2mpi: note: hwloc cannot be loaded ({type(exc).__name__}: {exc}); reading this node from sysfs",
            file=sys.stderr,
        )
        return topology.from_sysfs()


def _doctor(args: argparse.Namespace) -> int:
    from .job.spec import load
    from .mpi import launcher as mpilauncher
    from .net import choice as netchoice
    from .net import fabric

    if args.job:
        spec = load(args.job, overrides=args.set)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:  # a job file of defaults, for its settings
            path = os.path.join(folder, "doctor.yaml")
            with open(path, "w") as fh:
                fh.write("name: doctor\nworker: doctor:Doctor\n")
            spec = load(path, overrides=args.set)
    mpi = mpilauncher.detect(mpilauncher.find(spec, sys.executable))
    found = fabric.probe_libraries(fabric.scan(), mpi.path)
    choice = netchoice.choose(found, mpi.flavour, mpilauncher.components(mpi), spec.network._asdict())
    if args.json:
        import json

        print(json.dumps({"mpi": mpi._asdict(), **fabric.to_dict(found, choice)}, indent=1, default=str))
    else:
        print(f"node {os.uname().nodename}; MPI: {mpi.flavour} {mpi.version} ({mpi.path})")
        print(netchoice.summary(found, choice))
    return 0


def _topology(args: argparse.Namespace) -> int:
    from .resources import topology

    node = _node(args)
    here = not (args.xml or args.synthetic)  # storage and network only of this machine
    if args.json:
        import json

        print(json.dumps({**topology.to_dict(node), **(_storage_and_network() if here else {})}, indent=1))
    else:
        print(topology.summary(node))
        if here:
            info = _storage_and_network()
            for v in info["storage"]:
                print(
                    f"  {v['role']}: {v['path']} on {v['mount']} ({v['fstype']} {v['source']}"
                    f"{', shared' if v['shared'] else ''}): {topology.format_bytes(v['free'])} free "
                    f"of {topology.format_bytes(v['total'])}"
                )
            for n in info["network"]:
                speed = f" {n['speed']} Mb/s" if n["speed"] else ""
                print(
                    f"  network: {n['name']} {n['state']}{speed} {n['address'] or '(no IPv4 address)'}"
                    f"{' (loopback)' if n['loopback'] else ''}"
                )
    return 0


def _storage_and_network() -> dict[str, Any]:
    """Where a job's folders would be on this node (the site config's jobs_dir; scratch: the
    temporary folder), and the node's network interfaces with their IPv4 addresses."""
    import tempfile

    from .job.spec import default_jobs_dir
    from .net import fabric
    from .resources import storage

    volumes = []
    for role, path in (("jobs_dir", default_jobs_dir()), ("scratch", tempfile.gettempdir())):
        v = storage.volume(path)
        volumes.append({"role": role, **v._asdict(), "shared": storage.is_shared(v)})
    nets = [
        {
            "name": n.name,
            "state": n.operstate,
            "speed": n.speed,
            "loopback": n.loopback,
            "address": fabric.ipv4_address(n.name),
        }
        for n in fabric.scan().nets
    ]
    return {"storage": volumes, "network": nets}


_MAX_NODES = 100_000  # plan --nodes: more would only fill memory with copies of one node


def _plan(args: argparse.Namespace) -> int:
    from .job.spec import load
    from .resources.placement import format_plan, plan

    spec = load(args.job, workers=args.workers, overrides=args.set)
    if not 1 <= args.nodes <= _MAX_NODES:
        from .errors import SpecError

        raise SpecError(f"--nodes {args.nodes}: give 1 to {_MAX_NODES}")
    nodes = [_node(args)] * args.nodes
    r = spec.resources
    print(format_plan(plan(nodes, spec.workers, r.cpus, r.threads, r.memory, spec.binding.policy), nodes))
    return 0


def _prepared(args: argparse.Namespace) -> Any:
    from . import client

    overrides = list(args.set)
    if args.scheduler:
        overrides.append(f"scheduler.kind={args.scheduler}")
    return client.prepare(args.job, workers=args.workers, overrides=overrides, batch=True)


def _script(args: argparse.Namespace) -> int:
    from .scheduler import control

    job = _prepared(args)
    print(control.script(job, f"{job.spec.jobs_dir}/{job.spec.name}-JOBID"), end="")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from .scheduler import control

    job = _prepared(args)
    if job.network.transport is None:  # the job's first node chooses again when it starts
        print(
            f"t2mpi: note: {job.network.why[0]} (a batch job chooses its transport on its first node when it starts)",
            file=sys.stderr,
            flush=True,
        )
    jd, sched_id = control.submit(job)
    print(
        f"t2mpi: submitted job {jd.job_id} ({jd.read_scheduler()['kind']} job {sched_id}); folder {jd.path}",
        file=sys.stderr,
        flush=True,
    )
    print(jd.job_id)
    return _follow_submitted(jd) if args.wait else 0


def _follow_submitted(jd: Any, files: list[str] | None = None) -> int:
    """Follow a job to its end with a live status and the output of `files` (default: its batch
    output); a summary, and exit 0 if it completed, else 1."""
    from . import console
    from .scheduler import control

    signal.signal(signal.SIGTERM, terminate)
    status = console.LiveStatus(jd.job_id)
    try:
        final = control.follow(
            jd,
            lambda text: status.output(_out, text),
            lambda state: status.events([], state),
            [jd.batch_out] if files is None else files,
        )
    except KeyboardInterrupt as exc:
        status.close()
        print(f"t2mpi: stopped following; the job goes on (t2mpi cancel {jd.job_id} ends it)", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    status.close()
    print(
        console.summary(final)
        if final.get("workers")
        else f"job {jd.job_id}: {final['state']} — {final.get('reason', '')}",
        file=sys.stderr,
    )
    return 0 if final["state"] == states.COMPLETED else 1


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _job(args: argparse.Namespace) -> Any:
    from .job.spec import default_jobs_dir
    from .scheduler import control

    return control.find(args.job, args.jobs_dir or default_jobs_dir())


def _status(args: argparse.Namespace) -> int:
    from . import console
    from .scheduler import control

    if args.follow:
        return _follow_submitted(_job(args), files=[])
    state = control.status(_job(args))
    if args.json:
        import json

        print(json.dumps(state, indent=1, default=str))
    elif state.get("workers"):
        print(console.summary(state))
        sched = state.get("scheduler")
        if sched:
            print(f"  {sched['kind']} job {sched['id']}: {sched['state']} ({sched['reason']})")
    else:
        print(f"job {state.get('job_id')}: {state['state']} — {state.get('reason', '')}")
    if state.get("unverified") and not args.json:
        print(f"  {state['state']} as its state file says; {state['unverified']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .job.spec import default_jobs_dir
    from .scheduler import control

    jobs_dir = args.jobs_dir or default_jobs_dir()
    if os.path.exists(jobs_dir) and not os.path.isdir(jobs_dir):
        from .errors import SpecError

        raise SpecError(
            f"{jobs_dir}: not a folder (--jobs-dir or the site config's jobs_dir names the folder of job folders)"
        )
    rows = control.list_jobs(jobs_dir)
    print(f"{'job':<40} {'state':<10} {'workers':>7}  {'scheduler':<16} started")
    for r in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])) if r.get("started") else "-"
        shown = r["state"] + ("?" if r.get("unverified") else "")  # its master is on another host
        print(
            f"{r['job_id']:<40} {shown:<10} {str(r.get('workers', '-')):>7}  "
            f"{r.get('scheduler', '-') + ' ' + str(r.get('scheduler_id', '')):<16} {started}"
        )
    return 0


def _age(text: str) -> float:
    """'7d', '12h', '30m', '45s' or a number of seconds, as seconds."""
    import re

    from .errors import SpecError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if m is None:
        raise SpecError(f"--older-than {text!r}: give a number and a unit, s, m, h or d (e.g. 7d, 12h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _clean(args: argparse.Namespace) -> int:
    from .errors import SpecError
    from .job.spec import default_jobs_dir
    from .scheduler import control

    older_than = _age(args.older_than)
    wanted = tuple(s.strip().upper() for s in args.state.split(",") if s.strip())
    bad = [s for s in wanted if s not in states.FINAL]
    if bad or not wanted:
        raise SpecError(
            f"--state {args.state!r}: {', '.join(bad) or 'no state'} cannot be cleaned; "
            f"give some of {', '.join(states.FINAL)} (a job in another state may still run)"
        )
    jobs_dir = args.jobs_dir or default_jobs_dir()
    rows = control.clean(jobs_dir, older_than, wanted, time.time(), args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for r in rows:
        ended = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(r["ended"])))
        print(f"{verb} {r['job_id']} ({r['state']}, ended {ended}, {r['bytes'] / 2**20:.1f} MiB)")
    total = sum(r["bytes"] for r in rows) / 2**20
    print(f"{verb} {len(rows)} job folder{'s' if len(rows) != 1 else ''} ({total:.1f} MiB) in {jobs_dir}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .scheduler import control

    jd = _job(args)
    files = control.log_files(jd, args.worker)
    if args.worker is not None:  # whose log, and where it ran
        for w in (jd.read_state() or {}).get("workers", []):
            if w.get("id") == args.worker:
                print(f"# worker {w['id']} on {w.get('host')} (pid {w.get('pid')})", flush=True)
    if args.follow:
        control.follow(jd, _out, lambda state: None, files)
        return 0
    missing = [f for f in files if not os.path.exists(f)]
    if len(missing) == len(files):
        raise JobError(f"job {jd.job_id} has no output yet ({', '.join(files) or 'no logs'})")
    for path in files:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                sys.stdout.write(fh.read())
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from .scheduler import control

    state = control.cancel(_job(args))
    print(f"job {state['job_id']}: {state['state']} — {state.get('reason', '')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import report
    from .job.folder import write_atomic

    jd = _job(args)
    state = jd.read_state()
    if state is None:
        raise JobError(f"job {jd.job_id} has no state.json yet ({jd.path}): it has not started")
    events, _ = jd.read_events()
    out = args.output or os.path.join(jd.path, "report.html")
    try:
        write_atomic(out, report.render(state, events).encode())
    except OSError as exc:
        raise JobError(f"report: cannot write {out}: {exc.strerror or exc}") from None
    print(out)
    return 0


COMMANDS = {
    "run": _run,
    "doctor": _doctor,
    "topology": _topology,
    "plan": _plan,
    "script": _script,
    "submit": _submit,
    "status": _status,
    "list": _list,
    "clean": _clean,
    "logs": _logs,
    "cancel": _cancel,
    "restart": _restart,
    "report": _report,
}
