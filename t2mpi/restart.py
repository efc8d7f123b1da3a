"""`python -m t2mpi.restart --job-dir DIR -- LAUNCH...`: the batch supervisor of a job that may
restart (t2mpi.scheduler.supervisor). Kept at this path because batch scripts call it.
"""

if __name__ == "__main__":
    from .scheduler.supervisor import main

    raise SystemExit(main())
