"""The real-time pipeline (``jobs.pipeline``) on real Kafka, Spark/Delta and MLflow: survey topic -> bronze ->
silver -> filter topics in one micro-batch, exactly once, also when killed between sending and recording, or
between the filter streams and bronze.

Every test has its own survey topic (a unique topic prefix), its own lake (a temporary folder) and its own filter
topics (a unique ``.test-<id>`` suffix), so live streams and other tests are untouched.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from alertlake.filters import check_sql_with_spark, load_filters, selected_ids, sql_flag_columns
from alertlake.lake import delta_location_of, table_uri
from alertlake.settings import REPO_ROOT, Settings
from alertlake.simulate import Summary, simulate
from jobs import enrich
from tests.integration.test_distribute import finish, read_topics

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

NIGHT = "2026-11-21"


@pytest.fixture(scope="module")
def champions(services: Settings) -> dict[str, int]:
    """Every module registered, with a champion (registers the missing ones)."""
    return enrich.ensure_registered()


@pytest.fixture
def stream(services: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """A private lake, survey topic prefix and filter-topic suffix; the topics are deleted afterwards."""
    from alertlake.kafka import admin

    tag = uuid.uuid4().hex[:8]
    settings = services.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "topic_prefix": f"test-pipeline-{tag}-",
            "trino_register": False,  # a throw-away lake is never registered in the shared catalog
        }
    )
    suffix = f".test-{tag}"
    yield settings, suffix
    client = admin(services)
    mine = [t for t in client.list_topics(timeout=10).topics if t.endswith(suffix) or tag in t]
    if mine:
        for future in client.delete_topics(mine).values():
            future.result(timeout=30)


def run_pipeline(
    settings: Settings, suffix: str, *extra: str, env: dict[str, str] | None = None, bronze: str = "lander"
) -> Any:
    """Start ``python -m jobs.pipeline`` for ZTF, bounded, on the private lake and topics, by default with the
    bronze lander that continuous runs have (bounded runs append bronze in line by default)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.pipeline",
            "--survey",
            "ztf",
            "--trigger",
            "available-now",
            "--topic-suffix",
            suffix,
            "--no-trino",
            f"--bronze={bronze}",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "ALERTLAKE_LAKE_ROOT": settings.lake_root,
            "ALERTLAKE_TOPIC_PREFIX": settings.topic_prefix,
            "ALERTLAKE_TRINO_REGISTER": "false",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def table(spark: SparkSession, settings: Settings, name: str) -> pd.DataFrame:
    return spark.read.format("delta").load(table_uri(settings, name)).drop("history").toPandas()


def expected_messages(spark: SparkSession, settings: Settings, suffix: str) -> Counter[tuple[str, int]]:
    """(topic, alert id) of every message the real filters must produce from what is in silver: each once."""
    silver = spark.read.format("delta").load(table_uri(settings, enrich.SILVER))
    filters = check_sql_with_spark(spark, load_filters(), silver.schema)
    flagged = silver.select("*", *sql_flag_columns(filters)).toPandas()
    surveys = dict(zip(flagged["alert_id"], flagged["survey"], strict=True))
    out: Counter[tuple[str, int]] = Counter()
    for name, ids in selected_ids(filters, flagged).items():
        for alert_id in ids:
            out[(filters[name].topic(surveys[alert_id], suffix), alert_id)] += 1
    return out


def parquet_files(settings: Settings, name: str) -> list[tuple[str, pq.FileMetaData]]:
    """Each Parquet file of Delta table ``name`` with its metadata (at least one file)."""
    files = DeltaTable(delta_location_of(table_uri(settings, name))).file_uris()
    assert files, name
    return [(path, pq.ParquetFile(path).metadata) for path in files]


