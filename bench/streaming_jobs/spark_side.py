"""The PySpark Structured Streaming side of bench/streaming.py, in the .venv-pyspark Python.

    .venv-pyspark/bin/python bench/streaming_jobs/spark_side.py INPUT OUTPUT [--workers 2]

local[W] (W task slots, spark.sql.shuffle.partitions = W): a file source over a copy of INPUT/text
(the lines `<ts> <key>`) -> ts as a timestamp -> withWatermark("ts", "1 second") ->
groupBy(window(ts, "10 seconds"), key).count(), append mode, each micro-batch's rows collected by
foreachBatch. Spark's watermark is the largest event time of the batches before, minus the delay;
it writes a window once that passes the window's end, and never at the end of the input: so when
the query has taken the input (trigger availableNow), a second run of it takes one more file, an
event far in the future, whose only purpose is to move the watermark past every open window (its
own window is not written). Late rows: the state operator's numRowsDroppedByWatermark, summed over
the micro-batches. Prints `RESULT {json}` (seconds: both runs of the query; rss_mib: none, Spark's
executor is the JVM) and writes OUTPUT/spark.npz.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streaming_data import DISORDER, WINDOW, save_output  # noqa: E402

FUTURE = 4.0e9  # seconds: far past any input's event times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    scratch = os.path.join(args.output, "spark-scratch")
    source = os.path.join(scratch, "input")
    os.makedirs(source)
    for name in sorted(os.listdir(os.path.join(args.input, "text"))):
        os.symlink(os.path.join(args.input, "text", name), os.path.join(source, name))
    spark = (
        SparkSession.builder.master(f"local[{args.workers}]")
        .config("spark.sql.shuffle.partitions", str(args.workers))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    lines = spark.readStream.text(source)
    parts = F.split(lines.value, " ")
    events = lines.select(
        F.timestamp_seconds(parts.getItem(0).cast("double")).alias("ts"), parts.getItem(1).cast("long").alias("key")
    )
    counts = (
        events.withWatermark("ts", f"{DISORDER:g} seconds")
        .groupBy(F.window("ts", f"{WINDOW:g} seconds"), "key")
        .count()
        .select(F.unix_timestamp(F.col("window.start")).alias("start"), "key", "count")
    )
    got = []

    def collect(batch, _batch_id):
        got.append(batch.toPandas())

    def run_once() -> int:
        query = (
            counts.writeStream.outputMode("append")
            .foreachBatch(collect)
            .option("checkpointLocation", os.path.join(scratch, "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        return sum(
            op.get("numRowsDroppedByWatermark", 0) for p in query.recentProgress for op in p.get("stateOperators", [])
        )

    start = time.perf_counter()
    late = run_once()
    with open(os.path.join(source, "zz-flush.txt"), "w") as f:
        f.write(f"{FUTURE:.6f} -1\n")
    late += run_once()
    took = time.perf_counter() - start
    spark.stop()
    import pandas as pd

    rows = pd.concat(got) if got else pd.DataFrame({"start": [], "key": [], "count": []})
    rows = rows[rows["key"] >= 0]
    save_output(os.path.join(args.output, "spark.npz"), rows["start"], rows["key"], rows["count"], late)
    shutil.rmtree(scratch, ignore_errors=True)
    print("RESULT " + json.dumps({"seconds": took}), flush=True)


if __name__ == "__main__":
    main()
