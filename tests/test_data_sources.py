"""The csv and records sources on simulated workers (tests/test_data_local.py's stand-in communicator):
every row read exactly once for random files and any number of workers, against a plain-Python reading;
the errors; CRLF endings, a last line without its newline, empty files; gensort's records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data_local import on_partitions

from t2mpi.data import gensort
from t2mpi.data.columns import Columns
from t2mpi.data.errors import DataError

SETTINGS = settings(derandomize=True, max_examples=30, deadline=None)


def parts(size, make):
    return on_partitions(size, lambda data: make(data).partition())


def write_csv(path, header, rows, newline="\n", last_newline=True):
    text = newline.join([header] + rows) + (newline if last_newline else "")
    path.write_bytes(text.encode("utf-8"))


rows_st = st.lists(st.tuples(st.integers(-(10**12), 10**12), st.floats(-1e6, 1e6, allow_nan=False)), max_size=60)


@SETTINGS
@given(
    files=st.lists(rows_st, min_size=1, max_size=4),
    workers=st.integers(1, 7),
    crlf=st.booleans(),
    last_newline=st.booleans(),
)
def test_csv_reads_every_row_once(tmp_path_factory, files, workers, crlf, last_newline):
    folder = tmp_path_factory.mktemp("csv")
    for i, rows in enumerate(files):
        lines = [f"{k},{v!r}" for k, v in rows]
        write_csv(folder / f"p{i}.csv", "key,value", lines, "\r\n" if crlf else "\n", last_newline)
    got = parts(workers, lambda d: d.csv(str(folder), dtypes={"value": "float64"}))
    assert all(p.dtype == np.dtype([("key", "i8"), ("value", "f8")]) for p in got)
    want = [row for rows in files for row in rows]
    assert [(int(k), float(v)) for p in got for k, v in p.tolist()] == want
    keyed = parts(workers, lambda d: d.csv(str(folder / "*.csv"), key="key", dtypes={"value": "float64"}))
    assert all(type(p) is Columns and p.values.ndim == 1 for p in keyed)
    assert [kv for p in keyed for kv in p] == want


def test_csv_one_large_file_is_read_in_parallel(tmp_path):
    write_csv(tmp_path / "a.csv", "n,sq", [f"{i},{i * i}" for i in range(500)])
    got = parts(3, lambda d: d.csv(str(tmp_path / "a.csv")))
    assert all(len(p) > 100 for p in got)
    assert np.concatenate(got)["sq"].tolist() == [i * i for i in range(500)]


def test_csv_infers_int_float_and_str_and_keeps_quoted_commas(tmp_path):
    write_csv(tmp_path / "a.csv", "id,x,name", ["1,2,a", '2,3.5,"b, c"', "3,-1e3,héllo"], "\r\n")
    (block,) = parts(1, lambda d: d.csv(str(tmp_path / "a.csv")))
    assert [block.dtype[i].kind for i in range(3)] == ["i", "f", "U"]
    assert block.tolist() == [(1, 2.0, "a"), (2, 3.5, "b, c"), (3, -1000.0, "héllo")]
    (cols,) = parts(1, lambda d: d.csv(str(tmp_path / "a.csv"), key="name"))
    assert cols.keys.tolist() == ["a", "b, c", "héllo"]
    assert cols.values.dtype.names == ("id", "x") and cols.values.tolist() == [(1, 2.0), (2, 3.5), (3, -1000.0)]


def test_csv_empty_files_blank_lines_and_a_header_without_rows(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"")
    write_csv(tmp_path / "b.csv", "k,v", ["1,10", "", "2,20"])
    write_csv(tmp_path / "c.csv", "k,v", [], last_newline=False)
    got = parts(4, lambda d: d.csv(str(tmp_path)))
    assert sum(len(p) for p in got) == 2 and np.concatenate(got).tolist() == [(1, 10), (2, 20)]
    assert all(p.dtype.names == ("k", "v") for p in got)


def test_csv_errors_name_the_file_line_and_column(tmp_path):
    with pytest.raises(DataError, match=r"^csv: no file matches '.*nothing\*\.csv'"):
        parts(1, lambda d: d.csv(str(tmp_path / "nothing*.csv")))
    write_csv(tmp_path / "a.csv", "k,v", ["1,2", "3,4"])
    write_csv(tmp_path / "b.csv", "k,w", ["5,6"])
    with pytest.raises(DataError, match=r"b\.csv:1: the header differs .* column 2 is 'w', where .*a\.csv:1 has 'v'"):
        parts(1, lambda d: d.csv(str(tmp_path)))
    write_csv(tmp_path / "b.csv", "k,v", ["5,6", "7,8,9"])
    with pytest.raises(DataError, match=r"b\.csv:3: 3 fields, but the header has 2 columns"):
        parts(2, lambda d: d.csv(str(tmp_path)))
    write_csv(tmp_path / "b.csv", "k,v", ["5,6"] * 1200 + ["7,x"])
    with pytest.raises(DataError, match=r"b\.csv:1202: column 'v': 'x' does not parse as int64 \(the type inferred"):
        parts(3, lambda d: d.csv(str(tmp_path)))
    write_csv(tmp_path / "c.csv", "k,v", ["1,2.5"])
    with pytest.raises(DataError, match=r"c\.csv:2: column 'v': '2\.5' does not parse as int64$"):
        parts(1, lambda d: d.csv(str(tmp_path / "c.csv"), dtypes={"v": "int64"}))
    with pytest.raises(DataError, match=r"key 'z' is not a column of .*a\.csv \(columns: k, v\)"):
        parts(1, lambda d: d.csv(str(tmp_path / "a.csv"), key="z"))
    with pytest.raises(DataError, match=r"dtypes names 'q', which is not a column"):
        parts(1, lambda d: d.csv(str(tmp_path / "a.csv"), dtypes={"q": "int64"}))


def test_csv_string_column_from_dtypes(tmp_path):
    write_csv(tmp_path / "a.csv", "k,s", ["1,ab", "2,c"])
    (block,) = parts(1, lambda d: d.csv(str(tmp_path / "a.csv"), dtypes={"s": "S4", "k": "int32"}))
    assert block.dtype == np.dtype([("k", "i4"), ("s", "S4")]) and block.tolist() == [(1, b"ab"), (2, b"c")]


@SETTINGS
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=4), workers=st.integers(1, 7))
def test_records_read_every_record_once(tmp_path_factory, counts, workers):
    folder = tmp_path_factory.mktemp("rec")
    want = []
    for i, n in enumerate(counts):
        block = gensort.records(0, n, seed=i, size=20, key_size=4, ascii=i % 2 == 0)
        (folder / f"r{i}").write_bytes(block.tobytes())
        want.append(block)
    got = parts(workers, lambda d: d.records(str(folder), size=20, key_size=4))
    assert all(p.dtype == np.dtype([("key", "S4"), ("value", "V16")]) for p in got)
    assert sorted(len(p) for p in got)[-1] - sorted(len(p) for p in got)[0] <= 1  # whole records, balanced
    assert np.concatenate(got).tobytes() == np.concatenate(want).tobytes()


def test_records_are_memory_mapped_and_sizes_are_checked(tmp_path):
    gensort.write(str(tmp_path / "in.dat"), 300, seed=5)
    got = parts(2, lambda d: d.records(str(tmp_path / "in.dat")))
    assert all(isinstance(p, np.memmap) and len(p) == 150 for p in got)
    (tmp_path / "bad.dat").write_bytes(b"x" * 250)
    with pytest.raises(DataError, match=r"^records: .*bad\.dat is 250 bytes, not a whole number of 100-byte records"):
        parts(1, lambda d: d.records(str(tmp_path / "bad.dat")))
    with pytest.raises(DataError, match=r"^records: no file matches"):
        parts(1, lambda d: d.records(str(tmp_path / "none")))


def test_gensort_records_do_not_depend_on_the_split():
    whole = gensort.records(0, 70_000, seed=9)
    pieces = [gensort.records(a, b, seed=9) for a, b in ((0, 3), (3, 65_540), (65_540, 70_000))]
    assert np.concatenate(pieces).tobytes() == whole.tobytes()
    raw = whole.view(np.uint8).reshape(-1, 100)
    assert raw.min() >= 32 and raw.max() <= 126  # ascii: printable
    assert bytes(raw[65_537, 10:26]) == b"%016X" % 65_537
    assert len(np.unique(whole["key"])) > 69_000
    assert gensort.records(0, 10, seed=1).tobytes() != gensort.records(0, 10, seed=2).tobytes()
