"""Streaming dataflow benchmark (issue #15): event-time tumbling 10 s windows, a count per key, over
bench/streaming_data.py's workload (5 M events, 10,000 keys, disorder up to 1 s, 2 partitions), on
2 workers: t2mpi's per-record and numpy paths against Bytewax 0.21, PySpark Structured Streaming and
a hand-written mpi4py program; then t2mpi's emission delay, memory under a slow sink and checkpoint
cost. Every run's output is checked against the reference (counts, late), not only timed.

(t2mpi)    t2mpi run bench/streaming_jobs/stream.yaml -n 2 --quiet --set worker=stream_job:PerRecord|Batches …
(mpi4py)   mpiexec -n 2 python bench/streaming_mpi.py DATA OUT
(Bytewax)  .venv-bytewax/bin/python bench/streaming_jobs/bytewax_side.py DATA OUT   (2 processes)
(PySpark)  .venv-pyspark/bin/python bench/streaming_jobs/spark_side.py DATA OUT
Peers run only where their side venv exists (bench/peers.sh makes them); otherwise a line says why.

Throughput: events / seconds, medians over --rounds interleaved rounds, two figures: "in-run" (the
engine's own run: t2mpi's s.run() from a barrier, the mpi4py loop between barriers, Bytewax from its processes'
start to its sinks' close, Spark's query) and "whole" (the whole command, launch included).
Emission delay: a rate-limited generator source at half the rate the same job reaches unthrottled;
each source partition notes the wall time at which its largest event time first passed a window's
end + disorder, so the watermark (their minimum) passed the end at the latest of those; the sink
notes when each window's records came; delay = that minus this, per window (its first and its last
record), p50 and p99; Bytewax's too where measured, with event time = the wall clock (its
EventClock assumes it; a negative delay: written before the contract's watermark passed). Memory: peak RSS (the largest worker's) under a slow sink, for two run
lengths. Checkpoint cost: the per-record side with checkpoint_every=5 against without.
Goals (issue #15): per-record >= 10 x Bytewax, numpy path >= 0.5 x mpi4py, delay p99 < 100 ms,
peak RSS flat with the run's length.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, PYTHON, ROOT, interleave, mpi_flavour, mpiexec  # noqa: E402
from dataflow_sides import JobSide, Side, SideError, become_subreaper, printed_result  # noqa: E402
from streaming_data import DISORDER, WINDOW, CheckError, Reference, check, load_outputs  # noqa: E402

JOBS = os.path.join(ROOT, "bench", "streaming_jobs")
JOB = os.path.join(JOBS, "stream.yaml")
BYTEWAX = ".venv-bytewax"
WORKERS = 2


BATCH: list[str] = []  # --batch: config.batch=N for every t2mpi run


def t2mpi_run(worker: str, data: str, out: str, *sets: str) -> list[str]:
    argv = [os.path.join(BIN, "t2mpi"), "run", JOB, "-n", str(WORKERS), "--quiet"]
    for item in (f"worker=stream_job:{worker}", f"config.input={data}", f"config.output={out}", *BATCH, *sets):
        argv += ["--set", item]
    return argv


def in_run(results: dict) -> dict:
    """A t2mpi run's figures from its workers' results: the slowest worker's s.run() time."""
    return {
        "seconds": max(r["seconds"] for r in results.values()),
        "rss_mib": max(r["rss_mib"] for r in results.values()),
        "summary": results,
    }


class Run:
    """One side of the throughput table: its command, where it writes its output, how exact it must be."""

    def __init__(self, side: Side, out: str, exact: bool):
        self.side, self.out, self.exact = side, out, exact
        self.whole: list[float] = []
        self.inner: list[float] = []
        self.checkpoints: list[int] = []  # t2mpi sides: the checkpoints each run took
        self.checked = ""


def t2mpi_side(name: str, worker: str, data: str, out: str, work: str, *sets: str) -> Run:
    return Run(JobSide(name, t2mpi_run(worker, data, out, *sets), in_run, work), out, exact=True)


def peer_side(name: str, venv: str, script: str, data: str, out: str, notes: list[str]) -> Run | None:
    python = os.path.join(ROOT, venv, "bin", "python")
    if not os.path.exists(python):
        notes.append(f"{name}: not measured (no side venv {os.path.join(ROOT, venv)}; make it: bench/peers.sh)")
        return None
    return Run(Side(name, [python, os.path.join(JOBS, script), data, out], printed_result), out, exact=False)


SIDES = ("per-record", "bytewax", "spark", "numpy", "mpi4py", "checkpoint")


