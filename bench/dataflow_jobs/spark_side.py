"""The PySpark sides of bench/dataflow.py, run in the side venv .venv-pyspark (never a dependency of
t2mpi); each prints one line, RESULT {json}, the same answer as the single process's.

Spark runs local[W]: one JVM that is driver and executor, W task slots, spark.sql.shuffle.partitions
= W, driver memory 8g (a third of this 24 GiB machine), no UI, Arrow transfers on. Python workers
are forked by the JVM only where a side runs Python code per row or per batch (the RDD sides, and
mapInArrow to read and summarise the sort's records).

Run: python spark_side.py WORKLOAD API WORKERS SCRATCH INPUT...
  wordcount df|rdd TEXTFILE;  sort df|rdd RECORDS.npy;  join df FACTS.csv DIMS.csv
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER_MEMORY = "8g"
SLICE = 65_536  # records per Arrow batch when reading the sort's input


def session(workers: int, scratch: str):
    # the JVM starts Python workers with this PYTHONPATH: they import records/words from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the side venv's python, not the first python3 on PATH
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{workers}]")
        .appName("t2mpi-bench-dataflow")
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", scratch)
        .config("spark.sql.shuffle.partitions", str(workers))
        .config("spark.default.parallelism", str(workers))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def wordcount_df(spark, workers: int, path: str) -> dict:
    from pyspark.sql import functions as F

    words = spark.read.text(path).select(F.explode(F.split("value", r"\s+")).alias("word")).where("word != ''")
    counts = words.groupBy("word").count().cache()
    top = counts.orderBy(F.desc("count"), F.desc("word")).limit(10).collect()
    total, distinct = counts.agg(F.sum("count"), F.count("*")).first()
    return {"top": [(r["word"], int(r["count"])) for r in top], "words": int(total), "distinct": int(distinct)}


def wordcount_rdd(spark, workers: int, path: str) -> dict:
    import operator

    lines = spark.sparkContext.textFile(path, minPartitions=workers)
    counts = lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(operator.add, numPartitions=workers)
    return {"top": [(w, int(c)) for w, c in counts.top(10, key=lambda kv: (kv[1], kv[0]))]}


def record_slices(path: str, part: int, parts: int):
    """(n, 100) uint8 slices of partition `part` of `parts` of the records, SLICE at a time."""
    import numpy as np
    from records import as_bytes

    records = np.load(path, mmap_mode="r")
    lo, hi = len(records) * part // parts, len(records) * (part + 1) // parts
    for start in range(lo, hi, SLICE):
        yield as_bytes(np.array(records[start : min(hi, start + SLICE)]))


def _binary(rows, lo: int, hi: int):
    """Columns lo:hi of (n, w) uint8 rows as an Arrow binary array (no per-row Python objects)."""
    import numpy as np
    import pyarrow as pa

    block = np.ascontiguousarray(rows[:, lo:hi])
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(hi - lo), len(block), [None, pa.py_buffer(block)])
    return fixed.cast(pa.binary())


def _rows(batch):
    """The (n, 100) uint8 records of an Arrow batch of key and payload binary columns."""
    import numpy as np
    import pyarrow as pa

    out = []
    for name, width in (("key", 10), ("payload", 90)):
        fixed = batch.column(name).cast(pa.binary(width))
        data = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)
        out.append(data[fixed.offset * width : (fixed.offset + len(fixed)) * width].reshape(len(fixed), width))
    return np.concatenate(out, axis=1)


def sort_df(spark, workers: int, path: str) -> dict:
    """Records read by W tasks through mapInArrow (key and payload as binary columns), orderBy(key)
    (Spark's sampled range partition, binary keys compare as unsigned bytes), then each sorted
    partition summarised by mapInArrow; the summaries are collected in partition order."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    def read(batches):
        for batch in batches:
            for part in batch.column(0).to_pylist():
                for rows in record_slices(path, part, workers):
                    yield pa.RecordBatch.from_arrays([_binary(rows, 0, 10), _binary(rows, 10, 100)], ["key", "payload"])

    def summarise(batches):
        from records import combined, summary

        pid, parts = None, []
        for batch in batches:
            if batch.num_rows:
                pid = batch.column("pid")[0].as_py()
                parts.append(summary(_rows(batch)))
        if parts:
            yield pa.RecordBatch.from_pylist([{"pid": pid, "summary": json.dumps(combined(parts))}])

    records = spark.range(workers, numPartitions=workers).mapInArrow(read, "key binary, payload binary")
    ordered = records.orderBy("key").withColumn("pid", F.spark_partition_id())
    rows = ordered.mapInArrow(summarise, "pid long, summary string").collect()
    return {"parts": [json.loads(r["summary"]) for r in sorted(rows, key=lambda r: r["pid"])]}


def sort_rdd(spark, workers: int, path: str) -> dict:
    """Records as Python bytes objects, sortBy(first 10 bytes), a summary per sorted partition."""

    def read(part):
        for rows in record_slices(path, part, workers):
            yield from (row.tobytes() for row in rows)

    def summarise(records):
        import numpy as np
        from records import summary

        data = b"".join(records)
        yield summary(np.frombuffer(data, dtype=np.uint8).reshape(len(data) // 100, 100))

    rdd = spark.sparkContext.parallelize(range(workers), workers).flatMap(read)
    return {"parts": rdd.sortBy(lambda r: r[:10], numPartitions=workers).mapPartitions(summarise).collect()}


def join_df(spark, workers: int, facts_path: str, dims_path: str) -> dict:
    from pyspark.sql import functions as F
    from tables import summary

    facts = spark.read.csv(facts_path, header=True, schema="key long, value double")
    dims = spark.read.csv(dims_path, header=True, schema="key long, group long")
    sums = facts.join(dims, "key").groupBy("group").agg(F.sum("value").alias("sum")).orderBy("group")
    return summary((r["group"], r["sum"]) for r in sums.collect())


SIDES = {
    ("wordcount", "df"): wordcount_df,
    ("wordcount", "rdd"): wordcount_rdd,
    ("sort", "df"): sort_df,
    ("sort", "rdd"): sort_rdd,
    ("join", "df"): join_df,
}


def main() -> None:
    workload, api, workers, scratch, *inputs = sys.argv[1:]
    side = SIDES.get((workload, api))
    if side is None:
        sys.exit(f"spark_side.py: no side {workload} {api}; there are {', '.join(' '.join(k) for k in SIDES)}")
    spark = session(int(workers), scratch)
    try:
        result = side(spark, int(workers), *inputs)
    finally:
        spark.stop()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
