"""Errors meant for people: one line that says what is wrong, where, and what to do."""


class T2mpiError(Exception):
    """A user-facing error. The CLI prints its message alone and exits with `exit_code`."""

    exit_code = 2


class SpecError(T2mpiError):
    """A job file, site config or command-line override is invalid."""


class LaunchError(T2mpiError):
    """The MPI launcher could not be found, recognised or started."""


class JobError(T2mpiError):
    """A job folder or job id does not name a usable job."""

    exit_code = 1


class TopologyError(T2mpiError, ValueError):
    """A topology source, description or cpuset that cannot be understood; one line."""


class Interrupted(KeyboardInterrupt):
    """The client was told to stop by a signal (Ctrl-C, SIGTERM, a hang-up): every rank is ended,
    the job settles KILLED with `why`, and the CLI exits with `exit_code`."""

    def __init__(self, why: str, exit_code: int):
        super().__init__(why)
        self.why = why
        self.exit_code = exit_code