def sides(data: str, work: str, checkpoint: float, chosen: list[str]) -> tuple[dict[str, Run], list[str]]:
    out = lambda name: os.path.join(work, "out", name)  # noqa: E731
    notes: list[str] = []
    runs = {
        "per-record": t2mpi_side("t2mpi per-record (files, map(parse))", "PerRecord", data, out("rec"), work),
        "bytewax": peer_side("Bytewax 0.21, 2 processes", BYTEWAX, "bytewax_side.py", data, out("bw"), notes),
        "spark": peer_side("PySpark Structured Streaming", ".venv-pyspark", "spark_side.py", data, out("sp"), notes),
        "numpy": t2mpi_side("t2mpi numpy batches", "Batches", data, out("np"), work),
        "mpi4py": Run(
            Side(
                f"hand-written mpi4py, {WORKERS} ranks",
                mpiexec(WORKERS) + [PYTHON, os.path.join(ROOT, "bench", "streaming_mpi.py"), data, out("mpi")],
                printed_result,
            ),
            out("mpi"),
            exact=True,
        ),
        "checkpoint": t2mpi_side(
            f"t2mpi per-record, checkpoint_every={checkpoint:g}",
            "PerRecord",
            data,
            out("ck"),
            work,
            f"config.checkpoint_every={checkpoint}",
        ),
    }
    return {k: v for k, v in runs.items() if v is not None and k in chosen}, notes


def measure(runs: dict[str, Run], ref: Reference, env: dict[str, str], rounds: int, timeout: float) -> None:
    def case(run: Run):
        def once() -> float:
            if run.side.failed:
                return float("nan")
            shutil.rmtree(run.out, ignore_errors=True)
            try:
                took, result = run.side.run(env, ROOT, timeout)
                paths = sorted(glob.glob(os.path.join(run.out, "*.npz")))
                run.checked = check(ref, *load_outputs([p for p in paths if "delay-" not in p]), exact=run.exact)
            except (SideError, CheckError) as exc:
                run.side.failed = str(exc)
                print(f"  streaming: {run.side.name}: {exc}", flush=True)
                return float("nan")
            run.whole.append(took)
            run.inner.append(result["seconds"])
            workers = result.get("summary")
            if isinstance(workers, dict) and workers:
                run.checkpoints.append(next(iter(workers.values()))["summary"]["checkpoints"])
            return took

        return once

    interleave({run.side.name: case(run) for run in runs.values()}, rounds)


def rate(events: int, samples: list[float]) -> float:
    return events / statistics.median(samples) if samples else float("nan")


def throughput_table(runs: dict[str, Run], events: int) -> None:
    print(f"  {'side':<44} {'in-run events/s':>16} {'whole events/s':>15} {'peak RSS':>9}  check")
    for run in runs.values():
        if run.side.failed:
            print(f"  {run.side.name:<44} FAILED: {run.side.failed.split(' (command: ')[0]}")
            continue
        print(
            f"  {run.side.name:<44} {rate(events, run.inner):16,.0f} {rate(events, run.whole):15,.0f} "
            f"{max(run.side.rss):6.0f} MiB  {run.checked}"
        )


def goal(what: str, num: Run | None, den: Run | None, events: int, target: float) -> None:
    if num is None or den is None or num.side.failed or den.side.failed or not num.inner or not den.inner:
        missing = [r.side.name for r in (num, den) if r is not None and (r.side.failed or not r.inner)]
        print(f"  {what:<44} not measured ({', '.join(missing) or 'a side is absent'})")
        return
    inner = rate(events, num.inner) / rate(events, den.inner)
    whole = rate(events, num.whole) / rate(events, den.whole)
    met = "met" if inner >= target else "NOT met"
    print(f"  {what:<44} {inner:7.2f} x in-run ({whole:.2f} x whole)   goal >= {target:g} x: {met}")


def gen_config(args, **over) -> dict:
    """A config of streaming_data.generate (and the Generated job): args' sizes, then over."""
    cfg = {"events": 0, "rate": args.window_events / WINDOW, "speed": 0.0, "window": WINDOW, "disorder": DISORDER}
    return {**cfg, "keys": 10_000, "seed": args.seed, "sink_pause": 0.0, **over}


def t2mpi_generated(name: str, work: str, out: str, cfg: dict) -> Side:
    sets = [f"config.{key}={value}" for key, value in cfg.items()]
    return JobSide(f"t2mpi generator ({name})", t2mpi_run("Generated", "-", out, *sets), in_run, work)


def bytewax_generated(name: str, work: str, out: str, cfg: dict) -> Side:
    argv = [os.path.join(ROOT, BYTEWAX, "bin", "python"), os.path.join(JOBS, "bytewax_side.py"), "-", out]
    return Side(f"Bytewax generator ({name})", argv + ["--generate", json.dumps(cfg)], printed_result)


