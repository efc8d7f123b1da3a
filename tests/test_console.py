"""What `t2mpi status` prints of a state (t2mpi.console), from snapshots of a master driven without MPI."""

from __future__ import annotations

from t2mpi import console
from t2mpi.runtime.master import Master, worker_list

T0 = 1000.0


def test_a_running_workers_row_says_how_long_it_has_been_quiet():
    m = Master("job-1", "stuck", 3, T0)
    m.joined(worker_list([("node-a", 10), ("node-a", 11), ("node-b", 12)]), ("head", 9), T0 + 1)
    m.progress(0, 0.5, "allreduce", T0 + 5)
    m.finished_ok(2, 7, 2.0, T0 + 6)
    rows = console.summary(m.snapshot(), now=T0 + 125).splitlines()[2:]
    assert rows[0].endswith("no ctx.progress() for 120 s (last: allreduce)")
    assert rows[1].endswith("no ctx.progress() for 124 s")  # joined at T0 + 1, never said anything
    assert rows[2].endswith("  7") and "COMPLETED" in rows[2]


def test_an_ended_job_shows_no_quiet_time():
    m = Master("job-1", "done", 1, T0)
    m.joined(worker_list([("node-a", 10)]), ("head", 9), T0 + 1)
    m.progress(0, 0.5, "half", T0 + 2)
    m.kill("interrupted", T0 + 3)
    assert "ctx.progress()" not in console.summary(m.snapshot(), now=T0 + 500)
