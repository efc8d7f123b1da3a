"""A keyed shuffle, a sort or a join larger than its memory budget (issue #14): reduce_by_key over
many distinct string keys on 2 workers (--workload reduce), a global sort_by of the same pairs
(--workload sort), or their inner join with one row per distinct key (--workload join), run with a budget of a quarter of what the shuffle holds (it spills) and with no
budget (it holds everything), interleaved; peak RSS per worker, bytes spilled, wall time.

(--workload terasort) a sort_by("key") of --pairs gensort records, 100 bytes each (the numpy sort of
byte records, t2mpi/data/npruns.py), each worker's records made before it starts: the figure is the
peak RSS the sort added to that (VmHWM, reset through /proc/self/clear_refs), taken before the
mapped output is read.

(--workload npjoin) the numpy path of jobs/join.py (t2mpi/data/npgrace.py): --pairs facts (int64 keys
over 1.1 x the dimension keys, int64 values) joined as Columns with --pairs / 4 dimension rows (key,
group over --pairs / 8 groups), re-keyed by group and summed by reduce_by_key(add); each worker's
input columns are made before the peak RSS is reset, so the figure is what the join and the sum added.

(each side) mpiexec -n W python bench/spill.py --side BUDGET_MIB --workload W
Goal: past its budget, a worker's peak RSS stays within the budget plus a small margin over the
interpreter and its input.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, describe, mpi_flavour, mpiexec  # noqa: E402


def keys(rank: int, size: int, total: int):
    """This worker's share of `total` pairs over total // 2 distinct keys (each key twice)."""
    for i in range(rank, total, size):
        yield (f"key-{(i * 7919) % (total // 2):012d}", 1)


