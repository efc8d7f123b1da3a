"""The workload of bench/streaming.py (issue #15's benchmark) and its reference answer.

Events: N (default 5 M), keys uniform over 10,000, event times increasing on average: event i's
nominal time is 1 s + i / rate (rate: events per second of event time, all partitions together;
default 10,000/s, so 5 M events span 500 s, 50 tumbling windows of 10 s), and its event time is
the nominal time minus a uniform draw from [0, 1) s (disorder up to 1 s, never ahead of nominal).
Times are whole microseconds, so every engine reads the same value. Event i goes to partition
i % partitions (2: one per worker), in order; a partition's events keep their order.

Stragglers (default 0.05 % of the events, never in the first lag + 1 s): an event whose time is
lag (25 s) plus [0, 1) s behind its nominal time. Under the issue's watermark contract (watermark =
the smallest, over the partitions, of the largest event time read there, minus the disorder; a
window is written when the watermark passes its end) an ordinary event can never be late, whatever
the order in which an engine interleaves the partitions: the watermark is at most its own
partition's largest time so far minus 1 s, and that is below the event's time. A straggler is late
when the other partition has also moved past its window by then, and on time when that one lags:
how the engine interleaves decides. So the reference is exact for ordinary events and a range for
stragglers, and `check` asks of every engine that follows the contract: each (window, key) count at
least its ordinary events and at most those plus its stragglers, every event counted once, in a
window or as late. Engines with another watermark (Bytewax's advances with system time) are checked
with `exact=False`: no count above the reference, every event counted once (a (window, key) written
more than once is summed and said: Bytewax 0.21.1 does that).

Written under a folder: text/part-P.txt (lines `<ts> <key>`, ts in seconds with 6 decimals), for
the per-record Python path; numpy/P-ts.npy, P-key.npy, P-value.npy (float64, int64, float64
columns), for the vectorised path; reference.npz; workload.json (the parameters, to reuse a folder).

    python bench/streaming_data.py DIR [--events N] [--seed S] ...   (prints the folder's summary)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

WINDOW = 10.0  # seconds, tumbling, aligned to multiples of its length from time 0
DISORDER = 1.0  # seconds of bounded out-of-orderness
US = 1_000_000


@dataclasses.dataclass(frozen=True)
class Workload:
    events: int = 5_000_000
    keys: int = 10_000
    partitions: int = 2
    rate: float = 10_000.0  # events per second of event time, all partitions together
    stragglers: float = 0.0005  # share of the events
    lag: float = 25.0  # how far behind its nominal time a straggler is (plus [0, 1) s)
    seed: int = 15

    def __post_init__(self):
        if self.events < 1 or self.keys < 1 or self.partitions < 1:
            raise ValueError(f"events, keys and partitions must be >= 1: {self}")
        if not 0 < self.rate <= US:
            raise ValueError(f"rate must be in (0, {US}] events per second: {self.rate}")
        if self.lag < WINDOW + DISORDER:
            raise ValueError(f"lag must be >= window + disorder ({WINDOW + DISORDER} s) to make a straggler late")


class CheckError(Exception):
    """An engine's output disagrees with the reference: one line saying how."""


def columns(w: Workload) -> dict[str, np.ndarray]:
    """All events in their global order: ts_us (int64 microseconds), ts (float64 seconds), key,
    value, partition, straggler (bool)."""
    rng = np.random.default_rng(w.seed)
    i = np.arange(w.events, dtype=np.int64)
    nominal = US + (i * (US / w.rate)).astype(np.int64)
    ts_us = nominal - rng.integers(0, US, w.events)
    straggler = (rng.random(w.events) < w.stragglers) & (nominal >= int((w.lag + 1) * US))
    ts_us[straggler] = nominal[straggler] - int(w.lag * US) - rng.integers(0, US, int(straggler.sum()))
    return {
        "ts_us": ts_us,
        "ts": ts_us / US,
        "key": rng.integers(0, w.keys, w.events),
        "value": rng.random(w.events),
        "partition": i % w.partitions,
        "straggler": straggler,
    }


def window_index(ts_us: np.ndarray) -> np.ndarray:
    """Tumbling window of each event time: window k holds [k * WINDOW, (k + 1) * WINDOW)."""
    return ts_us // int(WINDOW * US)


