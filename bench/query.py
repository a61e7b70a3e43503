"""Query latency through Trino at >= 10 million alerts: object lookup, 1-arcminute cone search, night aggregate.

A silver-like table (canonical-like columns plus ``healpix``, ``quality_pass`` and a module score) is generated
with Spark, vectorised from ``spark.range``: objects at random sky positions with several alerts each, spread
over nights, with bands and magnitudes drawn from the shared ZTF sample alerts. It lives in its own lake root
(``ALERTLAKE_LAKE_ROOT``, default ``<cache>/bench-lake``) and is registered in Trino as ``lake.bench_silver.alerts``,
so the demo lake is untouched.

Each layout is measured with the same random targets, side by side:

* ``unclustered``: partitioned by night, files as written (alerts in arrival order, positions random);
* ``zorder``: the same table after ``OPTIMIZE ZORDER BY (healpix, object_id)`` with a Parquet bloom filter on
  ``object_id`` (:func:`alertlake.serving.optimize_layout`), the layout the broker uses.

    ALERTLAKE_LAKE_ROOT=~/.cache/alertlake/bench-lake python bench/query.py [--rows 10000000] [--queries 30]

Prints a table and writes ``bench/results/query.json`` (``rows``, ``object_lookup_p95_s``, ``cone_search_p95_s``,
``night_aggregate_s`` of the chosen layout, and every layout's figures under ``layouts``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from alertlake.serving import CLUSTER_COLUMNS, STATS_COLUMNS_PROPERTY, cone_search_sql, object_lookup_sql
from alertlake.settings import Settings
from alertlake.trino import connect, sql_string

RESULTS = Path(__file__).resolve().parent / "results" / "query.json"
SCHEMA = "bench_silver"
TABLE = "alerts"
FIRST_NIGHT = dt.date(2026, 1, 1)
FIRST_NIGHT_MJD = 61041.0  # MJD of 2026-01-01
console = Console()


def bench_settings() -> Settings:
    """Settings whose lake root is the benchmark's own (``ALERTLAKE_LAKE_ROOT`` or ``<cache>/bench-lake``)."""
    settings = Settings()
    if not os.environ.get("ALERTLAKE_LAKE_ROOT"):
        settings = Settings(lake_root=str(settings.cache_dir / "bench-lake"))
    return settings


def sample_photometry() -> list[tuple[str, float, float]]:
    """(band, mag, mag_err) of every shared ZTF sample alert, to draw synthetic photometry from."""
    from alertlake.surveys import get_survey
    from alertlake.surveys.samples import sample_messages

    ztf = get_survey("ztf")
    rows = []
    for sample in sample_messages("ztf"):
        for row in ztf.to_canonical(ztf.decode_alerts(sample.message)):
            if row.get("mag") is not None and row.get("mag_err") is not None:
                rows.append((str(row["band"]), float(row["mag"]), float(row["mag_err"])))
    return rows


