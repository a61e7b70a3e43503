"""Overhead of the in-batch data-quality gate on enrichment-sized batches, measured side by side.

Each round enriches the same batch with ``jobs/enrich.py``'s own ``silver_rows`` (quality cuts and every
science module at its MLflow champion version, in ``mapInArrow``), appends it to a silver Delta table, and,
alternately, does the same plus ``alertlake.quality.gate_batch`` on the persisted rows. Needs MLflow with the
modules registered (``alertlake modules register``).

    python bench/quality.py [--rows 5000] [--rounds 3]

Prints a table and writes ``bench/results/quality.json`` (key ``overhead_ratio`` = with / without - 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alertlake import quality
from alertlake.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"


def main() -> int:
    """Run the benchmark and write the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5000, help="alerts per batch (an enrichment micro-batch)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import pyarrow as pa
    from pyspark.sql import functions as F

    from alertlake.lake import table_uri
    from alertlake.spark import build_spark
    from jobs.enrich import silver_rows

    tmp = Path(tempfile.mkdtemp(prefix="alertlake-bench-quality-"))
    settings = Settings().model_copy(
        update={"lake_root": str(tmp / "lake"), "state_dir": tmp / "state", "trino_url": "http://127.0.0.1:9"}
    )
    spark = build_spark(settings, "alertlake-bench-quality", {"spark.ui.enabled": "false"})
    # Bronze-like input: the real sample's canonical rows, repeated with fresh alert ids up to --rows.
    from alertlake.modules import _sample_canonical
    from alertlake.surveys.canonical import SCHEMA

    sample = _sample_canonical()
    reps = -(-args.rows // len(sample))
    import pandas as pd

    frame = pd.concat([sample] * reps, ignore_index=True).iloc[: args.rows].copy()
    frame["alert_id"] = range(1, len(frame) + 1)
    canonical = pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
    bronze = (
        spark.createDataFrame(canonical)
        .select(F.struct(*SCHEMA.names).alias("canonical"), F.current_timestamp().alias("kafka_timestamp"))
        .cache()
    )
    bronze.count()
    from jobs.enrich import resolve_modules

    refs = resolve_modules(settings)

    def enrich(batch_id: int, gate: bool) -> float:
        key = f"bench:{batch_id}"
        started = time.perf_counter()
        rows = silver_rows(bronze, refs, key)
        rows = rows.persist()
        try:
            rows.write.format("delta").mode("append").option("mergeSchema", "true").save(
                table_uri(settings, "silver.alerts")
            )
            if gate:
                verdict = quality.gate_batch(spark, settings, rows, quality.SILVER, key)
                assert verdict.status == quality.PASSED, verdict.critical_failures
        finally:
            rows.unpersist()
        return time.perf_counter() - started

    enrich(0, True)  # warm-up: JIT, GX import, table creation
    without, with_gate = [], []
    for r in range(args.rounds):
        without.append(enrich(2 * r + 1, False))
        with_gate.append(enrich(2 * r + 2, True))
    base, gated = statistics.median(without), statistics.median(with_gate)
    figures = {
        "overhead_ratio": round(gated / base - 1, 4),
        "target_overhead_ratio": 0.10,
        "rows_per_batch": args.rows,
        "rounds": args.rounds,
        "enrich_seconds_median": round(base, 3),
        "enrich_with_gate_seconds_median": round(gated, 3),
        "enrich_seconds": [round(x, 3) for x in without],
        "enrich_with_gate_seconds": [round(x, 3) for x in with_gate],
        "in_batch_expectations": len(quality.in_batch_expectations(quality.suite_definition(quality.SILVER))),
        "enrichment_modules": [r.name for r in refs],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "spark_master": settings.spark_master,
        },
    }
    print(f"{'batch rows':<28}{args.rows}")
    print(f"{'enrich (median s)':<28}{base:.2f}")
    print(f"{'enrich + gate (median s)':<28}{gated:.2f}")
    print(f"{'overhead ratio':<28}{figures['overhead_ratio']:.3f}  (target <= 0.10)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
