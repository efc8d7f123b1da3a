"""The job folder: the only module that knows its file names and how they are written.

<jobs_dir>/<job_id>/          mode 0700, appears complete (made under a hidden name, then renamed)
    spec.json                 the resolved job spec
    state.json                the master's state, replaced atomically
    state.lock                flock held while state.json is written, or checked and settled
    events.jsonl              one JSON object per line, appended
    results.pkl               the workers' return values {worker_id: value}, written atomically
    job.sh, scheduler.json    a submitted job's batch script, and the scheduler's name for it
    client.json               the t2mpi run process (host, pid) running the job now
    network.json              the transport chosen for the job, where and why
    mpi.json                  a submitted job's MPI (path, flavour, version, components)
    batch.out                 the batch job's output
    logs/worker-<id>.log      each worker's output and log
    workers/<id>/             each worker's persistent folder (made on first use)
    checkpoints/<v>/worker-<id>.pkl   worker states of checkpoint version v, each written atomically
    checkpoints/committed.json        the last version every worker wrote (the master commits it)
    restarts.json             how often the job was restarted, and why
    persisted/<key>/<generation>/part-<w>.*   worker w's partition of a persisted data set (DataSet.persist)
    persisted/<key>/complete.json             the data set is complete: its name and every part (written last)
    stop                      a request to checkpoint and stop (preemption, walltime), while it runs
    cancel                    a request to end the job KILLED (t2mpi cancel of a local job), and why
"""

from __future__ import annotations

import os
import pickle
import time

from ..errors import JobError
from .files import check_room, fsync_dir, read_bytes, read_json, remove_tree, unlink_if_there, write_atomic, write_json
from .states import FINAL, KILLED, STARTING

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO


