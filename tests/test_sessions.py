"""t2mpi.mpi.sessions: which leftover Open MPI session folders go before a launch (the launch
itself, with leftovers in the way, is in test_launch_faults.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from t2mpi.mpi.sessions import clear_stale, tmpdir


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_this_users_folders_of_ended_launchers_go(tmp_path):
    gone = dead_pid()
    stale = tmp_path / f"ompi.{gone}"
    (stale / "1" / "0").mkdir(parents=True)
    (stale / "pmix.vm.tool").write_text("tcp4://127.0.0.1:1\n")
    live = tmp_path / f"ompi.{os.getpid()}"  # a running process keeps its folder, whatever it is
    live.mkdir()
    kept = [live]
    for name in ("ompi.abc", "ompi.", "ompi.0", f"prte.{gone}", f"xompi.{gone}"):
        (tmp_path / name).mkdir()
        kept.append(tmp_path / name)
    plain = tmp_path / f"ompi.{gone + 1}"  # a file, not a folder
    plain.write_text("")
    link = tmp_path / f"ompi.{gone + 2}"  # a link is never followed
    link.symlink_to(stale / "1")
    kept += [plain, link]
    assert clear_stale(str(tmp_path)) == [str(stale)]
    assert not stale.exists()
    assert all(os.path.lexists(p) for p in kept) and (stale.parent / "ompi.abc").is_dir()


def test_a_folder_of_another_user_stays(tmp_path):
    folder = tmp_path / f"ompi.{dead_pid()}"
    folder.mkdir()
    os.chown(folder, 12345, 12345)  # the tests run as root (CI): someone else's folder
    assert clear_stale(str(tmp_path)) == [] and folder.is_dir()


def test_the_session_folder_base_is_open_mpis(tmp_path):
    assert tmpdir({}) == "/tmp"
    assert tmpdir({"TMP": "/t3", "TEMP": "/t2"}) == "/t2"
    assert tmpdir({"TMPDIR": "/t1", "TEMP": "/t2"}) == "/t1"
    assert tmpdir({"TMPDIR": "/t1", "PRTE_MCA_prte_tmpdir_base": "/p"}) == "/p"
    assert clear_stale(str(tmp_path / "none")) == []  # no such folder: nothing to do
