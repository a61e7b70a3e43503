"""Where a real-time pipeline micro-batch spends its CPU: the decode round trip, the cache, bronze's Avro and Delta.

The end-to-end benchmark (``bench/e2e.py``) gives latency and a per-batch log of the stages; this one splits the
costs inside the two largest stages on one fixed batch, so a change to them can be measured side by side without
Kafka or a stream. The batch is the shared sample ZTF alerts re-encoded without their image stamps, as
``bench/e2e.py`` sends them (``--keep-cutouts``: as the survey sent them, about 68 KB each), repeated to
``--alerts``, in 2 Spark partitions as the survey topic has, held in Spark's cache before anything is timed.
Each measurement runs once untimed (JIT compilation, the Python workers' imports), then ``--repeats`` times,
the measurements of a group taken in turn (each round in the reverse order of the one before), so that a drift of
the machine's speed weighs on all of them alike; the table gives the minimum and the median of the wall time
and of the CPU time of the whole process tree (this driver, Spark's JVM, its Python workers), and the CPU per
alert of the minimum.

- ``udf_values_sent``: an Arrow UDF that only takes the Kafka values' lengths (pyarrow, no Python loop): the
  cost of moving the values to Python and of the copy of each input row Spark keeps meanwhile.
- ``udf_values_kept_only``: an Arrow UDF on the offsets, the values only carried in the rows: that copy alone.
- ``python_decoder``: :func:`jobs.ingest.decoder` on the same values in this process, no Spark (one core).
- ``decode_no_cache``: :func:`jobs.ingest.kept` of :func:`jobs.ingest.decode_messages` to Spark's noop sink.
- ``decode_cache_keys``: the same cached and its keys collected, as :meth:`jobs.ingest.IngestJob.write_batch`.
- ``bronze_from_avro``: :func:`jobs.ingest.to_bronze_rows` (Spark's ``from_avro``) of the cached batch, noop sink.
- ``bronze_delta_write``: the same appended to a Delta table in a temporary folder, created as bronze is
  (:data:`jobs.ingest.BRONZE_PROPERTIES`: partitioned by night, statistics on the key columns, no Parquet
  dictionaries), zstd.
- ``bronze_delta_write_dictionaries``: the same into a table whose Parquet files have dictionaries (Spark's
  default), for the ratio ``no_dictionary_vs_dictionaries`` in the JSON.
- ``silver_delta_write``: the batch's silver rows (:func:`jobs.enrich.silver_rows` without science modules,
  cached) appended to a table created as silver is (:func:`jobs.enrich.silver_properties`: dictionaries for the
  string columns only), zstd.
- ``silver_delta_write_dictionaries``: the same into a table with dictionaries for every column (silver's
  properties before 2026-12-03), for the ratio ``silver_no_float_dictionary_vs_dictionaries``.

    python bench/stages.py [--alerts 14000] [--repeats 3] [--keep-cutouts] [--output bench/results/stages.json]

Prints a table and writes the JSON (with the machine and its load average before and after).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alertlake.lake import STREAMED_TABLE_PROPERTIES, ensure_table
from alertlake.settings import get_settings
from alertlake.simulate import load_sources
from alertlake.spark import WRITE_OPTIONS, build_spark
from alertlake.surveys import get_survey
from bench.decode import cpu_model, load_average
from bench.memory import PeakSampler
from jobs import enrich, ingest

RESULTS = Path(__file__).resolve().parent / "results" / "stages.json"


def sample_batch(spark: Any, alerts: int, keep_cutouts: bool) -> tuple[Any, int, float]:
    """The shared sample ZTF alerts as Kafka rows (without their stamps unless ``keep_cutouts``), repeated to about
    ``alerts``, in 2 partitions, cached: (the frame, its rows, MB of Kafka values)."""
    survey = get_survey("ztf")
    messages = [
        s.message if keep_cutouts else survey.encode(survey.without_cutouts(s.alert.record), s.alert.schema_version)
        for s in load_sources(survey)
    ]
    copies = max(1, round(alerts / len(messages)))
    kafka_like = ingest.kafka_like_frame(spark, messages, copies, "bench", 2).persist()
    return kafka_like, kafka_like.count(), sum(len(m) for m in messages) * copies / 1e6


def bronze_batch(kafka_like: Any) -> Any:
    """``kafka_like`` decoded (:func:`jobs.ingest.kept`, cached) and projected to bronze rows, not yet run."""
    from pyspark.sql import functions as F

    batch = ingest.kept(ingest.decode_messages(kafka_like, "ztf", None)).persist()
    batch.count()
    good = batch.where(F.col("reason").isNull())
    versions = sorted(r[0] for r in good.select("schema_version").distinct().collect())
    return ingest.to_bronze_rows(good, "ztf", versions, 0)


def write_result(output: Path, result: dict[str, Any], load_before: Any) -> None:
    """Write ``result`` as JSON to ``output``, with the date, the machine and its load average before and after."""
    result |= {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model()},
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


def measure_in_turn(stages: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of each of ``stages``, ``repeats`` times, taken in turn (every other round in reverse
    order): minimum and median of each."""
    walls: dict[str, list[float]] = {name: [] for name in stages}
    cpus: dict[str, list[float]] = {name: [] for name in stages}
    # This process's tree, sampled by hand around each stage (the thread is not started). The CPU is each
    # process's increase, not the difference of sums counting reaped children: a process whose time moved to its
    # parent's reaped children, or that a sample missed, made a bronze write's CPU read -91 s in two runs.
    # Spark's JVM and its Python workers live through the runs, so what a process does after its last sample
    # and before it ends is rare here.
    ledger, me = PeakSampler(os.getpid(), memory=False), os.getpid()
    for round_ in range(repeats):
        for name in list(stages) if round_ % 2 == 0 else list(stages)[::-1]:
            ledger.sample()
            cpu, wall = ledger.cpu_seconds[me], time.perf_counter()
            stages[name]()
            walls[name].append(time.perf_counter() - wall)
            ledger.sample()
            cpus[name].append(ledger.cpu_seconds[me] - cpu)
    return {
        name: {
            "wall_s_min": round(min(walls[name]), 2),
            "wall_s_median": round(statistics.median(walls[name]), 2),
            "cpu_s_min": round(min(cpus[name]), 2),
            "cpu_s_median": round(statistics.median(cpus[name]), 2),
        }
        for name in stages
    }