def generated(make, name: str, work: str, cfg: dict, env: dict[str, str], timeout: float) -> tuple[dict, str]:
    """One run of a generator side (make: t2mpi_generated or bytewax_generated): (its in-run
    figures, its output folder), checked: every event counted once, in a window or late; and for
    t2mpi none late (the generator has no stragglers; Bytewax's watermark follows its own rules)."""
    out = os.path.join(work, "out", name.replace(" ", "-"))
    shutil.rmtree(out, ignore_errors=True)
    side = make(name, work, out, cfg)
    _, result = side.run(env, ROOT, timeout)
    starts, keys, counts, late = load_outputs(
        sorted(glob.glob(os.path.join(out, "t2mpi-*.npz"))) or sorted(glob.glob(os.path.join(out, "bytewax-*.npz")))
    )
    if int(counts.sum()) + late != cfg["events"] or (late and make is t2mpi_generated):
        raise CheckError(
            f"{side.name}: {int(counts.sum()):,} events in windows and {late:,} late, of {cfg['events']:,} made"
        )
    return {**result, "late": late}, out


def delays(out: str) -> tuple[np.ndarray, np.ndarray]:
    """Per window that closed while the sources ran: (first record's delay, last record's delay), s."""
    parts = [np.load(p) for p in glob.glob(os.path.join(out, "delay-*.npz"))]
    crossed = np.concatenate([z["crossed"] for z in parts])
    came = np.concatenate([z["came"] for z in parts])
    partitions = len(set(crossed[:, 0].tolist()))
    first, last = [], []
    for end in sorted(set(crossed[:, 1].tolist())):
        mine = crossed[crossed[:, 1] == end]
        if len(mine) < partitions:
            continue  # the watermark never passed it: written when the stream ended
        passed = mine[:, 2].max()
        window = came[came[:, 0] == end - WINDOW]
        if len(window):
            first.append(window[:, 1].min() - passed)
            last.append(window[:, 2].max() - passed)
    return np.array(first), np.array(last)


def print_delays(label: str, out: str, goal: bool) -> None:
    first, last = delays(out)
    if not len(last):
        print(f"  {label}: no window closed while the sources ran (run longer: --delay-seconds)")
        return
    ms = lambda a, q: 1000 * float(np.percentile(a, q))  # noqa: E731
    for what, d in (("first", first), ("last", last)):
        line = (
            f"  {label}, a window's {what} record: p50 {ms(d, 50):8.1f} ms  p99 {ms(d, 99):8.1f} ms  ({len(d)} windows)"
        )
        if goal and what == "last":
            line += f"   goal p99 < 100 ms: {'met' if ms(d, 99) < 100 else 'NOT met'}"
        print(line)


def delay_section(args, work: str, env: dict[str, str], chosen: list[str]) -> None:
    """t2mpi, and Bytewax where measured: the generator unthrottled, then at half that rate."""
    engines = [("t2mpi", t2mpi_generated, args.delay_events, {})]
    if "bytewax" in chosen and os.path.exists(os.path.join(ROOT, BYTEWAX, "bin", "python")):
        engines.append(("Bytewax", bytewax_generated, args.bytewax_delay_events, {"live": True}))
    failed = []
    for engine, make, n, live in engines:
        try:
            delay_of(args, work, env, engine, make, n, live)
        except (SideError, CheckError) as exc:
            print(f"  streaming: delay: {engine}: {exc}", flush=True)
            failed.append(engine)
    if failed:
        raise CheckError(f"no emission delay from {', '.join(failed)}")


def delay_of(args, work: str, env: dict[str, str], engine: str, make, n: int, live: dict) -> None:
    full, _ = generated(make, f"{engine} unthrottled", work, gen_config(args, events=n), env, args.timeout)
    speed = n / full["seconds"] / 2
    seconds = args.bytewax_delay_seconds if live else args.delay_seconds
    cfg = gen_config(args, events=int(speed * seconds), speed=speed, **live)
    if live:
        cfg["rate"] = speed  # event time is the wall clock: Bytewax's EventClock assumes it
    half, out = generated(make, f"{engine} half rate", work, cfg, env, args.timeout)
    print(
        f"  {engine}: the generator unthrottled {2 * speed:,.0f} events/s ({n:,} events); at half that for "
        f"{seconds:g} s, {cfg['rate'] * WINDOW:,.0f} events per window"
        + (" (event time = wall clock)" if live else "")
        + (f", {half['late']:,} late" if half["late"] else "")
    )
    print_delays(f"{engine} emission delay", out, goal=not live)


def memory_section(args, work: str, env: dict[str, str], chosen: list[str]) -> None:
    rss = []
    for events in (args.memory_events, 2 * args.memory_events):
        cfg = gen_config(args, events=events, sink_pause=args.sink_pause)
        result, _ = generated(t2mpi_generated, f"slow sink {events}", work, cfg, env, args.timeout)
        rss.append(result["rss_mib"])
        print(
            f"  slow sink ({args.sink_pause * 1e4:g} us a record), {events:,} events: {events / result['seconds']:,.0f} "
            f"events/s, peak RSS {result['rss_mib']:.0f} MiB (the largest worker)"
        )
    print(f"  peak RSS, twice the run / the run: {rss[1] / rss[0]:.3f} (goal: flat, ~1)")


