"""The PBS Professional and Torque schedulers read `qstat -f` output: recorded examples of queued,
running, finished, failed and deleted jobs in both spellings (PBS Pro: Exit_status; Torque:
exit_status), and what `t2mpi status` makes of them."""

from __future__ import annotations

import pytest

from t2mpi.scheduler.scripts import Pbs, Torque

PBSPRO = """Job Id: 1234.pbs-server
    Job_Name = kmeans
    Job_Owner = alice@login1
    job_state = {state}
    queue = workq
    server = pbs-server
    Checkpoint = u
    ctime = Wed Dec  2 10:00:00 2026
{exit}    Resource_List.select = 1:ncpus=5:mpiprocs=3
    comment = Job run at Wed Dec 02 at 10:00 on (node1:ncpus=5)
"""

TORQUE = """Job Id: 77.torque-head
    Job_Name = kmeans
    Job_Owner = alice@login1
    job_state = {state}
    queue = batch
    server = torque-head
    Checkpoint = u
    ctime = Wed Dec  2 10:00:00 2026
{exit}    Resource_List.nodes = 1:ppn=5
    Walltime.Remaining = 3590
"""


def recorded(template: str, state: str, exit_line: str | None, spelling: str) -> str:
    exit_text = f"    {spelling} = {exit_line}\n" if exit_line is not None else ""
    return template.format(state=state, exit=exit_text)


@pytest.mark.parametrize(
    "sched, template, spelling, final",
    [(Pbs(), PBSPRO, "Exit_status", "F"), (Torque(), TORQUE, "exit_status", "C")],
    ids=["pbspro", "torque"],
)
def test_qstat_output_of_each_phase_reads_as_the_right_state(sched, template, spelling, final):
    def read(state, code):
        return sched.parse_status(recorded(template, state, code, spelling))

    assert read("Q", None) == ("PENDING", "None")
    assert read("H", None) == ("PENDING", "None")
    assert read("R", None) == ("RUNNING", "None")
    assert read("E", None) == ("COMPLETING", "None")
    assert read(final, "0") == ("COMPLETED", "exit status 0")
    assert read(final, "3") == ("FAILED", "exit status 3")  # the bug: Torque's failures read as COMPLETED
    assert read(final, "271") == ("FAILED", "exit status 271")  # deleted: killed by SIGTERM (256 + 15)
    assert read(final, "-11") == ("FAILED", "exit status -11")


def test_a_job_qstat_does_not_know_is_none():
    for sched in (Pbs(), Torque()):
        assert sched.parse_status("") is None
        assert sched.parse_status("qstat: Unknown Job Id 99.torque-head\n") is None


def test_words_that_only_contain_the_field_names_are_not_read_as_them():
    text = recorded(TORQUE, "C", "0", "exit_status").replace(
        "queue = batch", "comment = my_exit_status = 9 job_state = R"
    )
    assert Torque().parse_status(text) == ("COMPLETED", "exit status 0")
