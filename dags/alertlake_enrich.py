"""Enrichment: whenever bronze changes, bring silver.alerts up to date (quality cuts + science modules).

Scheduled on the bronze tables' Assets (either survey's update starts a run); the bounded enrichment
(``availableNow``) resumes from its checkpoint, so a run only processes what arrived since the last one.
Thin on purpose: AlertLake is imported inside the tasks so the file parses in milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

from alertlake.lake import asset_uri

BRONZE_ZTF = Asset(asset_uri("bronze.ztf_alerts"))
BRONZE_LSST = Asset(asset_uri("bronze.lsst_alerts"))
SILVER = Asset(asset_uri("silver.alerts"))


@dag(
    dag_id="alertlake_enrich",
    description="bronze -> silver.alerts: quality cuts and science modules (MLflow champions), with provenance",
    schedule=(BRONZE_ZTF | BRONZE_LSST),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "enrichment", "silver"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
)
def alertlake_enrich() -> None:
    @task
    def register_modules() -> dict[str, int]:
        """Registers as champion any science module that has none yet; returns each module's champion version."""
        from alertlake.settings import REPO_ROOT

        _importable(str(REPO_ROOT))
        from jobs.enrich import ensure_registered

        return ensure_registered()

    @task(outlets=[SILVER])
    def enrich() -> dict[str, Any]:
        """Runs the bounded enrichment of every survey from its checkpoint; emits the silver Asset."""
        from alertlake.settings import REPO_ROOT

        _importable(str(REPO_ROOT))
        from jobs.enrich import run

        return run(trigger="available-now")

    register_modules() >> enrich()


def _importable(root: str) -> None:
    import sys

    if root not in sys.path:  # jobs/ lives beside the alertlake package
        sys.path.insert(0, root)


alertlake_enrich()
