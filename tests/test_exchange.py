"""What each data operation moved (t2mpi.data.exchange.OperationStats): rows in and out, bytes sent to
other workers, spilled bytes; on simulated workers (tests/test_data_local.py's stand-in communicator)
and on a real 1-rank communicator."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from mpi4py import MPI
from test_data_local import on_partitions

from t2mpi.data.api import Data
from t2mpi.data.errors import DataError


def recorded(job):
    """job(data) with an on_end that keeps every record; returns the records of each worker."""

    def run(data):
        records = []
        data.exchange.on_end = records.append
        job(data)
        data.close()
        return records

    return run


def test_a_shuffle_counts_every_row_once_and_bytes_only_to_others():
    words = [(f"w{i % 7}", 1) for i in range(60)]

    def job(data):
        data.from_iterable(words).partition_by_key().count()

    for size in (1, 2, 3):
        per_worker = on_partitions(size, recorded(job))
        assert all([r.op for r in recs] == ["partition_by_key", "count"] for recs in per_worker)
        shuffle = [recs[0] for recs in per_worker]
        assert sum(r.rows_in for r in shuffle) == sum(r.rows_out for r in shuffle) == len(words)
        assert all(r.rows_in == len(words) // size for r in shuffle)
        assert all((r.bytes_shuffled > 0) == (size > 1) for r in shuffle)
        assert all(r.start <= r.end and r.bytes_spilled == 0 for recs in per_worker for r in recs)
        counts = [recs[1] for recs in per_worker]
        assert all(r.rows_in == r.rows_out == 0 for r in counts)  # a count moves numbers, no rows


def test_one_operation_of_several_collectives_is_one_record():
    def job(data):
        data.from_iterable(range(40)).sort_by(lambda x: -x).collect()  # allgather + alltoall

    per_worker = on_partitions(3, recorded(job))
    assert [[r.op for r in recs] for recs in per_worker] == [["sort_by", "collect"]] * 3
    sort = [recs[0] for recs in per_worker]
    # the 40 elements once each way, and the 40 samples (all of them, so few) to every worker
    assert (sum(r.rows_in for r in sort), sum(r.rows_out for r in sort)) == (40 + 40, 40 + 3 * 40)
    collect = [recs[1] for recs in per_worker]
    assert all(r.rows_out == 40 for r in collect) and sum(r.rows_in for r in collect) == 40


def test_numpy_buffers_count_their_nbytes():
    def job(data):
        data.array(np.arange(90, dtype=np.float64).reshape(30, 3)).repartition(1).count()

    per_worker = on_partitions(3, recorded(job))
    rep = [recs[0] for recs in per_worker]
    assert [r.rows_out for r in rep] == [30, 0, 0] and [r.rows_in for r in rep] == [10, 10, 10]
    assert rep[0].bytes_shuffled < 10 * 24  # worker 0 keeps its rows
    assert all(r.bytes_shuffled >= 10 * 24 for r in rep[1:])  # 10 rows of 3 float64 each to worker 0


def test_spilled_adds_to_the_running_operation():
    ex = Data(MPI.COMM_SELF).exchange
    records = []
    ex.on_end = records.append
    with pytest.raises(DataError, match="no data operation"):
        ex.spilled(10)
    data = Data(MPI.COMM_SELF)
    data.exchange.on_end = records.append
    ds = data.from_iterable([("a", 1), ("b", 2)])
    data.exchange.alltoall(data.where("reduce_by_key", "x.py:1"), lambda: [list(ds)])
    data.exchange.spilled(100)
    data.exchange.spilled(23)
    with pytest.raises(DataError, match="bytes >= 0"):
        data.exchange.spilled(-1)
    data.close()
    assert [(r.op, r.site, r.rows_in, r.rows_out, r.bytes_shuffled, r.bytes_spilled) for r in records] == [
        ("reduce_by_key", "x.py:1", 2, 2, 0, 123)
    ]


def test_an_unpicklable_batch_fails_on_every_worker_instead_of_hanging():
    from t2mpi.data.errors import RemoteFailure

    def job(data):
        try:
            data.from_function(lambda i, n: [(1, lambda: 0)] if i == 0 else [(1, 2)]).partition_by_key().count()
        except DataError as exc:
            return type(exc), str(exc)

    results = on_partitions(2, job)
    assert results[0][0] is DataError and "cannot pickle" in results[0][1]
    assert results[1][0] is RemoteFailure and "worker 0 failed" in results[1][1]


def test_a_real_communicator_takes_the_buffer_paths():
    data = Data(MPI.COMM_SELF)
    records = []
    data.exchange.on_end = records.append
    got = data.from_iterable([("a", 1), ("b", 2), ("a", 3)]).reduce_by_key(operator.add).collect()
    data.close()
    assert sorted(got) == [("a", 4), ("b", 2)]
    assert [(r.op, r.rows_in, r.rows_out, r.bytes_shuffled) for r in records] == [
        ("reduce_by_key", 2, 2, 0),
        ("collect", 2, 2, 0),
    ]