def cells(windows: np.ndarray, keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique cell codes window * n_keys + key, the count of each)."""
    return np.unique(np.asarray(windows, np.int64) * n_keys + np.asarray(keys, np.int64), return_counts=True)


@dataclasses.dataclass
class Reference:
    """Per (window, key) cell, as codes window * keys + key: the ordinary events' counts (`low`)
    and those plus the stragglers' (`high`); `events` and `stragglers` in all."""

    codes: np.ndarray
    low: np.ndarray
    high: np.ndarray
    events: int
    stragglers: int
    keys: int

    @classmethod
    def of(cls, w: Workload, cols: dict[str, np.ndarray]) -> Reference:
        win = window_index(cols["ts_us"])
        codes, high = cells(win, cols["key"], w.keys)
        ordinary = ~cols["straggler"]
        ord_codes, ord_counts = cells(win[ordinary], cols["key"][ordinary], w.keys)
        low = np.zeros_like(high)
        low[np.searchsorted(codes, ord_codes)] = ord_counts
        return cls(codes, low, high, w.events, int(cols["straggler"].sum()), w.keys)

    def save(self, path: str) -> None:
        np.savez(path, codes=self.codes, low=self.low, high=self.high, meta=[self.events, self.stragglers, self.keys])

    @classmethod
    def load(cls, path: str) -> Reference:
        with np.load(path) as z:
            events, stragglers, keys = (int(x) for x in z["meta"])
            return cls(z["codes"], z["low"], z["high"], events, stragglers, keys)


def check(ref: Reference, window_starts, keys, counts, late: int, exact: bool = True) -> str:
    """Check an engine's output (one row per (window start in seconds, key, count)) and its late
    count against the reference; a line summarising it, or CheckError saying what is wrong."""
    windows = np.rint(np.asarray(window_starts, np.float64) / WINDOW).astype(np.int64)
    counts = np.asarray(counts, np.int64)
    codes = windows * ref.keys + np.asarray(keys, np.int64)
    order = np.argsort(codes, kind="stable")
    codes, counts = codes[order], counts[order]
    twice = 0
    if len(codes) > 1 and (dup := codes[1:] == codes[:-1]).any():
        c = int(codes[1:][dup][0])
        if exact:
            raise CheckError(f"(window {c // ref.keys * WINDOW:g}, key {c % ref.keys}) written more than once")
        codes, first = np.unique(codes, return_inverse=True)
        counts = np.bincount(first, weights=counts, minlength=len(codes)).astype(np.int64)
        twice = int(dup.sum())
    where = np.searchsorted(ref.codes, codes)
    known = where < len(ref.codes)
    known[known] = ref.codes[where[known]] == codes[known]
    if not known.all():
        c = int(codes[~known][0])
        raise CheckError(f"(window {c // ref.keys * WINDOW:g}, key {c % ref.keys}) is not in the input")
    got = np.zeros_like(ref.high)
    got[where] = counts
    low = ref.low if exact else np.zeros_like(ref.low)
    bad = (got < low) | (got > ref.high)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        c = int(ref.codes[j])
        raise CheckError(
            f"(window {c // ref.keys * WINDOW:g}, key {c % ref.keys}): count {int(got[j])}, "
            f"expected {int(ref.low[j])}" + (f" to {int(ref.high[j])}" if ref.high[j] != ref.low[j] else "")
        )
    total = int(counts.sum())
    if total + late != ref.events:
        raise CheckError(f"{total:,} events in windows + {late:,} late != {ref.events:,} events in the input")
    if exact and late > ref.stragglers:
        raise CheckError(f"{late:,} late, but only {ref.stragglers:,} stragglers can be late")
    again = f" ({twice:,} written again: summed)" if twice else ""
    return f"{len(codes):,} (window, key) counts{again}, {total:,} events in windows, {late:,} late"


def text_lines(ts_us: np.ndarray, keys: np.ndarray) -> str:
    sec, frac = np.divmod(ts_us, US)
    return "".join(f"{s}.{f:06d} {k}\n" for s, f, k in zip(sec.tolist(), frac.tolist(), keys.tolist()))