def median_ratios(figures: dict[str, dict[str, float]], stage: str, baseline: str) -> dict[str, float]:
    """``stage``'s median wall and CPU seconds over ``baseline``'s, measured in the same run."""
    return {
        f"{measure}_median": round(figures[stage][f"{measure}_median"] / figures[baseline][f"{measure}_median"], 3)
        for measure in ("wall_s", "cpu_s")
    }


def main() -> None:
    """Run the measurements, print the table, write the JSON."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import ArrowUDFType

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=14_000, help="alerts in the batch (the samples repeated)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (min and median kept)")
    parser.add_argument("--keep-cutouts", action="store_true", help="keep the image stamps in the messages")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = load_average()

    settings = get_settings()
    spark = build_spark(settings, "alertlake-bench-stages")
    spark.sparkContext.setLogLevel("ERROR")
    kafka_like, alerts, values_mb = sample_batch(spark, args.alerts, args.keep_cutouts)

    def noop(frame: Any) -> None:
        frame.write.format("noop").mode("overwrite").save()

    def lengths(value: pa.Array) -> pa.Array:
        return pc.binary_length(value).cast(pa.int64())

    def offsets(offset: pa.Array) -> pa.Array:
        return offset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "It is preferred to specify type hints", UserWarning)
        udf_lengths = F.arrow_udf(lengths, "long", ArrowUDFType.SCALAR)
        udf_offsets = F.arrow_udf(offsets, "long", ArrowUDFType.SCALAR)

    decoded = ingest.decode_messages(kafka_like, "ztf", None)
    decode = ingest.decoder("ztf", None)
    arrays = kafka_like.select("value", "topic", "partition", "offset").toArrow()

    def python_decoder() -> None:
        for batch in arrays.to_batches(max_chunksize=10_000):
            decode(*batch.columns)

    def decode_cache_keys() -> None:
        batch = ingest.kept(decoded).persist()
        batch.select(*ingest.COORDS, "alert_id", "schema_version").toArrow()
        batch.unpersist()

    tmp = tempfile.mkdtemp(prefix="alertlake-bench-stages-")
    figures: dict[str, dict[str, float]] = {}

    def run(stages: dict[str, Callable[[], Any]]) -> None:
        for work in stages.values():  # one untimed run each: JIT compilation, Python workers' imports
            work()
        for name, found in measure_in_turn(stages, args.repeats).items():
            figures[name] = {**found, "cpu_ms_per_alert": round(1000 * found["cpu_s_min"] / alerts, 3)}
            print(f"{name:31s} {figures[name]}", flush=True)

    try:
        run(
            {
                "udf_values_sent": lambda: noop(kafka_like.select(udf_lengths("value"))),
                "udf_values_kept_only": lambda: noop(kafka_like.select("value", udf_offsets("offset"))),
                "python_decoder": python_decoder,
                "decode_no_cache": lambda: noop(ingest.kept(decoded)),
                "decode_cache_keys": decode_cache_keys,
            }
        )
        # A plan of its own, cached here (bronze_batch): Spark keeps one cache entry per plan, and decode_cache_keys
        # caches and unpersists its own, which until 2026-11-27 dropped the one bronze read (the bronze figures then
        # included decoding the batch again).
        bronze = bronze_batch(kafka_like)

        with_dictionaries = {k: v for k, v in ingest.BRONZE_PROPERTIES.items() if k != "parquet.enable.dictionary"}
        for folder, properties in (("bronze", ingest.BRONZE_PROPERTIES), ("dictionaries", with_dictionaries)):
            ensure_table(f"file://{tmp}/{folder}", ingest.bronze_schema("ztf"), "night", properties)

        def delta_write(folder: str, rows: Any = None) -> Callable[[], None]:
            """Append ``rows`` (bronze's by default) to the table in ``folder``."""
            frame = bronze if rows is None else rows
            return lambda: frame.write.format("delta").mode("append").options(**WRITE_OPTIONS).save(f"{tmp}/{folder}")

        run(
            {
                "bronze_from_avro": lambda: noop(bronze),
                "bronze_delta_write": delta_write("bronze"),
                "bronze_delta_write_dictionaries": delta_write("dictionaries"),
            }
        )
        bronze.unpersist()

        # Silver's rows of the same batch, without science modules (their few columns would only add noise here),
        # cached: the write alone is timed, into a table created as silver is and into one with every dictionary.
        accepted = ingest.kept(decoded).where(F.col("reason").isNull()).select("canonical", "kafka_timestamp")
        silver = enrich.silver_rows(accepted, [], "bench").persist()
        silver.count()
        schema = enrich.silver_schema([])
        for folder, properties in (
            ("silver", enrich.silver_properties(schema)),
            ("silver_dictionaries", STREAMED_TABLE_PROPERTIES),
        ):
            ensure_table(f"file://{tmp}/{folder}", schema, "night", properties)
        run(
            {
                "silver_delta_write": delta_write("silver", silver),
                "silver_delta_write_dictionaries": delta_write("silver_dictionaries", silver),
            }
        )
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    stamps = "with" if args.keep_cutouts else "without"
    print(f"\n{alerts:,} ZTF alerts {stamps} stamps ({values_mb:.0f} MB of Kafka values), {args.repeats} runs each")
    print(f"{'stage':31s} {'wall min':>9s} {'median':>7s} {'CPU min':>8s} {'median':>7s} {'CPU ms/alert':>13s}")
    for name, f in figures.items():
        print(
            f"{name:31s} {f['wall_s_min']:9.1f} {f['wall_s_median']:7.1f} {f['cpu_s_min']:8.1f} "
            f"{f['cpu_s_median']:7.1f} {f['cpu_ms_per_alert']:13.3f}"
        )
    result = {
        "alerts": alerts,
        "kafka_values_mb": round(values_mb, 1),
        "cutouts": args.keep_cutouts,
        "repeats": args.repeats,
        "stages": figures,
        # Side by side in this run: bronze's append without Parquet dictionaries over the same with them.
        "no_dictionary_vs_dictionaries": median_ratios(
            figures, "bronze_delta_write", "bronze_delta_write_dictionaries"
        ),
        # The same for silver: dictionaries for its strings only, over dictionaries for every column.
        "silver_no_float_dictionary_vs_dictionaries": median_ratios(
            figures, "silver_delta_write", "silver_delta_write_dictionaries"
        ),
        "spark_master": settings.spark_master,
    }
    write_result(args.output, result, load_before)


if __name__ == "__main__":
    main()
