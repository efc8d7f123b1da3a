"""A stand-in PBS server on this host, for tests: qsub, qstat, qdel and the MOM that runs a job.

tests/test_pbs.py's fixture writes small executables `qsub`, `qstat`, `qdel` and `pbs_mom` (this
module, run by the test's interpreter) first on PATH. Jobs are recorded as JSON files in the folder
$PBS_STANDIN_HOME; $PBS_STANDIN_FLAVOUR (pbspro or torque) chooses whose behaviour is shown.

What it does as a real server does:
- qsub copies the script, reads its #PBS lines up to the first command (and its own options),
  prints `SEQ.standin` and hands the job to the MOM, which starts it at once;
- the MOM runs the copy under bash in a session of its own, from $HOME, with the environment a
  batch job gets (PBS_JOBID, PBS_JOBNAME, PBS_O_WORKDIR, PBS_O_HOME, PBS_O_PATH, PBS_ENVIRONMENT,
  PBS_NODEFILE listing this host once per MPI process asked: mpiprocs per select chunk on PBS Pro,
  ppn per node on Torque; a plain PATH, not the submitter's environment), its output spooled and
  copied to the -o/-e paths (or NAME.oSEQ in the submit folder) when the job ends;
- the job's exit status is the shell's, 256 + N when signal N ended it; when the shell ends, what
  is left in its session is killed;
- qdel asks the MOM to end the job: SIGTERM to every process of its session, SIGKILL after
  kill_delay (10 s);
- qstat -f prints `qstat -f` fields. PBS Pro keeps job history: a finished job (job_state F,
  Exit_status) is shown only with -x; without it qstat says it has finished and exits 35. Torque
  shows a finished job as job_state C with exit_status, and its -x means XML (refused here).
- Torque refuses select= resources; unknown jobs are `Unknown Job Id` with exit status 153;
  qsub options it does not model (-V, -v, -W, ...) are refused, not ignored.
"""

from __future__ import annotations

import fcntl
import getopt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

KILL_DELAY = 10.0
SERVER = "standin"
QSUB_OPTIONS = "a:A:c:e:hIj:J:k:l:m:M:N:o:p:q:r:S:u:v:VW:X"  # what a real qsub takes
MODELLED = {"-A", "-e", "-j", "-l", "-N", "-o", "-q", "-r"}  # what the stand-in does something with


def home() -> str:
    return os.environ["PBS_STANDIN_HOME"]


def torque() -> bool:
    return os.environ.get("PBS_STANDIN_FLAVOUR", "pbspro") == "torque"


def record_path(job_id: str) -> str:
    return os.path.join(home(), job_id.split(".")[0] + ".json")


