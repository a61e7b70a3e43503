"""Real Kafka -> ingest -> enrichment -> silver.alerts with all five modules from the real MLflow registry.

A private topic and a private lake (one night, a few hundred ZTF alerts without stamps) keep the run small and
isolated; Trino registration is skipped by pointing the lake's settings at a closed port.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from alertlake import modules as registry
from alertlake.lake import checkpoint_uri, table_uri
from alertlake.settings import Settings
from jobs import enrich

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

NIGHT = "2026-11-20"
MODULES = ["features", "sso", "xmatch", "anomaly", "supernova"]
VOLATILE = ("enrich_batch", "enrich_time")  # differ between two computations by design


def ingest(spark: SparkSession, lake: Settings, topic: str, app_id: str, max_offsets: int | None = None) -> None:
    """The real ingestion job (decoder + idempotent bronze writer) over a private topic, bounded (micro-batches
    of at most ``max_offsets`` messages if given)."""
    from alertlake.spark import kafka_options
    from jobs.ingest import IngestJob, decode_messages

    job = IngestJob(lake, "ztf", app_id=app_id, topic=topic)
    job.prepare()
    kafka = (
        spark.readStream.format("kafka")
        .options(**kafka_options(lake))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .options(**({"maxOffsetsPerTrigger": str(max_offsets)} if max_offsets else {}))
        .load()
    )
    query = (
        decode_messages(kafka, "ztf", job.max_bytes)
        .writeStream.foreachBatch(job.write_batch)
        .option("checkpointLocation", checkpoint_uri(lake, app_id))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert query.exception() is None


def bronze_rows(spark: SparkSession, lake: Settings) -> int:
    """Alerts in the private lake's ZTF bronze table (the sample has one alert id twice: the copy is quarantined)."""
    return int(spark.read.format("delta").load(table_uri(lake, "bronze.ztf_alerts")).count())