def generate(spark: Any, location: str, rows: int, nights: int, alerts_per_object: int) -> float:
    """Write the synthetic silver table at ``location`` (overwriting); returns the seconds it took."""
    from pyspark.sql import functions as F

    from alertlake.serving import healpix_column

    phot = sample_photometry()
    n_objects = max(1, rows // alerts_per_object)
    start = time.perf_counter()
    unit = float(2**31)
    df = (
        spark.range(0, rows, numPartitions=max(4, nights * 2))
        .withColumn("obj", F.pmod(F.xxhash64("id"), F.lit(n_objects)))
        .withColumn("u1", F.pmod(F.xxhash64("obj", F.lit(1)), F.lit(2**31)) / unit)
        .withColumn("u2", F.pmod(F.xxhash64("obj", F.lit(2)), F.lit(2**31)) / unit)
        .withColumn("night_idx", F.floor(F.col("id") * nights / rows).cast("int"))
        .withColumn("phot_idx", F.pmod(F.xxhash64("id", F.lit(3)), F.lit(len(phot))).cast("int") + 1)
    )
    dec0 = F.degrees(F.asin(F.col("u2") * 2 - 1))
    # Each alert of an object scatters by ~0.1 arcsec around the object's position, as real detections do.
    jitter = 0.1 / 3600.0
    df = df.select(
        F.lit("ztf").alias("survey"),
        (F.col("id") + F.lit(3_000_000_000_000)).alias("alert_id"),
        F.concat(F.lit("ZTF26"), F.lpad(F.lower(F.conv(F.col("obj").cast("string"), 10, 36)), 7, "a")).alias(
            "object_id"
        ),
        F.pmod(F.col("u1") * 360 + F.randn(11) * jitter, F.lit(360.0)).alias("ra"),
        F.greatest(F.least(dec0 + F.randn(12) * jitter, F.lit(90.0)), F.lit(-90.0)).alias("dec"),
        (F.lit(FIRST_NIGHT_MJD) + F.col("night_idx") + 0.15 + F.rand(13) * 0.35).alias("mjd"),
        F.date_format(F.date_add(F.lit(FIRST_NIGHT.isoformat()).cast("date"), F.col("night_idx")), "yyyy-MM-dd").alias(
            "night"
        ),
        F.element_at(F.array(*[F.lit(b) for b, _, _ in phot]), F.col("phot_idx")).alias("band"),
        F.element_at(F.array(*[F.lit(m) for _, m, _ in phot]), F.col("phot_idx")).cast("float").alias("mag"),
        F.element_at(F.array(*[F.lit(e) for _, _, e in phot]), F.col("phot_idx")).cast("float").alias("mag_err"),
        (F.rand(14) > 0.1).alias("quality_pass"),
        F.rand(15).alias("supernova_score"),
    )
    df = df.withColumn("healpix", healpix_column("ra", "dec"))
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .option(STATS_COLUMNS_PROPERTY, ",".join(CLUSTER_COLUMNS) + ",ra,dec,mjd")
        .partitionBy("night")
        .save(location)
    )
    return time.perf_counter() - start


def register(settings: Settings, location: str) -> None:
    """(Re-)register the Delta table at ``location`` as ``lake.bench_silver.alerts``."""
    cat = settings.trino_catalog
    conn = connect(settings)
    cur = conn.cursor()
    trino_location = "local://" + location.removeprefix("file://") if location.startswith("file://") else location
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {cat}.{SCHEMA}")
    cur.fetchall()
    cur.execute(f"SHOW TABLES FROM {cat}.{SCHEMA}")
    if (TABLE,) in [tuple(r) for r in cur.fetchall()]:
        cur.execute(f"CALL {cat}.system.unregister_table(schema_name => '{SCHEMA}', table_name => '{TABLE}')")
        cur.fetchall()
    cur.execute(
        f"CALL {cat}.system.register_table(schema_name => '{SCHEMA}', table_name => '{TABLE}', "
        f"table_location => {sql_string(trino_location)})"
    )
    cur.fetchall()
    conn.close()


def p95(values: list[float]) -> float:
    """95th percentile (linear interpolation) of ``values``."""
    return float(statistics.quantiles(values, n=20, method="inclusive")[-1])


def timed(cur: Any, sql: str) -> tuple[float, int]:
    """Seconds to run ``sql`` and fetch all its rows, and the number of rows."""
    start = time.perf_counter()
    cur.execute(sql)
    n = len(cur.fetchall())
    return time.perf_counter() - start, n


