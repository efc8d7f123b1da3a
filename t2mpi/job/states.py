"""Every state a job and its workers can be in, and which of them are ends.

A job's state lives in its folder's state.json; the master moves it along
STARTING -> RUNNING -> COMPLETED | FAILED | KILLED | PREEMPTED, and the client settles it
when a launch ends without the master's word (a crash, a cancel). A local job whose master
process is gone without recording an end is LOST (t2mpi status/list settle it, on the master's
host). Workers have the same states. PENDING and SUBMITTED are what `t2mpi status`/`list` say of a submitted job that
the scheduler has not started.
"""

PENDING = "PENDING"  # queued in a scheduler, not started
SUBMITTED = "SUBMITTED"  # t2mpi list: the folder has a scheduler record but no state yet
STARTING = "STARTING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
KILLED = "KILLED"
LOST = "LOST"  # a local job whose master process is gone (or its pid is another's) with no end recorded
PREEMPTED = "PREEMPTED"  # stopped on request (preemption, walltime): a restart goes on from its checkpoint

FINAL = (COMPLETED, FAILED, KILLED, LOST)  # ended for good: nothing runs it again by itself
ENDED = (*FINAL, PREEMPTED)  # this run has ended (a PREEMPTED job is continued)
RESTARTABLE = (FAILED, KILLED, LOST, PREEMPTED)  # what `t2mpi restart` continues