def check_lake_and_topics(spark: SparkSession, settings: Settings, suffix: str, sent: Summary) -> None:
    """Every message in bronze or quarantine once, every bronze alert in silver once, every selected alert in
    its topics once and recorded once, one gold.objects row per object."""
    bronze = table(spark, settings, "bronze.ztf_alerts")
    quarantine = table(spark, settings, "bronze.quarantine")
    assert bronze["alert_id"].is_unique
    assert set(bronze["alert_id"]) == set(sent.alert_ids)
    reasons = Counter(quarantine["reason"])
    want = Counter(sent.bad_by_reason)
    want["duplicate_alert_id"] += len(sent.alert_ids) - len(set(sent.alert_ids))
    assert reasons == want
    # Bronze's table properties reach Spark's Parquet writer: its measurements are written without dictionaries.
    for path, meta in parquet_files(settings, "bronze.ztf_alerts"):
        chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        assert chunks and not any(chunk.has_dictionary_page for chunk in chunks), path
    # Silver's reach it per column: dictionaries for its strings (survey, band, a history entry's kind), never for
    # its measurements.
    for path, meta in parquet_files(settings, enrich.SILVER):
        columns = [meta.schema.column(c) for c in range(meta.num_columns)]
        strings = {column.path for column in columns if column.logical_type.type == "STRING"}
        chunks = [meta.row_group(0).column(c) for c in range(meta.num_columns)]
        with_dictionary = {chunk.path_in_schema for chunk in chunks if chunk.has_dictionary_page}
        assert {"survey", "history.list.element.kind"} <= with_dictionary <= strings, (path, with_dictionary)

    silver = table(spark, settings, enrich.SILVER)
    assert silver["alert_id"].is_unique
    assert set(silver["alert_id"]) == set(bronze["alert_id"])
    assert silver["enrich_batch"].str.startswith("pipeline_ztf:").all()
    batches = table(spark, settings, "quality.batches")
    assert set(silver["enrich_batch"]) <= set(batches["batch_key"])

    expected = expected_messages(spark, settings, suffix)
    topics = sorted({t for t, _ in expected})
    assert len(topics) >= 6, topics
    assert read_topics(settings, topics) == expected  # every message exactly once, in every topic
    hits = table(spark, settings, "gold.filter_hits")
    assert Counter(zip(hits["topic"], hits["alert_id"], strict=True)) == expected
    assert (hits["distribute_app"] == "pipeline_ztf").all()

    objects = table(spark, settings, "gold.objects")
    assert objects.groupby(["survey", "object_id"]).size().max() == 1
    assert len(objects) == silver.groupby(["survey", "object_id"]).ngroups
    assert objects["n_alerts"].sum() == len(silver)


