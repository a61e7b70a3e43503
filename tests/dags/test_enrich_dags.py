"""The enrichment and model-promotion DAGs: wiring (Assets, tags), and real runs with ``dag.test()``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertlake.lake import asset_uri
from alertlake.settings import Settings

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not {f: e for f, e in bag.import_errors.items() if "enrich" in f or "promotion" in f}
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not found in {DAGS}"
    return dag


def test_enrich_dag_follows_bronze_and_feeds_silver() -> None:
    dag = _dag("alertlake_enrich")
    assert "alertlake" in dag.tags and dag.description
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either survey's new bronze data starts a run
    assert {a.uri for a in condition.objects} == {asset_uri("bronze.ztf_alerts"), asset_uri("bronze.lsst_alerts")}
    outlets = {o.uri for o in dag.get_task("enrich").outlets}
    assert outlets == {asset_uri("silver.alerts")}


def test_promotion_dag_is_manual_with_parameters() -> None:
    dag = _dag("alertlake_model_promotion")
    assert "alertlake" in dag.tags and dag.description
    assert type(dag.timetable).__name__ == "NullTimetable"  # started by hand, with its parameters
    assert {"module", "challenger", "reference_night"} <= set(dag.params.keys())


@pytest.fixture
def private_lake(services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Tasks read the process settings: point them at an empty private lake for this test."""
    from alertlake.settings import get_settings

    monkeypatch.setenv("ALERTLAKE_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("ALERTLAKE_TRINO_REGISTER", "false")  # keep temp tables out of Trino
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.mark.integration
def test_enrich_dag_runs(private_lake: Settings) -> None:
    from airflow.utils.state import DagRunState

    run = _dag("alertlake_enrich").test()
    assert run.state == DagRunState.SUCCESS
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"register_modules": "success", "enrich": "success"}
    # The run created silver and checkpointed both surveys' queries in the private lake.
    assert any((private_lake.lake_path / "silver" / "alerts" / "_delta_log").glob("*.json"))
    for survey in ("ztf", "lsst"):
        assert (private_lake.lake_path / "_checkpoints" / f"enrich_{survey}").is_dir()


@pytest.mark.integration
def test_promotion_dag_promotes_a_challenger_that_passes(services: Settings) -> None:
    from airflow.utils.state import DagRunState
    from mlflow import MlflowClient

    from alertlake import modules as registry
    from alertlake.modules_cli import register_module

    challenger = register_module("sso", alias="challenger")["version"]
    run = _dag("alertlake_model_promotion").test(run_conf={"module": "sso", "challenger": str(challenger)})
    assert run.state == DagRunState.SUCCESS
    assert registry.describe("sso")["aliases"]["champion"] == challenger
    client = MlflowClient(services.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("alertlake-promotions")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], f"params.challenger_version = '{challenger}' and params.module = 'sso'"
    )
    assert runs and runs[0].data.tags["alertlake.passed"] == "True"
    assert runs[0].data.metrics["agreement.sso_flag"] == 1.0  # same code and parameters: same answers
