"""The data-quality gate on real Spark/Delta data: good batches pass, a bad batch is held until released,
the nightly suites, report and Data Docs are produced with the right figures.

Runs in its own lake and state folders (a tmp dir), so other jobs' tables are untouched; Trino registration is
switched off there (an unreachable URL) so the real catalogue never points at a temporary folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from alertlake import quality
from alertlake.settings import Settings
from tests.integration.quality_data import silver_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a private lake and state folder."""
    root = tmp_path_factory.mktemp("quality")
    return services.model_copy(
        update={"lake_root": str(root / "lake"), "state_dir": root / "state", "trino_register": False}
    )


@pytest.fixture(scope="module")
def good(spark: SparkSession) -> DataFrame:
    """Every real sample alert as one silver batch, cached."""
    return silver_frame(spark, "test_enrich:1").cache()


def corrupt(df: DataFrame) -> DataFrame:
    """One ra out of range, a probability of 1.7, one row without provenance: the batch ``test_enrich:2``."""
    from pyspark.sql import functions as F

    first = df.orderBy("alert_id").first()
    assert first is not None
    target = F.col("alert_id") == first["alert_id"]
    return (
        df.withColumn("enrich_batch", F.lit("test_enrich:2"))
        .withColumn("ra", F.when(target, F.lit(400.0)).otherwise(F.col("ra")))
        .withColumn("supernova_score", F.when(target, F.lit(1.7)).otherwise(F.col("supernova_score")))
        .withColumn("anomaly_model_uri", F.when(target, F.lit(None)).otherwise(F.col("anomaly_model_uri")))
    )


def test_good_batch_passes_bad_batch_is_held_then_released(
    spark: SparkSession, lake: Settings, good: DataFrame
) -> None:
    verdict = quality.gate_batch(spark, lake, good, quality.SILVER, "test_enrich:1")
    assert verdict.status == quality.PASSED and verdict.rows == good.count() and not verdict.critical_failures
    bad_alert = good.orderBy("alert_id").first()
    assert bad_alert is not None

    bad = corrupt(good)
    verdict = quality.gate_batch(spark, lake, bad, quality.SILVER, "test_enrich:2")
    assert verdict.status == quality.HELD
    failures = "\n".join(verdict.critical_failures)
    for column in ("(ra)", "(supernova_score)", "(anomaly_model_uri)"):
        assert column in failures
    assert str(bad_alert["alert_id"]) in failures  # the message names the alert
    assert re.search(r"\(ra\): 1 of \d+ rows unexpected", failures)

    silver = good.unionByName(bad)
    sendable = {
        r["enrich_batch"]: r["count"]
        for r in quality.distributable(spark, lake, silver).groupBy("enrich_batch").count().collect()
    }
    assert sendable == {"test_enrich:1": good.count()}
    assert [b.batch_key for b in quality.held(lake)] == ["test_enrich:2"]

    # Results are in Delta and in the GX store.
    results = quality.read_table(lake, quality.RESULTS).to_pylist()
    assert {r["batch_key"] for r in results} == {"test_enrich:1", "test_enrich:2"}
    assert any(r["column"] == "ra" and not r["success"] and r["unexpected_count"] == 1 for r in results)
    stored = json.loads(Path(quality.held(lake)[0].gx_result or "").read_text())
    assert stored["success"] is False and stored["suite_name"] == "silver_alerts"

    # A retried check of a held batch keeps it held; a release makes it distributable and survives a re-check.
    released = quality.release(lake, "test_enrich:2", "ra and score fixed upstream (test)")
    assert released.status == quality.RELEASED and released.released_by
    assert quality.distributable(spark, lake, silver).count() == silver.count()
    quality.gate_batch(spark, lake, bad, quality.SILVER, "test_enrich:2")
    assert quality.batches(lake, table=quality.SILVER)[-1].status == quality.RELEASED
    with pytest.raises(ValueError, match="not held"):
        quality.release(lake, "test_enrich:1", "nothing to release")


