"""The streaming examples' contracts (issue 15) in plain Python, one process: what
jobs/stream_wordcount and jobs/stream_clicks must write for a folder of files, read in rounds of
`batch` lines per file as the engine reads them.

counts() returns (emitted, late): emitted the (window_start, key, count) lines in the order they
are written (a window that late records updated within `lateness` is written again, for the keys
that changed), late the input lines in late/ (too late for one of their windows, or without a
readable event time).
"""

from __future__ import annotations

import math
from collections import Counter


def counts(files, parse, size, every, disorder, lateness, batch):
    """parse(line) -> (event time text, key)."""
    offsets = [0] * len(files)
    ended = [False] * len(files)
    maxima = [-math.inf] * len(files)
    watermark = -math.inf
    open_windows: dict[float, Counter] = {}
    fired: set[float] = set()
    emitted: list[tuple[float, str, int]] = []
    late: list[str] = []
    while not all(ended):
        dirty: dict[float, set[str]] = {}
        for p, lines in enumerate(files):
            if ended[p]:
                continue
            taken = lines[offsets[p] : offsets[p] + batch]
            offsets[p] += len(taken)
            ended[p] = len(taken) < batch
            for line in taken:
                ts_text, key = parse(line)
                try:
                    ts = float(ts_text)
                except ValueError:
                    late.append(line)
                    continue
                if not math.isfinite(ts):
                    late.append(line)
                    continue
                maxima[p] = max(maxima[p], ts)
                k = math.floor(ts / every)
                starts = [
                    j * every for j in range(k - math.ceil(size / every), k + 1) if j * every <= ts < j * every + size
                ]
                too_late = False
                for start in starts:
                    if start + size + lateness <= watermark:
                        too_late = True
                        continue
                    open_windows.setdefault(start, Counter())[key] += 1
                    if start in fired:
                        dirty.setdefault(start, set()).add(key)
                if too_late:
                    late.append(line)
        low = min(math.inf if ended[p] else maxima[p] for p in range(len(files)))
        if low != -math.inf:
            watermark = max(watermark, low - disorder if low != math.inf else math.inf)
        for start in sorted(open_windows):
            if start + size > watermark:
                break
            if start not in fired:
                emitted += [(start, key, n) for key, n in open_windows[start].items()]
                fired.add(start)
            elif start in dirty:
                emitted += [(start, key, open_windows[start][key]) for key in dirty[start]]
            if start + size + lateness <= watermark:
                del open_windows[start]
                fired.discard(start)
    return emitted, late


def word_of(line):
    fields = line.split(None, 1)
    return (fields[0] if fields else "", fields[1].strip() if len(fields) > 1 else "")


def wordcount(files, window, disorder, batch):
    """WordCount's contract: {(window_start, word): count} (one line each) and the late lines."""
    emitted, late = counts(files, word_of, window, window, disorder, 0.0, batch)
    written = {}
    for start, word, n in emitted:
        assert (start, word) not in written  # without lateness a window is written once
        written[(start, word)] = n
    return written, late


def show_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(t)


def processing_time(rounds, readings, kind, size, every=None):
    """Processing-time windows (one worker's view): rounds[r] the (key, value) records that reach
    the window in round r, readings[r] the clock then (the window's clock never goes back); every
    record is in the window(s) of its round's clock, a window is emitted in the first round whose
    clock reached its end (tumbling, sliding: start + size; session of gap `size`: last + gap), and
    the last round (the sources ended) emits every open one. Returns [(round, start, key, values)]."""
    now, out = -math.inf, []
    windows: dict[float, dict] = {}  # start -> {key: [values]}
    sessions: dict = {}  # key -> [[first, last, [values]], ...]
    for r, (records, reading) in enumerate(zip(rounds, readings)):
        now = max(now, reading)
        for key, value in records:
            if kind == "session":
                mine = sessions.setdefault(key, [])
                if mine and now < mine[-1][1] + size:  # times never go back: only the newest can grow
                    mine[-1][1] = now
                    mine[-1][2].append(value)
                else:
                    mine.append([now, now, [value]])
                continue
            step = every or size
            k = math.floor(now / step)
            for j in range(k - math.ceil(size / step), k + 1):
                if j * step <= now < j * step + size:
                    windows.setdefault(j * step, {}).setdefault(key, []).append(value)
        end = r == len(rounds) - 1
        for start in sorted(windows):
            if end or start + size <= now:
                out += [(r, start, key, values) for key, values in windows.pop(start).items()]
        for key, mine in sessions.items():
            out += [(r, s[0], key, s[2]) for s in mine if end or s[1] + size <= now]
            mine[:] = [s for s in mine if not (end or s[1] + size <= now)]
    return out
