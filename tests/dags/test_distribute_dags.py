"""The distribution DAG: its shape, and a real run (silver of real alerts -> topics -> per-filter counts)."""

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

    bag = DagBag(dag_folder=str(DAGS / "alertlake_distribute.py"))
    assert bag.import_errors == {}
    return bag.get_dag("alertlake_distribute")


def test_distribute_dag_shape() -> None:
    dag = _dag()
    assert "alertlake" in dag.tags and dag.description
    assert set(dag.task_ids) == {"distribute", "filter_counts"}
    assert dag.get_task("distribute").downstream_task_ids == {"filter_counts"}
    assert dag.get_task("distribute").retries == 6


@pytest.mark.integration
def test_distribute_dag_runs_and_counts_per_filter(services: Settings, tmp_path: Path) -> None:
    from airflow.utils.state import DagRunState

    from alertlake.spark import build_spark
    from tests.integration.test_distribute import lake_settings, write_silver

    settings = lake_settings(services, tmp_path / "lake")
    spark = build_spark(settings, "alertlake-dag-tests", {"spark.ui.enabled": "false"})
    write_silver(spark, settings, copies=1)
    suffix = f".test-{uuid.uuid4().hex[:8]}"
    env = {
        "ALERTLAKE_LAKE_ROOT": settings.lake_root,
        "ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX": suffix,
        "ALERTLAKE_TRINO_REGISTER": "false",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from alertlake.settings import get_settings

    get_settings.cache_clear()
    try:
        run = _dag().test()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
    assert run.state == DagRunState.SUCCESS
    counts = next(ti for ti in run.get_task_instances() if ti.task_id == "filter_counts").xcom_pull()
    # The six real filters on the real sample (see tests/unit/test_filters.py for the alert ids).
    assert {k: v["total"] for k, v in counts.items()} == {
        "early_sn_candidate": 5,
        "new_object": 19,
        "sn_candidate": 13,
        "solar_system": 7,
        "top_anomaly": 7,
        "variable_star_brightening": 9,
    }
