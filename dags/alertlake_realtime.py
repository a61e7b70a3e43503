"""Real-time pipeline: survey topics -> bronze -> silver -> filter topics in one Spark app, supervised.

The low-latency way to run AlertLake (``jobs.pipeline``): each micro-batch of a survey topic is ingested,
enriched, gated and distributed before the next one, so an alert reaches its streams seconds after the survey
sent it. It replaces the ingestion, enrichment and distribution streams for the surveys it runs: run either
this DAG or those three, not both. Each run keeps the pipeline up for ``minutes`` (continuous) or catches up on
what Kafka holds (``available-now``); a failure is retried with exponential backoff, and every stage is exactly
once across restarts. The count task logs per-filter message counts and pushes them to XCom.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from alertlake.lake import asset_uri
from alertlake.surveys import survey_names

BRONZE = [Asset(asset_uri(f"bronze.{s}_alerts")) for s in survey_names()]
SILVER = Asset(asset_uri("silver.alerts"))
FILTER_HITS = Asset(asset_uri("gold.filter_hits"))
OBJECTS = Asset(asset_uri("gold.objects"))


@dag(
    dag_id="alertlake_realtime",
    description="survey topics -> bronze -> silver -> filter topics per micro-batch in one Spark app (low latency)",
    # Production sets ALERTLAKE_REALTIME_SCHEDULE=@hourly (each run keeps the pipeline up for `minutes`); the
    # local stack triggers it on demand.
    schedule=os.environ.get("ALERTLAKE_REALTIME_SCHEDULE") or None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "ingestion", "enrichment", "distribution"],
    params={
        "mode": Param("continuous", enum=["continuous", "available-now"], description="how to run"),
        "minutes": Param(55, type="integer", minimum=1, description="continuous: length of this run's window"),
        "surveys": Param(survey_names(), type="array", description="surveys to run"),
    },
)
def alertlake_realtime() -> None:
    @task(
        retries=6,
        retry_delay=timedelta(seconds=20),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=10),
        outlets=[*BRONZE, SILVER, FILTER_HITS, OBJECTS],
    )
    def pipeline(params: dict | None = None) -> float:
        """Runs the pipeline; its log shows each batch's stages (bronze, silver, messages per filter, timings)."""
        from alertlake.jobrun import run_job

        params = params or {}
        args = [a for s in params.get("surveys") or survey_names() for a in ("--survey", s)]
        if params.get("mode", "continuous") == "continuous":  # gold.objects: the `objects` task beside it
            args += ["--trigger", "continuous", "--timeout", str(int(params.get("minutes", 55)) * 60), "--no-objects"]
        else:  # bounded: the pipeline MERGEs gold.objects itself once its batches are in silver
            args += ["--trigger", "available-now"]
        return run_job("jobs.pipeline", args)

    @task(
        retries=6,
        retry_delay=timedelta(seconds=20),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=10),
        outlets=[OBJECTS],
    )
    def objects(params: dict | None = None) -> float:
        """Keeps gold.objects current (``jobs.objects``: new silver versions MERGEd every 30 s, no Spark) in a
        process of its own at the lowest CPU priority, beside the pipeline, so it never takes the pipeline's CPU.
        Bounded runs leave it to the pipeline task (nothing to do here)."""
        from alertlake.jobrun import run_job

        params = params or {}
        if params.get("mode", "continuous") != "continuous":
            print("bounded run: the pipeline task MERGEs gold.objects itself after its batches")
            return 0.0
        minutes = str(int(params.get("minutes", 55)) * 60)
        args = ["--interval", "30 seconds", "--trigger", "continuous", "--timeout", minutes]
        return run_job("jobs.objects", args, nice=19)

    @task
    def filter_counts(params: dict | None = None) -> dict[str, dict[str, int]]:
        """Messages per filter (total, and in the last 24 h) sent by the pipelines; returned to XCom."""
        from alertlake.settings import get_settings
        from jobs.distribute import filter_counts as counts
        from jobs.pipeline import app_id

        surveys = (params or {}).get("surveys") or survey_names()
        result = counts(get_settings(), apps=[app_id(s) for s in surveys])
        for name, c in sorted(result.items()):
            print(f"{name:32s} total {c['total']:8d}   last 24 h {c['last_24h']:8d}")
        return result

    pipeline() >> filter_counts()
    objects()


alertlake_realtime()
