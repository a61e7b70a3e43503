"""Data quality: the nightly full suites, reconciliation, report and Data Docs; and the release of a held batch.

Thin on purpose: tasks import AlertLake inside their bodies so the DAG file parses in milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task


def _night() -> str:
    """The night to check: the ``night`` param, else the day before the run's logical date."""
    context = get_current_context()
    night = context["params"].get("night")
    if night:
        return str(night)
    logical = context.get("logical_date") or datetime.now()
    return (logical - timedelta(days=1)).date().isoformat()


@dag(
    dag_id="alertlake_quality_nightly",
    description="Full GX suites over last night's tables, Kafka-to-distribution reconciliation, report, Data Docs",
    schedule="0 18 * * *",  # after the ZTF night ends (Palomar morning) and before Rubin's begins
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "quality"],
    params={"night": Param(None, type=["null", "string"], description="Night YYYY-MM-DD; default yesterday")},
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
)
def alertlake_quality_nightly() -> None:
    @task
    def validate_tables() -> dict[str, Any]:
        """Runs every table's full suite over the night; critical failures are reported, not raised."""
        from alertlake import quality
        from alertlake.settings import get_settings
        from alertlake.spark import build_spark

        settings = get_settings()
        night = _night()
        spark = build_spark(settings, "alertlake-quality-nightly")
        verdicts = quality.validate_nights(spark, settings, night)
        return {v.table: {"status": v.status, "critical": v.critical_failures} for v in verdicts}

    @task
    def reconcile_night() -> dict[str, Any]:
        """Proves Kafka = bronze + quarantine and follows alerts to distribution; fails on a gap."""
        from alertlake.reconcile import reconcile
        from alertlake.settings import get_settings
        from alertlake.surveys import survey_names

        settings = get_settings()
        night = _night()
        reports = {s: reconcile(settings, s, night) for s in survey_names()}
        gaps = [r.render() for r in reports.values() if not r.ok]
        if gaps:
            raise RuntimeError("reconciliation found gaps:\n" + "\n".join(gaps))
        return {s: r.as_dict() for s, r in reports.items()}

    @task(trigger_rule="all_done")
    def write_report() -> str:
        """The nightly HTML report (written even when a check above failed: that is when it is read)."""
        from alertlake.report import nightly_report
        from alertlake.settings import get_settings

        return str(nightly_report(get_settings(), _night()))

    @task(trigger_rule="all_done")
    def build_docs() -> str:
        """Rebuilds the static GX Data Docs site."""
        from alertlake.quality import build_data_docs
        from alertlake.settings import get_settings

        return str(build_data_docs(get_settings()))

    [validate_tables(), reconcile_night()] >> write_report() >> build_docs()


@dag(
    dag_id="alertlake_quality_release",
    description="Releases a batch held by the data-quality gate, after a fix (params: batch_key, reason)",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["alertlake", "quality"],
    params={
        "batch_key": Param("", type="string", description="The held batch, e.g. enrich:42"),
        "reason": Param("", type="string", description="What was fixed, or why the failures are acceptable"),
        "table": Param("silver.alerts", type="string"),
    },
)
def alertlake_quality_release() -> None:
    @task
    def release_batch() -> dict[str, Any]:
        """Marks the batch released; the distribution job then sends its alerts."""
        from alertlake import quality
        from alertlake.settings import get_settings

        params = get_current_context()["params"]
        status = quality.release(
            get_settings(), params["batch_key"], params["reason"], released_by="airflow", table=params["table"]
        )
        return {"batch_key": status.batch_key, "status": status.status, "rows": status.rows}

    release_batch()


alertlake_quality_nightly()
alertlake_quality_release()
