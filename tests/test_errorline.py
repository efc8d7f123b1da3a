"""The MPI's own error line in a failed launch's stderr (t2mpi.mpi.errorline), from outputs
that MPICH 5 and Open MPI 5 wrote when MPI_Init failed (an interface that does not exist)."""

from __future__ import annotations

import pytest

from t2mpi.mpi.errorline import LONGEST, mpi_error_line
from t2mpi.watch import Launch, ended_early_reason

# mpi.env: {FI_TCP_IFACE: nonexistent0} under MPICH (ch4:ofi), as two ranks wrote it
MPICH = """\
Abort(136463759): Fatal error in internal_Init_thread: Other MPI error, error stack:
internal_Init_thread(71)..........: MPI_Init_thread(argc=(nil), argv=(nil), required=3, provided=0x7ffc30460300) failed
MPII_Init_thread(289).............:
MPID_Init(549)....................:
MPIDI_OFI_init_local(720).........:
MPIDI_OFI_create_vci_context(1058): OFI call ep_enable failed (default nic=tcp: Bad file descriptor)
"""
# what Hydra adds when a rank is killed
HYDRA = """\

===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 20075 RUNNING AT vm
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES
===================================================================================
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
This typically refers to a problem with your application.
Please see the FAQ page for debugging suggestions
"""
# OMPI_MCA_btl_tcp_if_include=nonexistent0, OMPI_MCA_pml=ob1, OMPI_MCA_btl=tcp,self under Open MPI
OPEN_MPI = """\
--------------------------------------------------------------------------
WARNING: An invalid value was given for btl_tcp_if_include.  This
value will be ignored.

  Local host: vm
  Value:      nonexistent0
  Message:    Unknown interface name
--------------------------------------------------------------------------
--------------------------------------------------------------------------
At least one pair of MPI processes are unable to reach each other for
MPI communications.  This means that no Open MPI device has indicated
that it can be used to communicate between these processes.  This is
an error; Open MPI requires that all MPI processes be able to reach
each other.  This error can sometimes be the result of forgetting to
specify the "self" BTL.

  Process 1 ([[27549,1],1]) is on host: vm
  Process 2 ([[27549,1],0]) is on host: vm
  BTLs attempted: self

Your MPI job is now going to abort; sorry.
--------------------------------------------------------------------------
\x00--------------------------------------------------------------------------
MPI_INIT has failed because at least one MPI process is unreachable
from another.  This *usually* means that an underlying communication
plugin -- such as a BTL or an MTL -- has either not loaded or not
allowed itself to be used.  Your MPI job will now abort.

You may wish to try to narrow down the problem;

 * Check the output of ompi_info to see which BTL/MTL plugins are
   available.
 * Run your application with MPI_THREAD_SINGLE.
 * Set the MCA parameter btl_base_verbose to 100 (or mtl_base_verbose,
   if using MTL-based communications) to see exactly which
   communication plugins were considered and/or discarded.
--------------------------------------------------------------------------
\x00--------------------------------------------------------------------------
It looks like MPI_INIT failed for some reason; your parallel process is
likely to abort.  There are many reasons that a parallel process can
fail during MPI_INIT; some of which are due to configuration or environment
problems.  This failure appears to be an internal failure; here's some
additional information (which may only be relevant to an Open MPI
developer):

  ompi_mpi_init: ompi_mpi_instance_init failed
  --> Returned "Unreachable" (-12) instead of "Success" (0)
--------------------------------------------------------------------------
\x00[vm:00000] *** An error occurred in MPI_Init_thread
[vm:00000] *** reported by process [1805451265,1]
[vm:00000] *** on a NULL communicator
[vm:00000] *** Unknown error
[vm:00000] *** MPI_ERRORS_ARE_FATAL (processes in this communicator will now abort,
[vm:00000] ***    and MPI will try to terminate your MPI job as well)
--------------------------------------------------------------------------
prterun has exited due to process rank 1 with PID 0 on node vm calling
"abort". This may have caused other processes in the application to be
terminated by signals sent by prterun (as reported here).
--------------------------------------------------------------------------
"""
TRACEBACK = """\
t2mpi.launch: the job master failed to start:
Traceback (most recent call last):
  File "/x/entry.py", line 37, in main
ValueError: no such job
"""

SRUN = """\
srun: error: Task launch for StepId=125.0 failed on node n3: Communication connection failure
srun: error: Application launch failed: Communication connection failure
srun: Job step aborted: Waiting up to 4 seconds for job step to finish.
slurmstepd-n1: error: *** STEP 125.0 ON n1 CANCELLED AT 2026-12-03T12:51:36 ***
srun: error: n1: task 0: Killed
[mpiexec@n1] control_cb (/mpich-5.0.2/src/pm/hydra/mpiexec/pmiserv_cb.c:280): assert (!closed) failed
[mpiexec@n1] main (/mpich-5.0.2/src/pm/hydra/mpiexec/mpiexec.c:270): process manager error waiting for completion
"""
OFI = "Fatal error in internal_Init_thread: Other MPI error: OFI call ep_enable failed (default nic=tcp: Bad file descriptor)"


@pytest.mark.parametrize(
    "text, line",
    [
        (MPICH, OFI),
        (MPICH + HYDRA, OFI),  # not Hydra's banner after it
        (OPEN_MPI, "At least one pair of MPI processes are unable to reach each other for MPI communications."),
        (SRUN, "srun: Task launch for StepId=125.0 failed on node n3: Communication connection failure"),
        (SRUN + MPICH, OFI),  # an MPI's own error says more
        (TRACEBACK, None),  # no MPI's: the caller keeps the last line
        ("", None),
    ],
)
def test_the_mpis_own_line_not_its_banner(text, line):
    assert mpi_error_line(text.splitlines()) == line


def test_open_mpis_generic_banner_alone_gives_its_detail_lines():
    start = OPEN_MPI.index("It looks like MPI_INIT failed")
    banner = OPEN_MPI[OPEN_MPI.rindex("-" * 20, 0, start) :]
    assert mpi_error_line(banner.splitlines()) == (
        'ompi_mpi_init: ompi_mpi_instance_init failed --> Returned "Unreachable" (-12) instead of "Success" (0)'
    )


def test_a_long_line_is_cut():
    said = mpi_error_line(["Fatal error in MPI_Init: " + "x" * 1000])
    assert len(said) == LONGEST and said.endswith("…")


def _launch(text: str, returncode: int) -> Launch:
    launch = Launch()
    launch.stderr_tail, launch.returncode = text.splitlines(), returncode
    return launch


def test_the_reason_of_a_launch_that_ended_early_leads_with_the_mpis_line():
    assert ended_early_reason(_launch(MPICH + HYDRA, 9)) == (
        f"{OFI} (the MPI launch exited with status 9 before the job ended)"
    )
    assert ended_early_reason(_launch(TRACEBACK, 1)) == (
        "the MPI launch exited with status 1 before the job ended: ValueError: no such job"
    )
    assert ended_early_reason(_launch("\x00\n", 14)) == "the MPI launch exited with status 14 before the job ended"