def make_data(args) -> tuple[str, Reference]:
    folder = args.data or os.path.join(tempfile.gettempdir(), f"t2mpi-bench-streaming-{args.events}-{args.seed}")
    done = subprocess.run(
        [
            PYTHON,
            os.path.join(ROOT, "bench", "streaming_data.py"),
            folder,
            "--events",
            str(args.events),
            "--seed",
            str(args.seed),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"streaming: making the input failed: {done.stderr.strip()[-500:]}")
    print(f"Input {folder}: {done.stdout.strip()}")
    return folder, Reference.load(os.path.join(folder, "reference.npz"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="events in the throughput workload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--data", help="folder for the input (default: one per size and seed in the temp folder, reused)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run of one side may take")
    parser.add_argument("--only", default="throughput,delay,memory", help="comma-separated: throughput, delay, memory")
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"throughput sides, comma-separated: {', '.join(SIDES)}"
    )
    parser.add_argument("--checkpoint-every", type=float, default=5.0)
    parser.add_argument("--batch", type=int, help="t2mpi: records a round takes from each source partition (s.run's)")
    parser.add_argument("--delay-events", type=int, default=1_000_000, help="events of the unthrottled generator run")
    parser.add_argument("--delay-seconds", type=float, default=20.0, help="length of the half-rate run")
    parser.add_argument("--bytewax-delay-events", type=int, default=200_000, help="Bytewax's unthrottled run")
    parser.add_argument("--bytewax-delay-seconds", type=float, default=40.0, help="Bytewax's half-rate run (live)")
    parser.add_argument("--window-events", type=int, default=100_000, help="generator: events per 10 s window")
    parser.add_argument("--memory-events", type=int, default=1_000_000, help="the shorter slow-sink run")
    parser.add_argument("--sink-pause", type=float, default=0.005, help="slow sink: seconds it sleeps per 100 records")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - {"throughput", "delay", "memory"}:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from throughput, delay, memory")
    chosen = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := set(chosen) - set(SIDES):
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SIDES)}")
    if args.batch is not None:
        BATCH.append(f"config.batch={args.batch}")
    from t2mpi.job.spec import THREAD_LIMIT_VARS

    env = dict(os.environ, **{var: "1" for var in THREAD_LIMIT_VARS})
    become_subreaper()
    print(
        f"Streaming benchmark (issue #15): {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, MPI {mpi_flavour()}, "
        f"Python {sys.version.split()[0]}, {WORKERS} workers, {args.rounds} interleaved rounds, "
        f"t2mpi batch {args.batch or 'default'}"
    )
    work = tempfile.mkdtemp(prefix="t2mpi-bench-streaming-")
    failed = []
    try:
        if "throughput" in only:
            data, ref = make_data(args)
            runs, notes = sides(data, work, args.checkpoint_every, chosen)
            for line in notes:
                print(f"  {line}")
            measure(runs, ref, env, args.rounds, args.timeout)
            print(f"\nThroughput, {args.events:,} events, medians of {args.rounds}:")
            throughput_table(runs, args.events)
            goal("per-record / Bytewax", runs.get("per-record"), runs.get("bytewax"), args.events, 10.0)
            goal("numpy path / mpi4py", runs.get("numpy"), runs.get("mpi4py"), args.events, 0.5)
            ck, plain = runs.get("checkpoint"), runs.get("per-record")
            if ck and plain and ck.inner and plain.inner:
                share = 1 - rate(args.events, ck.inner) / rate(args.events, plain.inner)
                taken = min(ck.checkpoints, default=0) - 1  # the last one, as the stream ends, every run takes
                where = f"every {args.checkpoint_every:g} s, {taken} in a run of {statistics.median(ck.inner):.1f} s"
                if taken < 1:
                    print(
                        f"  checkpoint cost ({where}): not measured, the run is shorter than the interval "
                        "(give more --events or a smaller --checkpoint-every)"
                    )
                else:
                    print(f"  checkpoint cost ({where}): {100 * share:.1f} % of the throughput")
            failed += [r.side.name for r in runs.values() if r.side.failed]
        for section, run in (("delay", delay_section), ("memory", memory_section)):
            if section in only:
                print(f"\n{'Emission delay' if section == 'delay' else 'Memory under a slow sink'}:")
                try:
                    run(args, work, env, chosen)
                except (SideError, CheckError) as exc:
                    print(f"  streaming: {section}: {exc}")
                    failed.append(section)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(f"\nstreaming: {len(failed)} part(s) failed or disagreed: {'; '.join(failed)}")


if __name__ == "__main__":
    main()
