"""The data-quality DAGs load, and the release DAG really releases a held batch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from alertlake.settings import Settings

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_quality_dags_load() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "alertlake_quality.py"))
    assert bag.import_errors == {}
    nightly = bag.get_dag("alertlake_quality_nightly")
    assert nightly is not None and "alertlake" in nightly.tags and nightly.description
    assert set(nightly.task_ids) == {"validate_tables", "reconcile_night", "write_report", "build_docs"}
    release = bag.get_dag("alertlake_quality_release")
    assert release is not None and set(release.params.keys()) >= {"batch_key", "reason"}


@pytest.mark.integration
def test_release_dag_releases_a_held_batch(services: Settings) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    from alertlake import quality
    from alertlake.settings import get_settings

    settings = get_settings()
    key = f"test_release_dag:{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    quality._merge_batch(
        settings,
        {
            "table": "test_quality.release_dag",
            "batch_key": key,
            "status": quality.HELD,
            "rows": 1,
            "critical_failures": ["injected by the DAG test"],
            "warnings": [],
            "checked_at": dt.datetime.now(dt.UTC),
        },
    )
    dag = DagBag(dag_folder=str(DAGS / "alertlake_quality.py")).get_dag("alertlake_quality_release")
    run = dag.test(run_conf={"batch_key": key, "reason": "DAG test", "table": "test_quality.release_dag"})
    assert run.state == DagRunState.SUCCESS
    (status,) = [b for b in quality.batches(settings, table="test_quality.release_dag") if b.batch_key == key]
    assert status.status == quality.RELEASED and status.released_by == "airflow"