def terasort_side(data, comm, total: int) -> tuple:
    """gensort records sorted by key: (records, an order-free checksum, the peak RSS the sort added
    to what the process held with its input made (MiB), this worker's first and last key). The
    output is checked in order a chunk at a time, after the peak is taken (reading a mapped
    partition adds its pages to the RSS)."""
    import numpy as np

    from t2mpi.data import gensort

    block = gensort.records(total * comm.rank // comm.size, total * (comm.rank + 1) // comm.size, 1)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS from here: the sort's, not gensort's temporaries
    held = _status("VmRSS")
    part = data.from_function(lambda i, n: block).sort_by("key").partition()
    peak = _status("VmHWM") - held
    weights = np.arange(1, 101, dtype=np.uint64)
    checksum, previous = 0, None
    for lo in range(0, len(part), 100_000):
        chunk = np.array(part[lo : lo + 100_000])
        keys = chunk["key"]
        if len(keys) and (np.any(keys[1:] < keys[:-1]) or (previous is not None and keys[0] < previous)):
            sys.exit(f"spill: worker {comm.rank}: the sort's output is out of order near record {lo}")
        previous = keys[-1] if len(keys) else previous
        checksum += int((chunk.view(np.uint8).reshape(-1, 100).astype(np.uint64) * weights).sum())
    ends = (bytes(part[0]["key"]), bytes(part[-1]["key"])) if len(part) else None
    return len(part), checksum, peak, held, ends


def npjoin_side(data, comm, total: int) -> tuple:
    """Columns facts joined with dims, summed per group: (groups, an order-free checksum of the
    sums, the peak RSS the join and sum added to the input (MiB), the RSS held with the input made,
    bytes spilled, and the RSS of mapped files at the end (MiB): the pages of a spilled join's output
    that the sum read, file-backed, which the kernel can drop)."""
    import operator

    import numpy as np

    from t2mpi.data.columns import Columns

    rank, size, dims = comm.rank, comm.size, max(1, total // 4)
    rng = np.random.default_rng(rank)
    fact_keys = rng.integers(0, dims + dims // 10, size=total // size)
    facts = Columns(fact_keys, (fact_keys * 7919) % 1000)
    dim_keys = np.arange(rank, dims, size)
    dim_rows = Columns(dim_keys, dim_keys % max(1, total // 8))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    held, held_file = _status("VmRSS"), _status("RssFile")
    joined = data.from_function(lambda i, n: facts).join(data.from_function(lambda i, n: dim_rows))
    sums = joined.map_partitions(lambda c: Columns(c.values["right"], c.values["left"])).reduce_by_key(operator.add)
    part = sums.partition()
    peak, mapped = _status("VmHWM") - held, _status("RssFile") - held_file
    checksum = int((np.asarray(part.keys, dtype=np.int64) * 31 + np.asarray(part.values) * 17).sum())
    return len(part), checksum, peak, held, data.spilled_bytes, mapped


def _status(field: str) -> float:
    """A /proc/self/status figure in MiB."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def side(budget_mib: int, total: int, workload: str) -> None:
    from mpi4py import MPI

    from t2mpi.data.api import Data

    comm = MPI.COMM_WORLD
    import tempfile

    scratch = tempfile.mkdtemp(prefix="t2mpi-bench-spill-")
    data = Data(comm, memory_budget=budget_mib << 20 if budget_mib else None, scratch_dir=scratch)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if workload == "npjoin":
        got = comm.gather(npjoin_side(data, comm, total), root=0)
        os.rmdir(scratch)
        if comm.rank == 0:
            print("RESULT " + json.dumps(got), flush=True)
        return
    if workload == "terasort":
        count, checksum, peak, held, ends = terasort_side(data, comm, total)
        got = comm.gather((count, checksum, peak, held, data.spilled_bytes, ends), root=0)
        os.rmdir(scratch)
        if comm.rank == 0:
            keys = [k for w in got if w[5] for k in w[5]]
            if keys != sorted(keys):
                sys.exit("spill: the workers' key ranges are out of order")
            print("RESULT " + json.dumps([w[:5] for w in got]), flush=True)
        return
    ds = data.from_function(lambda i, n: keys(i, n, total))
    if workload == "sort":
        out = ds.sort_by(lambda kv: kv[0])
    elif workload == "join":
        dims = data.from_function(lambda i, n: ((f"key-{j:012d}", 2) for j in range(i, total // 2, n)))
        out = ds.join(dims).map(lambda kv: (kv[0], kv[1][0] * kv[1][1]))
    else:
        out = ds.reduce_by_key(lambda a, b: b + a)  # not known.py's a + b: the general (not inline-add) path
    distinct = checksum = 0
    last = ""
    for key, c in out.partition():
        if workload == "sort" and key < last:
            sys.exit(f"spill: worker {comm.rank}: the sort's output is out of order at {key!r}")
        last = key
        distinct += 1
        checksum += c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    got = comm.gather((distinct, checksum, peak, base, data.spilled_bytes), root=0)
    os.rmdir(scratch)
    if comm.rank == 0:
        print("RESULT " + json.dumps(got), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4_000_000)
    parser.add_argument("--budget-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workload", choices=("reduce", "sort", "join", "terasort", "npjoin"), default="reduce")
    parser.add_argument("--side", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:
        return side(args.side, args.pairs, args.workload)
    what = {
        "reduce": "reduce_by_key with a lambda",
        "sort": "sort_by(lambda kv: kv[0]) of the pairs",
        "join": "an inner join of the pairs with one row per key",
        "terasort": "sort_by('key') of gensort's 100-byte records (the numpy sort)",
        "npjoin": "a Columns inner join, re-keyed by group, reduce_by_key(add) (the numpy paths)",
    }[args.workload]
    print(f"Spilling {args.workload} (issue #14): MPI {mpi_flavour()}, {args.workers} workers")
    if args.workload == "npjoin":
        print(f"{args.pairs:,} facts, {args.pairs // 4:,} dimension rows, {args.pairs // 8:,} groups; {what}")
    elif args.workload == "terasort":
        print(f"({args.pairs:,} records, {args.pairs * 100 / args.workers / 2**20:.0f} MiB per worker); {what}")
    else:
        print(f"{args.pairs:,} pairs over {args.pairs // 2:,} distinct keys; {what}")
    print(f"{args.rounds} interleaved rounds")
    runs: dict[str, list] = {f"budget {args.budget_mib} MiB": [], "no budget": []}
    for _ in range(args.rounds):
        for name, budget in ((f"budget {args.budget_mib} MiB", args.budget_mib), ("no budget", 0)):
            argv = mpiexec(args.workers) + [PYTHON, __file__, "--side", str(budget), "--pairs", str(args.pairs)]
            argv += ["--workload", args.workload]
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True)
            took = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"spill: {name} failed: {done.stderr[-2000:]}")
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            runs[name].append((took, json.loads(line[7:])))
    # the totals: a sort's splitters come from samples, so its share per worker may differ by side
    answers = {json.dumps([sum(w[0] for w in r[1]), sum(w[1] for w in r[1])]) for rs in runs.values() for r in rs}
    print(f"answers agree across sides and rounds: {len(answers) == 1}")
    for name, rs in runs.items():
        peaks = [max(w[2] for w in r[1]) for r in rs]
        bases = [max(w[3] for w in r[1]) for r in rs]
        spilled = [sum(w[4] for w in r[1]) / 2**20 for r in rs]
        print(f"  {name:18s} {describe('wall', [r[0] for r in rs])}")
        spill_line = f"spilled {statistics.median(spilled):.0f} MiB in all"
        if args.workload in ("terasort", "npjoin"):
            print(
                f"  {'':18s} peak RSS the {'sort' if args.workload == 'terasort' else 'join and sum'} added per worker: median {statistics.median(peaks):.0f} MiB "
                f"(over {statistics.median(bases):.0f} MiB held with the input made); {spill_line}"
            )
            if args.workload == "npjoin":
                mapped = statistics.median(max(w[5] for w in r[1]) for r in rs)
                print(f"  {'':18s} of it, pages of mapped files at the end: {mapped:.0f} MiB per worker")
            continue
        print(
            f"  {'':18s} peak RSS per worker: median {statistics.median(peaks):.0f} MiB "
            f"(before the shuffle {statistics.median(bases):.0f} MiB); {spill_line}"
        )


if __name__ == "__main__":
    main()
