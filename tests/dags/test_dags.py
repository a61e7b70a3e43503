"""Every DAG file imports cleanly, and the platform DAG really runs against the local services."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertlake.settings import Settings

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_dagbag_has_no_import_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert "alertlake_platform" in bag.dag_ids
    for dag_id, dag in bag.dags.items():
        assert dag.tags and "alertlake" in dag.tags, f"{dag_id} has no 'alertlake' tag"
        assert dag.description, f"{dag_id} has no description"


@pytest.mark.integration
def test_platform_dag_runs(services: Settings) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    dag = DagBag(dag_folder=str(DAGS)).get_dag("alertlake_platform")
    run = dag.test()
    assert run.state == DagRunState.SUCCESS
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"check_services": "success", "sync_trino_tables": "success"}
