"""Folders that go when the process that made them is killed (t2mpi/reaper.py), on real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import wait_for

from t2mpi import procs

# A process that makes a worker-like scratch folder (with the job's folder above it) and a spill
# folder, says where they are and who watches them, then waits to be killed.
MAKER = """
import json, os, sys
from t2mpi import reaper
from t2mpi.data.spill import private_folder

base = sys.argv[1]
scratch = os.path.join(base, "t2mpi-job", "worker-1")
reaper.remove_at_end(scratch, with_parent=True)
os.makedirs(scratch)
open(os.path.join(scratch, "part"), "w").write("x")
spill = private_folder(base)
open(os.path.join(spill, "run-0"), "w").write("y")
print(json.dumps({"scratch": scratch, "spill": spill, "watcher": reaper._watch[2].pid}), flush=True)
sys.stdin.read()
"""


def start_maker(base):
    maker = subprocess.Popen(
        [sys.executable, "-c", MAKER, str(base)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return maker, json.loads(maker.stdout.readline())


def test_a_killed_process_s_folders_go_and_so_does_its_watcher(tmp_path):
    (tmp_path / "t2mpi-job" / "worker-0").mkdir(parents=True)  # another worker's: it stays
    (tmp_path / "unrelated").mkdir()
    maker, made = start_maker(tmp_path)
    try:
        assert os.path.isfile(os.path.join(made["scratch"], "part"))
        assert os.getsid(made["watcher"]) != os.getsid(maker.pid)  # out of reach of the ranks' group signal
        os.kill(maker.pid, signal.SIGKILL)
        maker.wait(timeout=30)
        wait_for(lambda: not procs.alive(made["watcher"]), 30, "the watcher to end")
        assert not os.path.exists(made["scratch"]) and not os.path.exists(made["spill"])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t2mpi-job", "unrelated"]
        assert [p.name for p in (tmp_path / "t2mpi-job").iterdir()] == ["worker-0"]
    finally:
        maker.kill()
        maker.wait()


def test_the_last_folder_takes_the_empty_folder_above_it_and_a_clean_end_leaves_nothing(tmp_path):
    maker, made = start_maker(tmp_path)
    maker.stdin.close()  # it ends on its own: atexit removes the spill folder, the watcher the rest
    assert maker.wait(timeout=30) == 0
    wait_for(lambda: not procs.alive(made["watcher"]), 30, "the watcher to end")
    assert list(tmp_path.iterdir()) == []  # worker-1, the job's folder above it, and the spill folder


def test_a_forked_child_gets_a_watcher_of_its_own(tmp_path):
    code = """
import os, sys
from t2mpi import reaper
reaper.remove_at_end(os.path.join(sys.argv[1], "parent"))
parent_watcher = reaper._watch[2].pid
pid = os.fork()
if pid == 0:
    reaper.remove_at_end(os.path.join(sys.argv[1], "child"))
    print(parent_watcher, reaper._watch[2].pid, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    parent_watcher, child_watcher = map(int, done.stdout.split())
    assert parent_watcher != child_watcher
