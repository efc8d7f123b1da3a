"""Run bytewax_flow.py as P Bytewax processes (`python -m bytewax.run -i I -a ADDRESSES`, one worker
each, as Bytewax 0.21's docs say for several processes), in the .venv-bytewax Python.

    .venv-bytewax/bin/python bench/streaming_jobs/bytewax_side.py INPUT OUTPUT [--processes 2] [--timeout S]
        [--generate JSON] [--shift S]

Event times are shifted a day ahead (BENCH_SHIFT: now + 1 day, rounded down to a multiple of 10 s;
see bytewax_flow.py; --shift S sets it, 0 keeps the input's times). --generate: the generated
workload instead of INPUT's files (bytewax_flow.py); a live one (event time = wall clock) is not
shifted. Bytewax's processes talk over TCP: they
listen on ports of 127.0.0.1 only, picked free here.
Prints `RESULT {json}`: seconds (in-run: the first process's start to the last sink's close),
rss_mib (the largest process's peak); the counts are in OUTPUT/bytewax-*.npz.
"""

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--generate", help="a JSON config of streaming_data.generate: read that instead of INPUT")
    parser.add_argument(
        "--shift", type=float, help="seconds added to the event times (default: now + 1 day, a multiple of 10 s)"
    )
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(args.processes))
    live = bool(args.generate and json.loads(args.generate).get("live"))
    shift = args.shift if args.shift is not None else 0.0 if live else (time.time() + 86400) // 10 * 10
    env = dict(os.environ, BENCH_INPUT=args.input, BENCH_OUTPUT=args.output, BENCH_SHIFT=repr(shift), PYTHONPATH=HERE)
    if args.generate:
        env["BENCH_GENERATE"] = args.generate
    argv = [sys.executable, "-m", "bytewax.run", "bytewax_flow:flow", "-a", addresses, "-i"]
    procs = [subprocess.Popen(argv + [str(i)], env=env, cwd=HERE) for i in range(args.processes)]
    try:
        codes = [p.wait(timeout=args.timeout) for p in procs]
    except subprocess.TimeoutExpired:
        sys.exit(f"bytewax_side: timed out after {args.timeout:.0f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
    if any(codes):
        sys.exit(f"bytewax_side: a Bytewax process failed (exit codes {codes})")
    parts = [np.load(p) for p in glob.glob(os.path.join(args.output, "bytewax-*.npz"))]
    if not parts:
        sys.exit(f"bytewax_side: no output in {args.output}")
    seconds = max(float(z["ended"]) for z in parts) - min(float(z["started"]) for z in parts)
    print("RESULT " + json.dumps({"seconds": seconds, "rss_mib": max(float(z["rss_mib"]) for z in parts)}), flush=True)


if __name__ == "__main__":
    main()