def measure(settings: Settings, location: str, targets: dict[str, Any], warmup: int = 3) -> dict[str, Any]:
    """Object lookup and cone search latencies over the targets, and the one-night aggregate time."""
    from deltalake import DeltaTable

    table = f"{settings.trino_catalog}.{SCHEMA}.{TABLE}"
    conn = connect(settings)
    cur = conn.cursor()
    lookups = [object_lookup_sql(o, table) for o in targets["objects"]]
    cones = [cone_search_sql(ra, dec, 60.0, table) for ra, dec in targets["cones"]]
    for sql in lookups[:warmup] + cones[:warmup]:
        timed(cur, sql)
    lookup_s, lookup_rows = zip(*(timed(cur, sql) for sql in lookups), strict=True)
    cone_s, cone_rows = zip(*(timed(cur, sql) for sql in cones), strict=True)
    aggregate = (
        "SELECT band, count(*) AS alerts, count(DISTINCT object_id) AS objects, avg(mag) AS mean_mag, "
        "approx_percentile(mag, 0.5) AS median_mag, count_if(quality_pass) AS passed, "
        f"max(supernova_score) AS best_sn FROM {table} WHERE night = {sql_string(targets['night'])} GROUP BY band"
    )
    timed(cur, aggregate)  # warm
    night_s = [timed(cur, aggregate)[0] for _ in range(3)]
    conn.close()
    return {
        "object_lookup_p95_s": round(p95(list(lookup_s)), 4),
        "object_lookup_median_s": round(statistics.median(lookup_s), 4),
        "object_lookup_mean_rows": round(statistics.mean(lookup_rows), 2),
        "cone_search_p95_s": round(p95(list(cone_s)), 4),
        "cone_search_median_s": round(statistics.median(cone_s), 4),
        "cone_search_mean_rows": round(statistics.mean(cone_rows), 2),
        "night_aggregate_s": round(statistics.median(night_s), 4),
        "data_files": len(DeltaTable(location).file_uris()),
    }


