"""`python -m t2mpi.network --job-dir DIR`: a batch job's transport, chosen on its first node
(t2mpi.net.first_node). Kept at this path because batch scripts call it.
"""

if __name__ == "__main__":
    from .net.first_node import main

    raise SystemExit(main())