def read(job_id: str) -> dict | None:
    if not job_id.split(".")[0].isdigit():
        return None
    try:
        with open(record_path(job_id)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def write(job: dict) -> None:
    path = record_path(job["id"])
    with open(path + ".tmp", "w") as fh:
        json.dump(job, fh)
    os.replace(path + ".tmp", path)


def fail(command: str, message: str, code: int) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ qsub


def directives(text: str) -> list[str]:
    """The words of the #PBS lines before the first command (as qsub reads them)."""
    import shlex

    words: list[str] = []
    for line in text.splitlines()[1:] if text.startswith("#!") else text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#PBS"):
            words += shlex.split(stripped[4:])
        elif stripped and not stripped.startswith("#"):
            break
    return words


def nodefile_count(resources: list[str]) -> int:
    """How many lines PBS_NODEFILE has: MPI processes per chunk (PBS Pro) or ppn per node (Torque)."""
    count = 0
    for resource in resources:
        for item in resource.split(","):
            key, _, value = item.partition("=")
            if key not in ("select", "nodes"):
                continue
            for chunk in value.split("+"):
                head, *parts = chunk.split(":")
                per = dict(p.split("=", 1) if "=" in p else (p, "") for p in parts)
                field = "ppn" if key == "nodes" else "mpiprocs"
                count += int(head or 1) * int(per.get(field, 1))
    return count or 1


def qsub(args: list[str]) -> int:
    try:
        opts, rest = getopt.getopt(args, QSUB_OPTIONS)
    except getopt.GetoptError as exc:
        return fail("qsub", str(exc), 2)
    if len(rest) != 1:
        return fail("qsub", "usage: qsub [options] script", 2)
    try:
        with open(rest[0]) as fh:
            text = fh.read()
    except OSError as exc:
        return fail("qsub", f"script file:: {exc.strerror}", 1)
    try:
        from_script, extra = getopt.getopt(directives(text), QSUB_OPTIONS)
    except getopt.GetoptError as exc:
        return fail("qsub", f"directive error: {exc}", 2)
    if extra:
        return fail("qsub", f"directive error: {' '.join(extra)}", 2)
    options: dict[str, list[str]] = {}
    for flag, value in from_script + opts:  # the command line wins over the script
        if flag not in MODELLED:  # a real qsub would honour it: say so rather than ignore it
            return fail("qsub", f"{flag}: an option the stand-in does not model ({' '.join(sorted(MODELLED))})", 2)
        options.setdefault(flag, []).append(value)
    resources = options.get("-l", [])
    if torque() and any(r.startswith("select=") for r in resources):
        return fail("qsub", "submit error: (Unknown resource type  Resource_List.select)", 1)
    name = options.get("-N", [os.path.basename(rest[0])])[-1]
    if not name or any(c.isspace() for c in name):
        return fail("qsub", "illegal -N value", 2)
    os.makedirs(home(), exist_ok=True)
    with open(os.path.join(home(), "seq"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        seq = int(fh.read() or 0) + 1
        fh.seek(0)
        fh.truncate()
        fh.write(str(seq))
    workdir = os.getcwd()
    job = {
        "id": f"{seq}.{SERVER}",
        "name": name,
        "state": "Q",
        "owner": f"{os.environ.get('USER', 'root')}@{socket.gethostname()}",
        "ctime": time.ctime(),
        "workdir": workdir,
        "resources": resources,
        "queue": options.get("-q", ["workq"])[-1],
        "account": options.get("-A", [None])[-1],
        "rerunnable": options.get("-r", ["n"])[-1] == "y",
        "join": options.get("-j", ["n"])[-1],
        "output": options.get("-o", [os.path.join(workdir, f"{name}.o{seq}")])[-1],
        "error": options.get("-e", [os.path.join(workdir, f"{name}.e{seq}")])[-1],
        "environ": {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "USER", "LOGNAME", "SHELL", "LANG")},
    }
    shutil.copyfile(rest[0], os.path.join(home(), f"{seq}.SC"))
    write(job)
    mom = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "pbs_mom")
    subprocess.Popen(
        [mom, job["id"]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    print(job["id"])
    return 0


# ------------------------------------------------------------------ the MOM


def session_members(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def signal_session(sid: int, signum: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, signum)
        except OSError:
            continue


def mom(args: list[str]) -> int:
    """Run one job: Q -> R -> E (output copied) -> F (or C on Torque)."""
    job = read(args[0])
    assert job is not None, args
    seq = job["id"].split(".")[0]
    deleted = os.path.join(home(), f"{seq}.deleted")
    host = socket.gethostname()
    nodefile = os.path.join(home(), f"{seq}.nodes")
    with open(nodefile, "w") as fh:
        fh.write(f"{host}\n" * nodefile_count(job["resources"]))
    given = job["environ"]
    env = {
        "HOME": given.get("HOME", "/"),
        "USER": given.get("USER", "root"),
        "LOGNAME": given.get("LOGNAME", given.get("USER", "root")),
        "SHELL": "/bin/bash",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PBS_JOBID": job["id"],
        "PBS_JOBNAME": job["name"],
        "PBS_O_WORKDIR": job["workdir"],
        "PBS_O_HOME": given.get("HOME", ""),
        "PBS_O_PATH": given.get("PATH", ""),
        "PBS_O_HOST": host,
        "PBS_O_QUEUE": job["queue"],
        "PBS_QUEUE": job["queue"],
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_NODEFILE": nodefile,
        "ENVIRONMENT": "BATCH",
    }
    out_spool = os.path.join(home(), f"{seq}.OU")
    err_spool = os.path.join(home(), f"{seq}.ER")
    with open(out_spool, "wb") as out, open(err_spool, "wb") as err:
        if os.path.exists(deleted):  # deleted while queued: it never runs
            job.update(state="F" if not torque() else "C")
            write(job)
            return 0
        proc = subprocess.Popen(
            ["/bin/bash", os.path.join(home(), f"{seq}.SC")],
            cwd=env["HOME"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out if job["join"] == "oe" else err,
            start_new_session=True,
        )
        job.update(state="R", session_id=proc.pid, exec_host=f"{host}/0")
        write(job)
        kill_at = None
        while proc.poll() is None:
            if kill_at is None and os.path.exists(deleted):
                signal_session(proc.pid, signal.SIGTERM)
                kill_at = time.monotonic() + KILL_DELAY
            elif kill_at is not None and time.monotonic() > kill_at:
                signal_session(proc.pid, signal.SIGKILL)
            time.sleep(0.1)
        code = proc.returncode if proc.returncode >= 0 else 256 - proc.returncode
        signal_session(proc.pid, signal.SIGKILL)  # what the job's shell left behind
    job.update(state="E")
    write(job)
    shutil.copyfile(out_spool, job["output"])
    if job["join"] != "oe":
        shutil.copyfile(err_spool, job["error"])
    job.update(state="C" if torque() else "F", exit_status=code)
    write(job)
    return 0


# ------------------------------------------------------------------ qstat, qdel


def qstat(args: list[str]) -> int:
    try:
        opts, ids = getopt.getopt(args, "fxH")
    except getopt.GetoptError as exc:
        return fail("qstat", str(exc), 2)
    flags = {flag for flag, _ in opts}
    if "-f" not in flags or not ids:
        return fail("qstat", "the stand-in answers only qstat -f [-x] JOBID", 2)
    if torque() and "-x" in flags:
        return fail("qstat", "the stand-in does not write Torque's XML (-x)", 2)
    code = 0
    for job_id in ids:
        job = read(job_id)
        if job is None:
            code = fail("qstat", f"Unknown Job Id {job_id}", 153)
            continue
        if job["state"] == "F" and "-x" not in flags:
            code = fail("qstat", f"{job['id']} Job has finished, use -x or -H to obtain historical job information", 35)
            continue
        lines = [
            f"Job Id: {job['id']}",
            f"    Job_Name = {job['name']}",
            f"    Job_Owner = {job['owner']}",
            f"    job_state = {job['state']}",
            f"    queue = {job['queue']}",
            f"    server = {SERVER}",
            f"    ctime = {job['ctime']}",
            f"    Output_Path = {socket.gethostname()}:{job['output']}",
            f"    Join_Path = {job['join']}",
            f"    Rerunable = {'True' if job['rerunnable'] else 'False'}",
        ]
        if job["account"]:
            lines.append(f"    Account_Name = {job['account']}")
        lines += [f"    Resource_List.{r.split('=', 1)[0]} = {r.partition('=')[2]}" for r in job["resources"]]
        if "session_id" in job:
            lines += [f"    session_id = {job['session_id']}", f"    exec_host = {job['exec_host']}"]
        if "exit_status" in job:
            lines.append(f"    {'exit_status' if torque() else 'Exit_status'} = {job['exit_status']}")
        print("\n".join(lines) + "\n")
    return code


def qdel(args: list[str]) -> int:
    if not args:
        return fail("qdel", "usage: qdel JOBID", 2)
    code = 0
    for job_id in args:
        job = read(job_id)
        if job is None:
            code = fail("qdel", f"Unknown Job Id {job_id}", 153)
        elif job["state"] in ("F", "C"):
            code = fail("qdel", f"Job has finished {job['id']}", 35)
        else:
            with open(os.path.join(home(), f"{job['id'].split('.')[0]}.deleted"), "w"):
                pass
    return code


def main(command: str, args: list[str]) -> int:
    return {"qsub": qsub, "qstat": qstat, "qdel": qdel, "pbs_mom": mom}[command](args)