class JobDir:
    """A job's folder on the shared filesystem."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.path.abspath(path)
        self.job_id = os.path.basename(self.path)
        self.spec_file = os.path.join(self.path, "spec.json")
        self.state_file = os.path.join(self.path, "state.json")
        self.events_file = os.path.join(self.path, "events.jsonl")
        self.results_file = os.path.join(self.path, "results.pkl")
        self.logs_dir = os.path.join(self.path, "logs")
        self.script_file = os.path.join(self.path, "job.sh")
        self.scheduler_file = os.path.join(self.path, "scheduler.json")
        self.client_file = os.path.join(self.path, "client.json")
        self.network_file = os.path.join(self.path, "network.json")
        self.mpi_file = os.path.join(self.path, "mpi.json")
        self.batch_out = os.path.join(self.path, "batch.out")
        self.checkpoints_dir = os.path.join(self.path, "checkpoints")
        self.committed_file = os.path.join(self.checkpoints_dir, "committed.json")
        self.restarts_file = os.path.join(self.path, "restarts.json")
        self.stop_file = os.path.join(self.path, "stop")
        self.cancel_file = os.path.join(self.path, "cancel")
        self.persisted_dir = os.path.join(self.path, "persisted")

    def worker_log(self, worker_id: int) -> str:
        return os.path.join(self.logs_dir, f"worker-{worker_id}.log")

    def worker_dir(self, worker_id: int) -> str:
        return os.path.join(self.path, "workers", str(worker_id))

    # -------------------------------------------------------------- creating

    @classmethod
    def create(
        cls, jobs_dir: str | os.PathLike[str], name: str, spec: dict[str, Any], network: dict[str, Any] | None = None
    ) -> JobDir:
        """Make a new private job folder holding spec.json (and network.json, as in make); it
        appears whole or not at all."""
        return cls.make(cls.new_path(jobs_dir, name), spec, network=network)

    @staticmethod
    def new_path(jobs_dir: str | os.PathLike[str], name: str) -> str:
        """A fresh job folder path: <jobs_dir>/<name>-<date>-<time>-<4 hex digits>."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            final = os.path.join(os.fspath(jobs_dir), f"{name}-{stamp}-{os.urandom(2).hex()}")
            if not os.path.exists(final):
                return final

    @classmethod
    def make(
        cls,
        final: str,
        spec: dict[str, Any],
        script: str | None = None,
        network: dict[str, Any] | None = None,
        mpi: dict[str, Any] | None = None,
    ) -> JobDir:
        """Make the job folder `final` (from new_path) holding spec.json, and if given the batch
        script job.sh, the chosen transport network.json (see write_network) and the MPI the job
        was prepared with, mpi.json (see read_mpi); whole or not at all."""
        import json

        parent, job_id = os.path.split(final)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise JobError(f"jobs_dir {parent}: cannot create it: {exc.strerror or exc}") from None
        check_room(parent)
        staging = os.path.join(parent, f".{job_id}.creating")
        try:
            os.mkdir(staging, 0o700)
            os.chmod(staging, 0o700)  # whatever the umask
            os.mkdir(os.path.join(staging, "logs"), 0o700)
            spec = dict(spec, job_id=job_id)
            write_atomic(os.path.join(staging, "spec.json"), json.dumps(spec, indent=2).encode())
            if script is not None:
                write_atomic(os.path.join(staging, "job.sh"), script.encode())
            for name, data in (("network.json", network), ("mpi.json", mpi)):
                if data is not None:
                    write_atomic(os.path.join(staging, name), json.dumps(data, indent=1).encode())
            os.rename(staging, final)
        except OSError as exc:
            remove_tree(staging)
            raise JobError(
                f"jobs_dir {parent}: cannot create job folder: {exc.strerror or exc} "
                "(free some space there, or give another jobs_dir, e.g. --set jobs_dir=DIR)"
            ) from None
        return cls(final)

    # -------------------------------------------------------------- reading and writing

    def read_spec(self) -> dict[str, Any]:
        spec = read_json(self.spec_file, None)
        if spec is None:
            raise JobError(f"{self.path}: not a t2mpi job folder (no spec.json)")
        return spec

    def write_state(self, state: dict[str, Any]) -> None:
        """The master's state (the truth): written under the state lock, so that a settle() in
        another process never reads before it and writes after it."""
        with self._state_lock():
            write_json(self.state_file, state, indent=1)

    def _state_lock(self) -> Any:
        """An exclusive lock (flock) on the job folder's state.lock, held while state.json is
        checked and written."""
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held() -> Any:
            fd = os.open(os.path.join(self.path, "state.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing the file releases the lock

        return held()

    def read_state(self) -> dict[str, Any] | None:
        return read_json(self.state_file, None)

    def append_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        import json

        data = "".join(json.dumps(e, default=str) + "\n" for e in events).encode()
        fd = os.open(self.events_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as exc:  # a full disk: take back the part written, so every line stays whole
            if written:
                os.ftruncate(fd, os.fstat(fd).st_size - written)
            exc.filename = self.events_file
            raise
        finally:
            os.close(fd)

    def read_events(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Events from byte `offset` on (whole lines only) and the offset to read from next."""
        try:
            with open(self.events_file, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        import json

        end = data.rfind(b"\n") + 1
        events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return events, offset + end

    def write_client(self, host: str, pid: int) -> None:
        """The client process running the job now (t2mpi run): a spawning master watches it."""
        write_json(self.client_file, {"host": host, "pid": pid})

    def read_client(self) -> dict[str, Any] | None:
        try:
            return read_json(self.client_file, None)
        except JobError:  # nothing to watch
            return None

    def write_network(self, choice: dict[str, Any]) -> None:
        """The transport chosen for the job: host, transport, env, why (t2mpi run where it runs;
        a batch job on its first node, t2mpi.network)."""
        write_json(self.network_file, choice, indent=1)

    def read_network(self) -> dict[str, Any] | None:
        return read_json(self.network_file, None)

    def read_mpi(self) -> dict[str, Any] | None:
        """The MPI a submitted job was prepared with (mpi.json, written by t2mpi submit): path,
        flavour, version and compiled-in components, for the transport's choice on its first node."""
        return read_json(self.mpi_file, None)

    def write_scheduler(self, kind: str, job_id: str) -> None:
        write_json(self.scheduler_file, {"kind": kind, "id": job_id, "submitted": time.time()})

    def read_scheduler(self) -> dict[str, Any] | None:
        return read_json(self.scheduler_file, None)

    # -------------------------------------------------------------- checkpoints

    def checkpoint_file(self, version: int, worker_id: int) -> str:
        return os.path.join(self.checkpoints_dir, str(version), f"worker-{worker_id}.pkl")

    def write_checkpoint(self, version: int, worker_id: int, data: bytes | Callable[[BinaryIO], None]) -> None:
        """One worker's state for `version`: the old file or the new one, never a part of it."""
        folder = os.path.join(self.checkpoints_dir, str(version))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        write_atomic(self.checkpoint_file(version, worker_id), data)

    def save_checkpoint(self, version: int, worker_id: int, state: Any) -> None:
        """Pickle `state` straight into the checkpoint file (large arrays are not copied first)."""
        self.write_checkpoint(version, worker_id, lambda fh: pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL))

    def read_checkpoint(self, version: int, worker_id: int) -> bytes:
        return read_bytes(self.checkpoint_file(version, worker_id))

    def committed_version(self) -> int | None:
        """The last checkpoint version that every worker wrote, or None."""
        committed = read_json(self.committed_file, None)
        try:
            return None if committed is None else int(committed["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"{self.committed_file}: cannot read: {exc!r}") from None

    def commit_checkpoint(self, version: int, workers: int) -> None:
        """Make `version` the one a restart uses (one atomic rename), then drop older versions."""
        fsync_dir(os.path.join(self.checkpoints_dir, str(version)))  # its files' renames are durable
        write_json(self.committed_file, {"version": version, "workers": workers, "committed": time.time()})
        fsync_dir(self.checkpoints_dir)
        for name in os.listdir(self.checkpoints_dir):
            if name.isdigit() and int(name) < version:
                remove_tree(os.path.join(self.checkpoints_dir, name))

    # -------------------------------------------------------------- persisted data sets

    @staticmethod
    def persisted_key(name: str) -> str:
        """The folder name of the persisted data set `name`: the name itself when it is a safe file
        name, else its safe characters and a hash of the whole name (so two names never share one)."""
        import hashlib
        import re

        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:80]
        if safe and safe == name:
            return name
        return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"

    def persisted_part(self, key: str, generation: str, worker_id: int, suffix: str) -> str:
        """The path of one file of worker `worker_id`'s part (suffix: npy, keys.npy, values.npy, pkl)."""
        return os.path.join(self.persisted_dir, key, generation, f"part-{worker_id}.{suffix}")

    def begin_persisted(self, key: str, generation: str) -> None:
        """Make the folder (0700) that a generation's parts are written into."""
        path = self.path
        for part in ("persisted", key, generation):  # each 0700 (makedirs gives only the last its mode)
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass

    def sync_persisted(self, key: str, generation: str) -> None:
        """Make the renames of the files written into a generation durable (before its commit)."""
        fsync_dir(os.path.join(self.persisted_dir, key, generation))

    def read_persisted(self, key: str) -> dict[str, Any] | None:
        """The record of the complete persisted data set `key` (see commit_persisted), or None
        when none is complete (never written, or a write that did not finish)."""
        return read_json(os.path.join(self.persisted_dir, key, "complete.json"), None)

    def commit_persisted(self, key: str, record: dict[str, Any]) -> None:
        """Make `record` (name, generation, workers, parts: each worker's files and sizes) the
        complete version of `key`: every part is written; one atomic rename; then the other
        generations (older ones, and writes that never finished) go."""
        generation = record["generation"]
        folder = os.path.join(self.persisted_dir, key)
        self.begin_persisted(key, generation)
        fsync_dir(os.path.join(folder, generation))
        write_json(os.path.join(folder, "complete.json"), dict(record, committed=time.time()), indent=1)
        fsync_dir(folder)
        for name in os.listdir(folder):
            if name != generation and os.path.isdir(os.path.join(folder, name)):
                remove_tree(os.path.join(folder, name))

    def persisted(self) -> list[dict[str, Any]]:
        """The records of every complete persisted data set, by key."""
        try:
            keys = sorted(os.listdir(self.persisted_dir))
        except FileNotFoundError:
            return []
        records = (self.read_persisted(key) for key in keys if not key.startswith("."))
        return [r for r in records if r is not None]

    def drop_persisted(self) -> None:
        """Remove every persisted data set (the job completed: no restart can use them); hidden
        first, so that a reader never finds half of one."""
        if not os.path.isdir(self.persisted_dir):
            return
        hidden = os.path.join(self.path, f".persisted.{os.getpid()}.removing")
        try:
            os.rename(self.persisted_dir, hidden)
        except OSError:  # left as it is: a completed job must not fail for this
            return
        remove_tree(hidden)

    # -------------------------------------------------------------- restarts and stop requests

    def restarts(self) -> dict[str, Any]:
        """{"count": restarts so far, "history": [{"t", "state", "reason", "why"}, ...]}."""
        return read_json(self.restarts_file, {"count": 0, "history": []})

    def begin_restart(self, why: str, by: str = "client") -> int:
        """Count one more restart, keep how the last run ended, and set the state back to
        STARTING; returns the restart's number (1 for the first). JobError, with nothing
        changed, where the folder's filesystem is read-only or full."""
        check_room(os.path.dirname(self.path), restarting=self.job_id)
        restarts = self.restarts()
        last = self.read_state() or {}
        restarts["count"] += 1
        now = time.time()
        restarts["history"].append({"t": now, "state": last.get("state"), "reason": last.get("reason"), "why": why})
        write_json(self.restarts_file, restarts, indent=1)
        self.clear_stop()
        unlink_if_there(self.cancel_file)
        unlink_if_there(self.client_file)  # no client runs the new run until it says so (write_client)
        self.write_state(
            {
                "job_id": self.job_id,
                "name": last.get("name"),
                "state": STARTING,
                "reason": f"restart {restarts['count']}: {why}",
                "restarts": restarts["count"],
                "started": now,
                "ended": None,
                "num_workers": last.get("num_workers"),
                "workers": [],
            }
        )
        self.append_events(
            [
                {
                    "t": now,
                    "event": "restarting",
                    "restart": restarts["count"],
                    "why": why,
                    "by": by,
                    "checkpoint": self.committed_version(),
                    "persisted": [r.get("name") for r in self.persisted()],
                }
            ]
        )
        return restarts["count"]

    def request_stop(self, why: str) -> None:
        """Ask the running job's master to have every worker checkpoint, then stop."""
        write_atomic(self.stop_file, why.encode())

    def stop_request(self) -> str | None:
        try:
            return read_bytes(self.stop_file).decode(errors="replace") or "stop requested"
        except FileNotFoundError:
            return None

    def clear_stop(self) -> None:
        unlink_if_there(self.stop_file)

    def request_cancel(self, why: str) -> None:
        """Ask the running job's master to end the job KILLED with the reason `why` (t2mpi cancel);
        whoever settles the job after this settles it so too."""
        write_atomic(self.cancel_file, why.encode())

    def cancel_request(self) -> str | None:
        try:
            return read_bytes(self.cancel_file).decode(errors="replace") or "cancelled"
        except FileNotFoundError:
            return None

    def size(self) -> int:
        """The bytes the job folder's files hold."""
        total = 0
        for top, _dirs, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(top, name)).st_size
                except OSError:
                    pass  # gone meanwhile
        return total

    def remove(self) -> None:
        """Take away the job folder (a refused submission, t2mpi clean): hidden first, so that
        no listing sees it half gone."""
        hidden = os.path.join(os.path.dirname(self.path), f".{self.job_id}.removing")
        os.rename(self.path, hidden)
        remove_tree(hidden)

    def settle(self, state: str, reason: str, by: str = "client", keep: tuple[str, ...] = FINAL) -> dict[str, Any]:
        """Write a terminal state for a job that ended without its master writing one (a launch
        that died, a cancel, a lost master); a state in `keep` (by default: a final one) stays. A
        job that t2mpi cancel asked to end settles KILLED with the cancel's reason, however its
        end was noticed. Returns the state. When the state cannot be written (a full or
        read-only disk), state.json stays as it was, whole, and the reason returned says why."""
        cancelled = self.cancel_request()
        if cancelled is not None:
            state, reason = KILLED, cancelled
        now = time.time()
        current = None
        try:
            with self._state_lock():  # a compare-and-set: an end the master wrote meanwhile stays
                current = self.read_state()
                if current is not None and current.get("state") in keep:
                    return current
                settled = dict(current or {"job_id": self.job_id, "num_workers": None, "started": now, "workers": []})
                settled.update(state=state, reason=reason, ended=now)
                for w in settled.get("workers", []):
                    if w.get("state") not in FINAL:
                        w["state"] = KILLED
                write_json(self.state_file, settled, indent=1)
        except OSError as exc:
            settled = dict(current or {"job_id": self.job_id, "workers": []})
            why = self.not_written(exc, self.state_file)
            settled.update(state=state, ended=now, reason=f"{reason} (not recorded: {why})")
            return settled
        try:
            self.append_events([{"t": now, "event": "ended", "state": state, "reason": reason, "by": by}])
        except OSError:
            pass  # the state, the truth, is written
        return settled

    def not_written(self, exc: OSError, path: str | None = None) -> str:
        """One line on a write into the job folder that failed: the file (`path`, else the one
        the error names, else the folder) and the system's words, e.g. 'cannot write
        DIR/state.json: No space left on device'."""
        where = path or (exc.filename if isinstance(exc.filename, str) else self.path)
        return f"cannot write {where}: {exc.strerror or exc}"

    def write_results(self, results: dict[int, Any]) -> None:
        write_atomic(self.results_file, pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))

    def read_results(self) -> dict[int, Any]:
        try:
            return pickle.loads(read_bytes(self.results_file))
        except FileNotFoundError:
            return {}