def write(folder: str, w: Workload) -> Reference:
    """Make the workload's files under folder (reused when workload.json matches); its reference."""
    meta_path = os.path.join(folder, "workload.json")
    ref_path = os.path.join(folder, "reference.npz")
    if os.path.exists(meta_path) and os.path.exists(ref_path):
        with open(meta_path) as f:
            if json.load(f) == dataclasses.asdict(w):
                return Reference.load(ref_path)
    for sub in ("text", "numpy"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    cols = columns(w)
    for p in range(w.partitions):
        mine = cols["partition"] == p
        with open(os.path.join(folder, "text", f"part-{p}.txt"), "w") as f:
            f.write(text_lines(cols["ts_us"][mine], cols["key"][mine]))
        for name in ("ts", "key", "value"):
            np.save(os.path.join(folder, "numpy", f"{p}-{name}.npy"), cols[name][mine])
    ref = Reference.of(w, cols)
    ref.save(ref_path)
    with open(meta_path, "w") as f:
        json.dump(dataclasses.asdict(w), f)
    return ref


def load_part(folder: str, partition: int, mmap: bool = True) -> dict[str, np.ndarray]:
    """One partition's numpy columns ts, key, value (memory-mapped)."""
    mode = "r" if mmap else None
    return {
        name: np.load(os.path.join(folder, "numpy", f"{partition}-{name}.npy"), mmap_mode=mode)
        for name in ("ts", "key", "value")
    }


def save_output(path: str, window_starts, keys, counts, late: int, **extra) -> None:
    """How every side hands its output to bench/streaming.py: one .npz per process."""
    np.savez(
        path,
        window_starts=np.asarray(window_starts, np.float64),
        keys=np.asarray(keys, np.int64),
        counts=np.asarray(counts, np.int64),
        late=np.int64(late),
        **extra,
    )


def load_outputs(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The outputs of one run's processes, together: (window starts, keys, counts, late)."""
    if not paths:
        raise CheckError("the run wrote no output")
    parts = [np.load(p) for p in paths]
    joined = [np.concatenate([z[name] for z in parts]) for name in ("window_starts", "keys", "counts")]
    return joined[0], joined[1], joined[2], sum(int(z["late"]) for z in parts)


# The generated workload (bench/streaming.py's emission delay and memory runs), made as it is read.
CROSSED: list[tuple[int, float, float]] = []  # (partition, window end, wall time) as generate saw it


BLOCK = 256  # events of one partition drawn (and, rate-limited, released) together


def generate(cfg: dict, partition: int, n_partitions: int, offset: int):
    """This partition's events (from its offset-th on): events i = partition, partition + n, ... of
    cfg events, event time 1 s + i / rate minus a uniform [0, disorder) draw, a key uniform over cfg
    keys, the same from any offset (each block of BLOCK has its own seed); event i is due at the
    source's start + i / speed (speed 0: at once). With cfg live (and a speed), event time is the
    wall clock instead: the source's start + i / speed minus the draw. Notes in CROSSED when this
    partition's largest time first passes each window end + disorder: from then on the watermark
    may pass that end as far as this partition goes."""
    events, speed = cfg["events"], cfg["speed"]
    window, disorder, rate = cfg["window"], cfg["disorder"], cfg["rate"]
    mine = len(range(partition, events, n_partitions))
    start = time.time()
    base, step = (start, 1.0 / speed) if cfg.get("live") else (1.0, 1.0 / rate)
    largest, cross = -np.inf, (base // window + 1) * window + disorder
    for block in range(offset // BLOCK, -(-mine // BLOCK)):
        rng = np.random.default_rng([cfg["seed"], partition, block])
        j = np.arange(block * BLOCK, min(mine, (block + 1) * BLOCK))
        idx = partition + j * n_partitions
        ts = (base + idx * step - rng.random(len(idx)) * disorder).tolist()
        keys = rng.integers(0, cfg["keys"], len(idx)).tolist()
        skip = max(0, offset - block * BLOCK)
        if speed:
            wait = start + (idx[0] - offset * n_partitions) / speed - time.time()
            if wait > 0:
                time.sleep(wait)
        for t, k in zip(ts[skip:], keys[skip:]):
            if t > largest:
                largest = t
                while largest >= cross:
                    CROSSED.append((partition, cross - disorder, time.time()))
                    cross += window
            yield t, k


class Arrivals:
    """A sink's notes: when the records of each window (by its start) came, the first and the last."""

    def __init__(self):
        self.came: dict[float, list[float]] = {}

    def note(self, window_starts) -> None:
        now = time.time()
        for start in set(window_starts):
            self.came.setdefault(float(start), [now, now])[1] = now


def save_delays(path: str, arrivals: Arrivals) -> None:
    """What streaming.delays reads: this process's CROSSED and a sink's arrivals."""
    crossed = np.array(CROSSED, np.float64).reshape(-1, 3)
    came = np.array([(w, *t) for w, t in sorted(arrivals.came.items())], np.float64).reshape(-1, 3)
    np.savez(path, crossed=crossed, came=came)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    defaults = Workload()
    for field in dataclasses.fields(Workload):
        parser.add_argument(
            f"--{field.name}", type=type(getattr(defaults, field.name)), default=getattr(defaults, field.name)
        )
    args = parser.parse_args()
    try:
        w = Workload(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Workload)})
    except ValueError as exc:
        sys.exit(f"streaming_data: {exc}")
    ref = write(args.folder, w)
    print(
        f"{w.events:,} events, {w.keys:,} keys, {w.partitions} partitions, {w.rate:,.0f} events per event-time s "
        f"({w.events / w.rate:,.0f} s of event time), disorder uniform [0, {DISORDER:g}) s behind nominal, "
        f"{ref.stragglers:,} stragglers {w.lag:g}-{w.lag + 1:g} s behind; {len(ref.codes):,} (window, key) cells "
        f"of tumbling {WINDOW:g} s windows; seed {w.seed}"
    )


if __name__ == "__main__":
    main()