def test_pipeline_end_to_end_and_killed_twice(
    spark: SparkSession, champions: dict[str, int], stream: tuple[Settings, str]
) -> None:
    """One run killed between sending a batch and recording it, a second killed after that batch's silver rows,
    messages and checkpoint commit and before its bronze rows (appended behind the pipeline by its lander), a
    third to the end with its lander killed between an append and the removal of its marker, then gold.objects by
    its own process (as the real-time DAG runs it): every stage exactly once, nothing lost, nothing duplicated."""
    settings, suffix = stream
    sent = simulate(settings, "ztf", loops=3, night=NIGHT, bad=True, drop_cutouts=True, keep_ids=True)
    # Bronze in line here (a bounded run's default): no lander JVM to start for a run that is killed before
    # bronze matters; the next runs, with their lander, take over its checkpoint.
    fault = {"ALERTLAKE_INGEST_WARM_UP_ALERTS": "0", "ALERTLAKE_DISTRIBUTE_FAULT": "after-send:2"}
    proc = run_pipeline(settings, suffix, "--max-offsets", "300", "--no-objects", env=fault, bronze="inline")
    out = finish(proc)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert "fault injection" in out
    # Batch 2 is in Kafka, but not in gold.filter_hits, silver or bronze (the filter streams go first).
    hits = table(spark, settings, "gold.filter_hits")
    assert len(hits) and 2 not in set(hits["distribute_batch"])
    assert 2 not in set(table(spark, settings, "bronze.ztf_alerts")["ingest_batch"])

    # Bronze is appended behind the pipeline by its lander: both killed once Spark has committed batch 2 to the
    # checkpoint and before the lander appends it, so Spark will not replay it.
    fault = {"ALERTLAKE_INGEST_WARM_UP_ALERTS": "0", "ALERTLAKE_INGEST_FAULT": "before-bronze:2"}
    proc = run_pipeline(settings, suffix, "--max-offsets", "300", "--no-objects", env=fault)
    out = finish(proc)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert "killing the pipeline and the lander before bronze, batch 2" in out
    assert "found in Kafka; they will be recorded, not sent again" in out
    # Its checkpoint had batch 2 logged and not committed: silver was searched for that batch's alerts.
    assert "pipeline_ztf: batch 2 of a stopped run is run again: silver is searched for its alerts" in out
    # Batch 2, replayed, is now in Kafka, gold.filter_hits and silver, committed, still not in bronze: marked.
    assert 2 in set(table(spark, settings, "gold.filter_hits")["distribute_batch"])
    assert (table(spark, settings, enrich.SILVER)["enrich_batch"] == "pipeline_ztf:2").any()
    assert 2 not in set(table(spark, settings, "bronze.ztf_alerts")["ingest_batch"])
    checkpoints = Path(settings.lake_root) / "_checkpoints"
    assert (checkpoints / "pipeline_ztf" / "commits" / "2").exists()
    assert (checkpoints / "pipeline_ztf_bronze" / "2.json").exists()

    # More alerts (new ids), so that the next run's stream has batches for its lander whatever the last run did.
    more = simulate(settings, "ztf", loops=1, night=NIGHT, bad=True, drop_cutouts=True, keep_ids=True, first_copy=3)
    sent.alert_ids += more.alert_ids
    sent.bad_by_reason = dict(Counter(sent.bad_by_reason) + Counter(more.bad_by_reason))
    # The batches still marked are appended before the stream starts. The lander is killed after its first append
    # and before it removes that batch's marker: the pipeline starts another, which finds the batch in the lake.
    # A small warm-up (the default 2,000 alerts took 98 s on a slow machine): that it runs is what is checked.
    # Larger batches than the first runs' (which needed a batch 2): fewer of them for the rest of the alerts.
    env = {"ALERTLAKE_INGEST_WARM_UP_ALERTS": "250", "ALERTLAKE_INGEST_FAULT": "lander-after-bronze"}
    proc = run_pipeline(settings, suffix, "--max-offsets", "1500", "--no-objects", env=env)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    # The warm-up ran the stream's own query over 250 copies of the samples, into a scratch lake it removed; the
    # checks of the lake and the filter topics below find none of its alerts.
    assert "pipeline_ztf warmed up through its own query: 250 alerts of " in out, out[-3000:]
    assert not list((Path(settings.lake_root) / "_warm_up").glob("*"))
    assert "batch 2 went through the later stages and was committed" in out  # read again from Kafka
    assert "is run again" not in out  # batch 2 was committed: this run's first batch is new, silver not searched
    assert "killing the lander after bronze" in out
    assert "the bronze lander exited with code -9; starting it again" in out
    assert re.search(r"-> 0 bronze, 0 quarantine, [1-9]\d* already in the lake", out), out[-3000:]
    assert 2 in set(table(spark, settings, "bronze.ztf_alerts")["ingest_batch"])
    assert not list((checkpoints / "pipeline_ztf_bronze").glob("*.json"))
    # gold.objects is left to its own process (the real-time DAG runs it at low CPU priority).
    assert not (Path(settings.lake_root) / "gold" / "objects").exists()
    objects = subprocess.run(
        [sys.executable, "-m", "jobs.objects", "--trigger", "available-now", "--no-trino"],
        cwd=REPO_ROOT,
        env={**os.environ, "ALERTLAKE_LAKE_ROOT": settings.lake_root, "ALERTLAKE_TRINO_REGISTER": "false"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert objects.returncode == 0, objects.stdout[-3000:] + objects.stderr[-3000:]

    check_lake_and_topics(spark, settings, suffix, sent)
    silver = table(spark, settings, enrich.SILVER)
    for name, version in champions.items():  # provenance: the champion that ran, in every row
        assert (silver[f"{name}_version"] == version).all(), name


def test_the_in_memory_warm_up_runs_every_later_stage_and_sends_nothing(
    spark: SparkSession, stream: tuple[Settings, str], champions: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up used when the one through the stream's own query cannot run: the sample alerts go through
    enrichment, the gate's figures, the filters' selection and encoding, and silver's write into the warm-up's
    temporary folder (a keyed insert from the second round). Its stages log a warning and carry on if they fail,
    so a regression there would only show as a slower first batch: here no warning may be logged."""
    from jobs import distribute, ingest, pipeline

    settings, suffix = stream
    refs = enrich.resolve_modules(settings)
    enrichment = enrich.EnrichJob(settings, app_id="test-warm-up", refs=refs)
    enrichment.prepare()
    silver = spark.read.format("delta").load(table_uri(settings, enrich.SILVER))
    distribution = distribute.DistributeJob(
        settings, load_filters(columns=silver.columns), app_id="test-warm-up", topic_suffix=suffix
    )
    stages = pipeline.warm_up_stages(enrichment, distribution)
    written: list[int] = []

    def stages_then_count(accepted: Any, scratch: str | None) -> None:
        stages(accepted, scratch)
        assert scratch is not None  # local Spark: the warm-up has a temporary folder
        written.append(DeltaTable(f"{scratch}/silver").to_pyarrow_table(columns=["alert_id"]).num_rows)

    with caplog.at_level(logging.WARNING):
        ingest.warm_up(spark, "ztf", None, 200, rounds=2, downstream=stages_then_count, bronze=False)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(written) == 2 and written[0] > 0
    assert written[1] == written[0]  # the second round's keyed insert found every alert there already
    assert not distribution.counts and distribution._producer is None  # nothing sent, no producer made
    assert spark.read.format("delta").load(table_uri(settings, enrich.SILVER)).count() == 0  # the real silver untouched
