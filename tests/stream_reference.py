"""The stream WordCount contract (issue 15) in plain Python, one process: what jobs/stream_wordcount
must write for a folder of files, read in rounds of `batch` lines per file as the engine reads them.

Returns (windows, late): windows {(window_start, word): count} as written (one line each), late the
input lines in late/ (their window was written already, or their event time cannot be read).
"""

from __future__ import annotations

import math
from collections import Counter


def wordcount(files: list[list[str]], window: float, disorder: float, batch: int) -> tuple[dict, list[str]]:
    offsets = [0] * len(files)
    ended = [False] * len(files)
    maxima = [-math.inf] * len(files)
    watermark = -math.inf
    open_windows: dict[float, Counter] = {}
    written: dict[tuple[float, str], int] = {}
    late: list[str] = []
    while not all(ended):
        for p, lines in enumerate(files):
            if ended[p]:
                continue
            taken = lines[offsets[p] : offsets[p] + batch]
            offsets[p] += len(taken)
            ended[p] = len(taken) < batch
            for line in taken:
                fields = line.split(None, 1)
                word = fields[1].strip() if len(fields) > 1 else ""
                try:
                    ts = float(fields[0] if fields else "")
                except ValueError:
                    late.append(line)
                    continue
                if not math.isfinite(ts):
                    late.append(line)
                    continue
                maxima[p] = max(maxima[p], ts)
                start = math.floor(ts / window) * window
                if start + window <= watermark:
                    late.append(line)
                    continue
                open_windows.setdefault(start, Counter())[word] += 1
        low = min(math.inf if ended[p] else maxima[p] for p in range(len(files)))
        if low != -math.inf:
            watermark = max(watermark, low - disorder if low != math.inf else math.inf)
        for start in sorted(open_windows):
            if start + window <= watermark:
                for word, n in open_windows.pop(start).items():
                    written[(start, word)] = n
    return written, late


def show_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(t)