def silver(spark: SparkSession, lake: Settings, version: int | None = None) -> pd.DataFrame:
    """silver.alerts of the private lake (at a Delta version if given), without history, sorted by alert id."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    frame = reader.load(table_uri(lake, enrich.SILVER)).drop("history").toPandas()
    return frame.sort_values("alert_id", ignore_index=True)


@pytest.fixture(scope="module")
def lake(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return services.model_copy(
        update={"lake_root": str(tmp_path_factory.mktemp("enrich-lake")), "trino_register": False}
    )


@pytest.fixture(scope="module")
def champions(services: Settings) -> dict[str, int]:
    """Every module registered, with a champion (registers the missing ones)."""
    return enrich.ensure_registered()


@pytest.fixture(scope="module")
def phase1(spark: SparkSession, lake: Settings, champions: dict[str, int]) -> dict[str, Any]:
    """Simulate one copy of the sample onto NIGHT, ingest it, enrich it with the champions."""
    from alertlake.simulate import simulate

    topic = f"test-enrich-{uuid.uuid4().hex[:8]}"
    simulate(lake, "ztf", topic=topic, loops=1, night=NIGHT, drop_cutouts=True)
    ingest(spark, lake, topic, "ingest_test_enrich")
    summary = enrich.run(lake, surveys=["ztf"], trigger="available-now", spark=spark)
    return {"topic": topic, "bronze": bronze_rows(spark, lake), "summary": summary, "silver": silver(spark, lake)}


def test_every_alert_enriched_with_provenance(phase1: dict[str, Any], champions: dict[str, int]) -> None:
    rows = phase1["silver"]
    assert len(rows) == phase1["bronze"] == phase1["summary"]["rows"] > 200
    assert rows["alert_id"].is_unique
    assert set(rows["night"]) == {NIGHT}
    for name in MODULES:
        assert (rows[f"{name}_version"] == champions[name]).all(), name
        assert (rows[f"{name}_model_uri"] == f"models:/{name}/{champions[name]}").all(), name
        assert rows[f"{name}_error"].isna().all(), f"{name} failed: {rows[f'{name}_error'].dropna().unique()}"
    assert rows["kafka_timestamp"].notna().all()
    assert rows["enrich_batch"].str.startswith("enrich_ztf:").all()
    assert rows["enrich_time"].notna().all()
    passed = rows[rows["quality_pass"]]
    failed = rows[~rows["quality_pass"]]
    assert len(passed) > 0.5 * len(rows)
    assert (failed["quality_reason"] != "").all() and (passed["quality_reason"] == "").all()
    # Science ran on every alert that passed the cuts, and only there.
    assert passed["supernova_score"].between(0, 1).all() and passed["anomaly_score"].between(0, 1).all()
    assert passed["features_n_det_all_bands"].notna().all()
    assert failed["supernova_score"].isna().all()
    assert passed["xmatch_vsx_type"].notna().sum() > 0  # the sample holds known variable stars


def test_every_batch_is_gated_from_the_figures_aggregation(phase1: dict[str, Any], lake: Settings) -> None:
    from alertlake import quality

    rows = phase1["silver"]
    checked = {b.batch_key: b for b in quality.batches(lake, table=enrich.SILVER)}
    per_batch = rows.groupby("enrich_batch").size()
    for key, count in per_batch.items():
        assert checked[key].rows == count and checked[key].status in (quality.PASSED, quality.HELD), key
    results = quality.read_table(lake, quality.RESULTS).to_pylist()
    assert {r["batch_key"] for r in results} >= set(per_batch.index)
    assert all(Path(checked[k].gx_result or "").exists() for k in per_batch.index)


def test_rerun_from_scratch_writes_nothing_twice(phase1: dict[str, Any], spark: SparkSession, lake: Settings) -> None:
    # A lost checkpoint: the stream re-reads all of bronze; the keyed insert writes no row a second time.
    summary = enrich.run(lake, surveys=["ztf"], trigger="available-now", spark=spark, name_suffix="_fresh")
    assert summary["rows"] == phase1["bronze"]  # computed again...
    assert len(silver(spark, lake)) == phase1["bronze"]  # ...written once


def test_module_failure_gives_null_outputs_and_error_code_and_the_stream_goes_on(
    phase1: dict[str, Any], spark: SparkSession, lake: Settings
) -> None:
    from alertlake.simulate import simulate

    # Copy 0 again (already in bronze: quarantined as duplicates), then copy 1: new alert ids.
    simulate(lake, "ztf", topic=phase1["topic"], loops=2, night=NIGHT, drop_cutouts=True)
    ingest(spark, lake, phase1["topic"], "ingest_test_enrich")
    added = bronze_rows(spark, lake) - phase1["bronze"]
    summary = enrich.run(lake, surveys=["ztf"], trigger="available-now", fault_drill=["supernova"], spark=spark)
    assert summary["rows"] == added > 200
    assert summary["module_errors"]["supernova"] > 0
    rows = silver(spark, lake)
    new = rows[~rows["alert_id"].isin(phase1["silver"]["alert_id"])]
    assert len(new) == added and len(rows) == phase1["bronze"] + added
    passed = new[new["quality_pass"]]
    assert (passed["supernova_error"] == "InjectedFault").all()
    assert passed["supernova_score"].isna().all() and passed["supernova_flag"].isna().all()
    assert new["supernova_version"].notna().all()  # provenance even on failed rows
    # The other modules, and later batches, are unaffected.
    assert passed["anomaly_score"].notna().all() and passed["features_error"].isna().all()
    assert phase1["silver"]["supernova_error"].isna().all()


@pytest.fixture(scope="module")
def pinned_sso(services: Settings) -> int:
    """A new sso version with other parameters, registered without an alias: only a pin selects it."""
    from alertlake.modules_cli import register_module

    return int(register_module("sso", params={"max_distance_arcsec": 1.0})["version"])


def test_replay_with_a_pinned_version_is_reproducible(
    spark: SparkSession, lake: Settings, pinned_sso: int, champions: dict[str, int]
) -> None:
    before = silver(spark, lake)
    first = enrich.replay_enrich(NIGHT, [f"sso@{pinned_sso}"], settings=lake, spark=spark)
    after = silver(spark, lake)
    assert first["versions"]["sso"] == pinned_sso and first["versions"]["supernova"] == champions["supernova"]
    assert len(after) == len(before) and set(after["alert_id"]) == set(before["alert_id"])
    assert (after["sso_version"] == pinned_sso).all()
    assert (after["sso_model_uri"] == f"models:/sso/{pinned_sso}").all()
    assert after["supernova_error"].isna().all()  # the fault drill's rows are recomputed
    # The previous result stays readable by time travel.
    previous = silver(spark, lake, version=first["previous_version"])
    pd.testing.assert_frame_equal(previous, before)
    assert (previous["supernova_error"] == "InjectedFault").any()

    second = enrich.replay_enrich(NIGHT, [f"sso@{pinned_sso}"], settings=lake, spark=spark)
    assert second["version"] == first["version"] + 1
    again = silver(spark, lake)
    pd.testing.assert_frame_equal(again.drop(columns=list(VOLATILE)), after.drop(columns=list(VOLATILE)))
    assert set(again["enrich_batch"]) == {second["enrich_batch"]}


def test_mlflow_unreachable_fails_fast_naming_the_url(lake: Settings) -> None:
    down = lake.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    with pytest.raises(registry.MlflowUnreachable, match=r"http://127\.0\.0\.1:9"):
        enrich.run(down, surveys=["ztf"])


def test_every_python_worker_holds_the_modules_after_loading_them_everywhere(
    spark: SparkSession, lake: Settings, champions: dict[str, int]
) -> None:
    refs = enrich.resolve_modules(lake, fault_drill=["supernova"])
    first_rounds, first_workers = enrich.load_on_every_worker(spark, refs, max_rounds=8)
    assert first_rounds < 8 and first_workers >= 2  # two task slots: at least two workers
    # A second pass meets only workers that had every module already, so it stops after one round.
    assert enrich.load_on_every_worker(spark, refs)[0] == 1
