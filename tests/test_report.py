"""t2mpi report: the page's content from events (pure), and a real job's page: its operation_end
events add up, and headless chromium draws one lane per worker with bars in the operations' colours."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest
from conftest import events_of, only_job, t2mpi, write_job

from t2mpi import report

STATE = {
    "job_id": "j-1",
    "name": "j",
    "state": "COMPLETED",
    "reason": "ok",
    "num_workers": 3,
    "started": 0.0,
    "ended": 2.0,
}


def op(worker, name, site, start, end, **moved):
    return {
        "event": "operation_end",
        "worker": worker,
        "operation": name,
        "site": site,
        "start": start,
        "end": end,
        "rows_in": moved.get("rows_in", 1),
        "rows_out": moved.get("rows_out", 1),
        "bytes_shuffled": moved.get("bytes_shuffled", 10),
        "bytes_spilled": moved.get("bytes_spilled", 0),
    }


def test_the_page_has_a_lane_per_worker_and_a_bar_per_operation_end():
    events = [{"event": "started", "t": 0.0}] + [
        op(w, name, "wc.py:12", 0.1 * i, 0.1 * i + 0.05)
        for i, name in enumerate(["sort_by", "collect"])
        for w in range(3)
    ]
    page = report.render(STATE, events)
    assert page.count('class="lane"') == 3 and page.count('class="bar"') == 6
    assert "worker 2" in page and "COMPLETED" in page
    assert "<script" not in page and "src=" not in page and "href" not in page  # nothing fetched, nothing run


def test_operations_too_short_to_see_never_hide_under_each_other():
    """Three quick operations on one worker, next to a long one on another: each gets 2 px of its
    own in its lane, one after the other, instead of being drawn over the previous one."""
    import re

    events = [op(0, "sort_by", "a.py:1", 0.0, 100.0)] + [
        op(1, name, "a.py:2", 50.0 + i * 1e-4, 50.0 + (i + 1) * 1e-4)
        for i, name in enumerate(["map", "reduce_by_key", "collect"])
    ]
    page = report.render(STATE, events)
    bars = [(float(x), float(w)) for x, w in re.findall(r'<rect x="([\d.]+)" y="\d+" width="([\d.]+)" height', page)]
    quick = bars[1:]  # worker 1's, in start order
    assert [w for _, w in quick] == [2.0, 2.0, 2.0]
    assert all(b[0] >= a[0] + a[1] - 0.1 for a, b in zip(quick, quick[1:])), quick


def test_labels_are_escaped():
    page = report.render(STATE, [op(0, "map", "<script>alert(1)</script>.py:3", 0.0, 1.0)])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.py:3" in page


WORDS = """
    import operator
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            words = ctx.data.from_iterable([f"w{i % 13}" for i in range(3000)])
            counts = words.map(lambda w: (w, 1)).partition_by_key().reduce_by_key(operator.add)
            return sorted(counts.collect())[:2]
"""


def pixels(png_path):
    """The PNG's RGB rows (zlib-compressed, 8-bit RGB or RGBA, filters undone)."""
    import struct
    import zlib

    data = open(png_path, "rb").read()
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, ctype = header[:4]
    assert depth == 8 and ctype in (2, 6), header
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, out = zlib.decompress(b"".join(chunks)), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append([tuple(line[x * bpp : x * bpp + 3]) for x in range(width)])
        prev = line
    return out


@pytest.mark.mpi
def test_a_real_jobs_operations_add_up_and_its_page_draws_them(work):
    job = write_job(work, "words", textwrap.dedent(WORDS), workers=3)
    done = t2mpi("run", "-q", str(job), cwd=work)
    assert done.returncode == 0, done.stderr
    folder = only_job(work)
    ends = [e for e in events_of(folder) if e["event"] == "operation_end"]
    by_op = {}
    for e in ends:
        assert e["start"] <= e["end"] <= e["t"] + 1e-3
        by_op.setdefault(e["operation"], []).append(e)
    assert sorted(by_op) == ["collect", "partition_by_key", "reduce_by_key"]
    assert all(sorted(e["worker"] for e in es) == [0, 1, 2] for es in by_op.values())
    shuffle = by_op["partition_by_key"]
    assert sum(e["rows_in"] for e in shuffle) == sum(e["rows_out"] for e in shuffle) == 3000
    assert all(e["bytes_shuffled"] > 0 for e in shuffle)
    collect = by_op["collect"]  # an all-gather: every worker gets every worker's rows
    assert all(e["rows_out"] == sum(c["rows_in"] for c in collect) == 13 for e in collect)

    out = work / "page.html"
    made = t2mpi("report", folder.name, "-o", str(out), cwd=work)
    assert made.returncode == 0 and made.stdout.strip() == str(out), made.stderr
    for bad_args in ([str(work / "nowhere")], [folder.name, "-o", str(work / "no" / "such" / "p.html")]):
        bad = t2mpi("report", *bad_args, cwd=work)
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "Traceback" not in bad.stderr and "unexpected" not in bad.stderr

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is needed (./dev test installs it)"
    shot = work / "page.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1100,700",
            f"file://{out}",
        ],
        cwd=work,
        capture_output=True,
        timeout=120,
        check=True,
    )
    rows = pixels(shot)
    colours = report.colours(ends)
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): name for name, c in colours.items()}
    lanes_with = {name: set() for name in colours.values()}  # colour -> the lanes (bands of rows) it is in
    lane_rows = []
    lane_grey = (0xEE, 0xEE, 0xEE)
    for y, row in enumerate(rows):
        if sum(1 for px in row if px == lane_grey or px in wanted) > 400:  # a lane: grey and bars across
            lane_rows.append(y)
        for px in set(row):
            if px in wanted:
                lanes_with[colours[wanted[px]]].add(y)
    bands = [y for i, y in enumerate(lane_rows) if i == 0 or y != lane_rows[i - 1] + 1]
    assert len(bands) == 3, bands  # one grey lane per worker
    for colour, ys in lanes_with.items():
        hit = {sum(1 for b in bands if b <= y) for y in ys}
        assert hit == {1, 2, 3}, (colour, hit)  # each operation's colour in every worker's lane
    json.dumps(ends)  # the events stay plain JSON
