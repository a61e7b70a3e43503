"""The ingestion and maintenance DAGs really run: simulator -> Kafka -> ingest task -> bronze + quarantine."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable

from alertlake.settings import Settings
from alertlake.simulate import simulate

DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = pytest.mark.integration


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).get_dag(dag_id)


def test_ingest_dag_catches_up_and_reconciles(
    services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.utils.state import DagRunState

    prefix = f"dagtest-{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("ALERTLAKE_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("ALERTLAKE_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("ALERTLAKE_INGEST_WARM_UP_ALERTS", "0")  # the DAG is under test, not the first batch's speed
    # The throw-away lake stays out of the shared catalog (it re-pointed lake.bronze.* at this test's folder).
    monkeypatch.setenv("ALERTLAKE_TRINO_REGISTER", "false")
    settings = Settings()
    sent = {s: simulate(settings, s, loops=1, night="2026-11-24", bad=True) for s in ("ztf", "lsst")}

    run = _dag("alertlake_ingest").test(run_conf={"mode": "available-now", "minutes": 1, "night": ""})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    assert set(states) == {"ingest_ztf", "ingest_lsst", "reconcile_ztf", "reconcile_lsst"}
    quarantine = DeltaTable(str(tmp_path / "lake" / "bronze" / "quarantine")).to_pandas(columns=["kafka_topic"])
    for survey, summary in sent.items():
        bronze = DeltaTable(str(tmp_path / "lake" / "bronze" / f"{survey}_alerts")).to_pandas(columns=["alert_id"])
        in_quarantine = int((quarantine["kafka_topic"] == f"{prefix}{survey}").sum())
        assert len(bronze) + in_quarantine == summary.alerts + summary.bad
        assert bronze["alert_id"].is_unique
        assert in_quarantine >= summary.bad  # every bad message, plus the sample's own repeated alert ids
        # The reconcile task counted this test's own topic, message by message (not a vacuous pass).
        ti = next(t for t in run.get_task_instances() if t.task_id == f"reconcile_{survey}")
        figures = ti.xcom_pull(task_ids=f"reconcile_{survey}")
        assert figures["kafka_messages"] == summary.alerts + summary.bad
        assert figures["bronze_rows"] + figures["quarantine_rows"] == figures["kafka_messages"]


def test_maintenance_dag_compacts(services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.utils.state import DagRunState

    from alertlake.spark import build_spark

    monkeypatch.setenv("ALERTLAKE_LAKE_ROOT", str(tmp_path / "lake"))
    settings = Settings()
    spark = build_spark(settings, "maintenance-test", {"spark.ui.enabled": "false"})
    uri = f"{settings.lake_uri}/quality/maintenance_test_{uuid.uuid4().hex[:8]}"  # a name of its own in Trino
    for i in range(4):  # four small appends: four files to compact
        spark.range(i * 10, i * 10 + 10).withColumnRenamed("id", "alert_id").write.format("delta").mode("append").save(
            uri
        )
    run = _dag("alertlake_maintenance").test(run_conf={"retention_hours": 168, "checkpoint_days": 7})
    assert run.state == DagRunState.SUCCESS
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{uri}`").collect()[0]
    assert detail["numFiles"] == 1
    assert spark.read.format("delta").load(uri).count() == 40
