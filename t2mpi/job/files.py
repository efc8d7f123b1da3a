"""How the job folder's files are written and read: atomically (temporary file, fsync, rename),
JSON, and whether a filesystem can take a new job folder. (job/folder.py knows the names.)"""

from __future__ import annotations

import os

from ..errors import JobError

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO


def write_atomic(path: str, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function that writes to the open file) to `path` so that
    readers see the old or the new file, never a part: temporary file, fsync, rename. On a
    failure (a full disk: OSError naming `path`), the temporary file is gone and `path` as it was."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        exc.filename = path
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # a write's error names no file
            exc.filename = path
        raise


MIN_FREE = 1 << 20  # bytes a new job folder's filesystem must have free: its state, events and logs


def keep_cache(path: str, data: object) -> None:
    """A small JSON cache file (its folder made 0700), written atomically; best effort: a cache
    that cannot be written only costs the next run what the cache saves."""
    import json

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, json.dumps(data).encode())
    except OSError:
        pass


def check_room(jobs_dir: str, restarting: str | None = None) -> None:
    """A job folder is not made (nor the job `restarting` run again in one) where its state could
    not be written: a read-only filesystem, or one with less than MIN_FREE bytes free."""
    try:
        st = os.statvfs(jobs_dir)
    except OSError as exc:
        raise JobError(f"jobs_dir {jobs_dir}: cannot look at its filesystem: {exc.strerror or exc}") from None
    doing = f"cannot restart job {restarting}" if restarting else "cannot create job folder"
    other = "" if restarting else "; or give another jobs_dir, e.g. --set jobs_dir=DIR"
    if st.f_flag & os.ST_RDONLY:
        raise JobError(f"jobs_dir {jobs_dir}: {doing}: its filesystem is read-only ({'make it writable' + other})")
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE:
        raise JobError(
            f"jobs_dir {jobs_dir}: {doing}: only {free // 1024} KiB free on its filesystem, and a job needs "
            f"at least {MIN_FREE >> 20} MiB for its state, events and logs (free some space{other})"
        )


def write_json(path: str, data: Any, indent: int | None = None) -> None:
    import json

    write_atomic(path, json.dumps(data, indent=indent, default=str).encode())


def read_json(path: str, missing: Any) -> Any:
    """A JSON file's content; `missing` when there is no such file; JobError when unreadable."""
    import json

    try:
        return json.loads(read_bytes(path))
    except FileNotFoundError:
        return missing
    except (OSError, ValueError) as exc:
        raise JobError(f"{path}: cannot read: {exc}") from None


def unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
