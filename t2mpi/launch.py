"""`python -m t2mpi.launch`: the launch entry every rank runs (t2mpi.runtime.entry).

Kept at this path because batch scripts and users call it.
"""

if __name__ == "__main__":
    from .runtime.entry import main

    raise SystemExit(main())
