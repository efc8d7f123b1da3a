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
