"""Open MPI's leftover session folders, which make a later launch fail.

Open MPI 5's launcher (prterun, which mpirun and mpiexec start) keeps its session in
`<tmpdir>/ompi.<its pid>`: the PMIx rendezvous files and the ranks' shared-memory segments. It
removes the folder when it ends, but a launcher that is killed (SIGKILL: `t2mpi cancel`, a second
Ctrl-C, a start timeout, the OOM killer) leaves it behind. Once the pids wrap round, a new
prterun given that pid finds the old rendezvous files and refuses to start: "The PMIx server's
listener thread failed to start" (exit status 213), before any rank runs. PMIx releases after
5.0 reclaim such files themselves; the wheels on PyPI do not yet.

So before every launch t2mpi removes the session folders of its own user whose launcher is gone,
as PMIx's own check does: a folder named `ompi.<pid>`, owned by this user, whose pid is no
running process. A running process keeps its folder, whatever it is (the pid is then taken, so
no launcher can be given it either).
"""

from __future__ import annotations

import os
import shutil
import stat

from ..procs import alive


def tmpdir(env: dict[str, str] | None = None) -> str:
    """The folder Open MPI puts its sessions in: PRRTE's tmpdir_base, else $TMPDIR, $TEMP, $TMP
    (the first set), else /tmp."""
    env = os.environ if env is None else env
    for name in ("PRTE_MCA_prte_tmpdir_base", "TMPDIR", "TEMP", "TMP"):
        if env.get(name):
            return env[name]
    return "/tmp"


def clear_stale(base: str | None = None) -> list[str]:
    """Remove the session folders under `base` (tmpdir() by default) that a killed launcher of
    this user left; returns their paths. Best effort: a folder that cannot be read or removed
    stays, as it was."""
    base = tmpdir() if base is None else base
    uid = os.getuid()
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        prefix, _, pid = name.partition(".")
        if prefix != "ompi" or not pid.isdigit() or int(pid) <= 0:
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != uid or not stat.S_ISDIR(st.st_mode) or alive(int(pid)):  # lstat: a link is no folder
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            removed.append(path)
    return removed
