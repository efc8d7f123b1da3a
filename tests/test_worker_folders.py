"""A worker's folders (t2mpi/runtime/worker.py): making a scratch folder while another worker of the
same job on the node removes the job's empty scratch folder above it, and removing one."""

from __future__ import annotations

import os

from t2mpi.runtime import worker


def test_a_scratch_folder_is_made_again_when_the_folder_above_goes_meanwhile(tmp_path, monkeypatch):
    real = os.makedirs
    calls = []

    def racing(path, mode=0o777, exist_ok=False):
        calls.append(path)
        if len(calls) == 1:  # the parent is made, then another worker's clean-up takes it away
            real(os.path.dirname(path), mode=mode, exist_ok=True)
            os.rmdir(os.path.dirname(path))
            raise FileNotFoundError(2, "No such file or directory", path)
        return real(path, mode=mode, exist_ok=exist_ok)

    monkeypatch.setattr(worker.os, "makedirs", racing)
    path = worker._private_dir(str(tmp_path), "t2mpi-job", "worker-1")
    assert os.path.isdir(path) and calls.count(path) == 2  # one failed try, one that made it
    assert oct(os.stat(path).st_mode & 0o777) == "0o700"


def test_removing_a_scratch_folder_keeps_the_job_folder_while_another_worker_has_one(tmp_path):
    one = worker._private_dir(str(tmp_path), "t2mpi-job", "worker-0")
    two = worker._private_dir(str(tmp_path), "t2mpi-job", "worker-1")
    with open(os.path.join(one, "data"), "w") as f:
        f.write("x")
    worker._remove_scratch(one)
    assert not os.path.exists(one) and os.path.isdir(two)
    worker._remove_scratch(two)
    assert not os.path.exists(os.path.join(tmp_path, "t2mpi-job"))  # the last one takes the job's folder