def pick_targets(spark: Any, location: str, rows: int, queries: int, seed: int = 7) -> dict[str, Any]:
    """Random existing objects, cone centres within 30 arcsec of random alerts, and the middle night."""
    rng = random.Random(seed)
    picked = (
        spark.read.format("delta")
        .load(location)
        .select("object_id", "ra", "dec", "night")
        .sample(fraction=min(1.0, 4 * queries / rows), seed=seed)
        .limit(2 * queries)
        .collect()
    )
    objects = [r.object_id for r in picked[:queries]]
    cones = []
    for r in picked[queries : 2 * queries]:
        cones.append(((r.ra + rng.uniform(-30, 30) / 3600.0) % 360.0, max(-89.9, min(89.9, r.dec))))
    nights = sorted({r.night for r in picked})
    return {"objects": objects, "cones": cones, "night": nights[len(nights) // 2]}


def check_cone_exact(settings: Settings, ra: float, dec: float) -> dict[str, int]:
    """Rows the indexed cone search returns vs a full scan with the same distance test (must be equal)."""
    from alertlake.serving import angular_distance_sql

    table = f"{settings.trino_catalog}.{SCHEMA}.{TABLE}"
    conn = connect(settings)
    cur = conn.cursor()
    cur.execute(cone_search_sql(ra, dec, 60.0, table, ["alert_id"]))
    indexed = {r[0] for r in cur.fetchall()}
    cur.execute(f"SELECT alert_id FROM {table} WHERE {angular_distance_sql(ra, dec)} <= 60.0")
    scanned = {r[0] for r in cur.fetchall()}
    conn.close()
    return {"indexed": len(indexed), "full_scan": len(scanned), "same": int(indexed == scanned)}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    """Generate (unless --reuse), measure each layout, print the comparison, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--alerts-per-object", type=int, default=5)
    parser.add_argument("--queries", type=int, default=30, help="queries per kind (>= 20)")
    parser.add_argument("--max-file-mb", type=int, default=8, help="target file size of the clustered layout")
    parser.add_argument("--reuse", action="store_true", help="reuse the generated table if present")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark lake afterwards")
    args = parser.parse_args()

    from alertlake.serving import optimize_layout
    from alertlake.spark import build_spark

    settings = bench_settings()
    location = f"{settings.lake_uri}/silver/alerts"
    console.print(f"benchmark lake: {settings.lake_uri}")
    spark = build_spark(
        settings,
        "alertlake-bench-query",
        {
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "8",
            # Row groups of ~4 MB: Trino skips row groups by their statistics inside a file as well.
            "spark.hadoop.parquet.block.size": str(4 * 1024 * 1024),
        },
    )
    generated_s = None
    exists = settings.lake_is_local and (settings.lake_path / "silver" / "alerts" / "_delta_log").exists()
    if not (args.reuse and exists):
        console.print(f"generating {args.rows:,} alerts with Spark ...")
        generated_s = generate(spark, location, args.rows, args.nights, args.alerts_per_object)
        console.print(f"generated in {generated_s:.0f} s")
    rows = spark.read.format("delta").load(location).count()
    targets = pick_targets(spark, location, rows, args.queries)
    register(settings, location)

    layouts: dict[str, Any] = {}
    console.print("measuring layout 'unclustered' ...")
    layouts["unclustered"] = {"description": "partitioned by night, files in arrival order"}
    layouts["unclustered"].update(measure(settings, location, targets))

    console.print("OPTIMIZE ZORDER BY (healpix, object_id) ...")
    start = time.perf_counter()
    metrics = optimize_layout(spark, location, max_file_bytes=args.max_file_mb * 1024 * 1024)
    optimize_s = time.perf_counter() - start
    layouts["zorder"] = {
        "description": f"partitioned by night, OPTIMIZE ZORDER BY ({', '.join(CLUSTER_COLUMNS)}), "
        f"files <= {args.max_file_mb} MB, row groups ~4 MB, Parquet bloom filter on object_id",
        "optimize_s": round(optimize_s, 1),
        "files_added": metrics.get("metrics", metrics).get("numFilesAdded"),
        "files_removed": metrics.get("metrics", metrics).get("numFilesRemoved"),
    }
    console.print("measuring layout 'zorder' ...")
    layouts["zorder"].update(measure(settings, location, targets))
    exact = check_cone_exact(settings, *targets["cones"][0])
    spark.stop()

    table = Table(title=f"Trino query latency at {rows:,} alerts ({args.queries} queries per kind)")
    for col in ("layout", "files", "object lookup p95 s", "cone 1' p95 s", "night aggregate s"):
        table.add_column(col, justify="right")
    for name, fig in layouts.items():
        table.add_row(
            name,
            str(fig["data_files"]),
            f"{fig['object_lookup_p95_s']:.3f}",
            f"{fig['cone_search_p95_s']:.3f}",
            f"{fig['night_aggregate_s']:.3f}",
        )
    console.print(table)
    console.print(f"cone search vs full scan: {exact}")

    chosen = layouts["zorder"]
    result = {
        "rows": rows,
        "object_lookup_p95_s": chosen["object_lookup_p95_s"],
        "cone_search_p95_s": chosen["cone_search_p95_s"],
        "night_aggregate_s": chosen["night_aggregate_s"],
        "chosen_layout": "zorder",
        "layouts": layouts,
        "cone_radius_arcsec": 60.0,
        "queries_per_kind": args.queries,
        "cone_exactness_check": exact,
        "table": {
            "nights": args.nights,
            "alerts_per_object": args.alerts_per_object,
            "generate_s": round(generated_s, 1) if generated_s is not None else None,
            "columns": "survey, alert_id, object_id, ra, dec, mjd, night, band, mag, mag_err, quality_pass, "
            "supernova_score, healpix",
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "trino": "476",
            "platform": platform.platform(),
            # Other processes share the machine (other jobs, tests): the load during the run qualifies the figures.
            "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")
    if not args.keep and settings.lake_is_local:
        conn = connect(settings)
        cur = conn.cursor()
        cur.execute(
            f"CALL {settings.trino_catalog}.system.unregister_table(schema_name => '{SCHEMA}', table_name => '{TABLE}')"
        )
        cur.fetchall()
        conn.close()
        shutil.rmtree(settings.lake_path / "silver", ignore_errors=True)


if __name__ == "__main__":
    main()
