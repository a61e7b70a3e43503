"""The real-time pipeline DAG: its shape, and a real run (survey topic -> bronze -> silver -> filter topics)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from alertlake.settings import Settings

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "alertlake_realtime.py"))
    assert bag.import_errors == {}
    return bag.get_dag("alertlake_realtime")


def test_realtime_dag_shape() -> None:
    dag = _dag()
    assert "alertlake" in dag.tags and dag.description
    assert set(dag.task_ids) == {"pipeline", "filter_counts", "objects"}
    assert dag.get_task("pipeline").downstream_task_ids == {"filter_counts"}
    assert dag.get_task("pipeline").retries == 6
    assert {a.uri.rsplit("/", 2)[-1] for a in dag.get_task("pipeline").outlets} >= {"alerts", "filter_hits", "objects"}


@pytest.mark.integration
def test_realtime_dag_runs_the_pipeline_and_counts_per_filter(services: Settings, tmp_path: Path) -> None:
    from airflow.utils.state import DagRunState

    from alertlake.kafka import admin
    from alertlake.simulate import simulate
    from jobs.enrich import ensure_registered

    ensure_registered()
    tag = uuid.uuid4().hex[:8]
    prefix, suffix = f"test-realtime-{tag}-", f".test-{tag}"
    settings = services.model_copy(update={"lake_root": str(tmp_path / "lake"), "topic_prefix": prefix})
    sent = simulate(settings, "ztf", loops=1, night="2026-11-22", drop_cutouts=True)
    env = {
        "ALERTLAKE_LAKE_ROOT": settings.lake_root,
        "ALERTLAKE_TOPIC_PREFIX": prefix,
        "ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX": suffix,
        "ALERTLAKE_TRINO_REGISTER": "false",
        "ALERTLAKE_INGEST_WARM_UP_ALERTS": "0",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from alertlake.settings import get_settings

    get_settings.cache_clear()
    try:
        run = _dag().test(run_conf={"mode": "available-now", "minutes": 1, "surveys": ["ztf"]})
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        client = admin(services)
        mine = [t for t in client.list_topics(timeout=10).topics if tag in t]
        if mine:
            for future in client.delete_topics(mine).values():
                future.result(timeout=30)
    assert run.state == DagRunState.SUCCESS
    assert sent.alerts >= 200  # one copy of the ZTF sample
    counts = next(ti for ti in run.get_task_instances() if ti.task_id == "filter_counts").xcom_pull()
    # The six real filters on the real ZTF sample, as in the distribution DAG's test (the sample's ZTF alerts
    # through the whole pipeline select the same alerts as its silver rows written directly).
    assert set(counts) == {
        "early_sn_candidate",
        "new_object",
        "sn_candidate",
        "solar_system",
        "top_anomaly",
        "variable_star_brightening",
    }
    assert all(c["total"] > 0 for c in counts.values()), counts
    # Bounded runs MERGE gold.objects in the pipeline's own process: one row per object of the sample.
    from deltalake import DeltaTable

    objects = DeltaTable(str(tmp_path / "lake" / "gold" / "objects")).to_pandas(columns=["survey", "object_id"])
    silver = DeltaTable(str(tmp_path / "lake" / "silver" / "alerts")).to_pandas(columns=["survey", "object_id"])
    assert len(objects) == len(objects.drop_duplicates()) == len(silver.drop_duplicates()) > 0