def test_gate_stats_folded_into_the_batch_figures_still_hold_a_failing_batch(
    spark: SparkSession, lake: Settings, good: DataFrame
) -> None:
    """The enrichment job's path: batch figures and in-batch checks in one aggregation; the gate only records."""
    from pyspark.sql import functions as F

    from alertlake.spark import Projection
    from jobs.enrich import BatchFigures
    from tests.integration.quality_data import silver_refs

    bad = corrupt(good).withColumn("enrich_batch", F.lit("test_enrich:3"))
    bad_alert = good.orderBy("alert_id").first()
    assert bad_alert is not None
    plan = quality.gate_plan(quality.SILVER, bad)
    figures = BatchFigures.of(bad, silver_refs(), plan)
    assert figures.rows == good.count() and figures.nights and figures.surveys
    assert figures.gate_stats == plan.compute()  # the same aggregates as the gate's own action
    # The real-time pipeline's way: row-level columns on the driver, reduced by pyarrow, same figures and stats.
    table = BatchFigures.read(
        bad, plan, Projection(BatchFigures.driver_columns(silver_refs(), plan, {"object_id": F.col("object_id")}))
    )
    assert "object_id" in table.column_names and table.num_rows == figures.rows
    assert BatchFigures.from_table(table, silver_refs(), plan) == figures
    twice = bad.unionByName(bad.orderBy("alert_id").limit(2))  # two alerts twice: uniqueness fails
    twice_plan = quality.gate_plan(quality.SILVER, twice)
    stats = twice_plan.compute()
    read = BatchFigures.read(twice, twice_plan, Projection(BatchFigures.driver_columns(silver_refs(), twice_plan)))
    assert twice_plan.aggregates.reduce(read) == stats
    assert any(quality._count(stats, c["unexpected"]) == 2 for c in twice_plan.aggregates.counts.values())

    verdict = quality.gate_batch(spark, lake, bad, quality.SILVER, "test_enrich:3", plan=plan, stats=figures.gate_stats)
    assert verdict.status == quality.HELD and verdict.rows == figures.rows
    failures = "\n".join(verdict.critical_failures)
    for column in ("(ra)", "(supernova_score)", "(anomaly_model_uri)"):
        assert column in failures
    assert str(bad_alert["alert_id"]) in failures
    assert "test_enrich:3" in [b.batch_key for b in quality.held(lake)]
    assert quality.distributable(spark, lake, bad).count() == 0

    # Figures without the gate: the same counts, no gate aggregates; stats of another plan are refused.
    plain = BatchFigures.of(bad, silver_refs())
    assert (plain.rows, plain.nights, plain.errors, plain.gate_stats) == (
        figures.rows,
        figures.nights,
        figures.errors,
        {},
    )
    with pytest.raises(ValueError, match="lack the gate's aggregates"):
        quality.gate_batch(spark, lake, bad, quality.SILVER, "test_enrich:3", plan=plan, stats={"m0": 1})


def test_nightly_suite_report_and_docs(spark: SparkSession, lake: Settings, good: DataFrame) -> None:
    from pyspark.sql import functions as F

    from alertlake.lake import table_uri
    from alertlake.report import nightly_figures, nightly_report

    night = good.groupBy("night").count().orderBy(F.desc("count")).first()
    assert night is not None
    good.write.format("delta").mode("overwrite").partitionBy("night").save(table_uri(lake, quality.SILVER))
    quality.gate_batch(spark, lake, good, quality.SILVER, "test_enrich:1")

    verdict = quality.validate_night(spark, lake, quality.SILVER, night["night"])
    assert verdict.status == quality.PASSED, verdict.critical_failures
    assert verdict.rows == night["count"]
    assert any(r["run"] == "night" for r in quality.read_table(lake, quality.RESULTS).to_pylist())

    rows = (
        good.where(F.col("night") == night["night"])
        .groupBy("survey")
        .agg(F.count("*").alias("rows"), F.sum(F.col("quality_pass").cast("int")).alias("passed"))
    )
    expected = {r["survey"]: (r["rows"], r["passed"]) for r in rows.collect()}
    path = nightly_report(lake, night["night"])
    page = path.read_text()
    assert "<img" in page and "Counts per stage" in page
    figures = json.loads(path.with_suffix(".json").read_text())
    assert figures["silver_rows"] == night["count"]
    assert {s: (q["rows"], q["passed"]) for s, q in figures["quality_cuts"].items()} == expected
    assert figures["latency_seconds"]["count"] == night["count"]
    assert nightly_figures(lake, night["night"])["batches"].get("passed", 0) >= 1

    index = quality.build_data_docs(lake)
    assert index.exists() and "silver_alerts" in index.read_text()
