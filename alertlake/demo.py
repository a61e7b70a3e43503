"""``make demo``: the shared sample alerts through the whole broker, driven by the Airflow DAGs.

Simulates the ZTF and Rubin samples (with every class of bad message) onto one night in Kafka, then runs
ingest -> enrich -> quality -> distribute through Airflow's API exactly as an engineer would from the UI,
and prints what each stage holds, a Trino answer, messages read back from the filter topics and the URLs.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from alertlake.airflow_client import AirflowClient
from alertlake.settings import Settings

console = Console()

# In pipeline order. Enrichment and distribution are started by their upstream Assets (bronze, silver).
PIPELINE = ("alertlake_ingest", "alertlake_enrich", "alertlake_distribute", "alertlake_quality_nightly")
ASSET_TRIGGERED = ("alertlake_enrich", "alertlake_distribute")


def _secrets(settings: Settings) -> dict[str, str]:
    path = settings.state_dir / "secrets.json"
    data: dict[str, str] = json.loads(path.read_text())
    return data


def _stage(client: AirflowClient, dag_id: str, conf: dict[str, Any], since: str | None) -> dict[str, Any]:
    """Run one DAG: wait for the run its upstream Asset started, or trigger it; return the finished run."""
    started = time.monotonic()
    run_id = None
    while since is not None and time.monotonic() - started < 45:
        latest = client.latest_run(dag_id)
        if latest and latest["run_after"] > since:
            run_id = latest["dag_run_id"]
            console.print(f"  {dag_id}: started by its upstream Asset ({run_id})")
            break
        time.sleep(3)
    if run_id is None:
        run_id = client.trigger(dag_id, conf)
        console.print(f"  {dag_id}: triggered ({run_id})")
    run = client.wait(dag_id, run_id)
    console.print(f"  [green]{dag_id}: success[/] in {run.get('duration') or 0:.0f} s")
    return run


def counts_table(settings: Settings, nights: dict[str, str]) -> Table:
    """Rows per stage for tonight, read through Trino (each survey's night as its observatory counts it)."""
    from alertlake import trino

    tonight = " OR ".join(f"(survey = '{s}' AND night = '{n}')" for s, n in sorted(nights.items()))
    title = ", ".join(f"{s} {n}" for s, n in sorted(nights.items()))
    table = Table(title=f"AlertLake, tonight ({title}): rows per stage (via Trino)")
    for col in ("stage", "table", "rows"):
        table.add_column(col)
    queries = [
        (
            "bronze",
            f"lake.bronze.{s}_alerts",
            f"SELECT count(*) FROM lake.bronze.{s}_alerts WHERE night = '{n}'",
        )
        for s, n in sorted(nights.items())
    ]
    queries += [
        ("quarantine", "lake.bronze.quarantine", "SELECT count(*) FROM lake.bronze.quarantine"),
        ("silver", "lake.silver.alerts", f"SELECT count(*) FROM lake.silver.alerts WHERE {tonight}"),
        (
            "silver, passing quality cuts",
            "lake.silver.alerts",
            f"SELECT count(*) FROM lake.silver.alerts WHERE ({tonight}) AND quality_pass",
        ),
        ("distributed", "lake.gold.filter_hits", "SELECT count(*) FROM lake.gold.filter_hits"),
        ("objects", "lake.gold.objects", "SELECT count(*) FROM lake.gold.objects"),
    ]
    for stage, name, sql in queries:
        try:
            value = f"{trino.query(settings, sql)[0][0]:,}"
        except Exception as exc:  # noqa: BLE001 - show what is missing instead of stopping the demo
            value = f"n/a ({str(exc).splitlines()[0][:60]})"
        table.add_row(stage, name, value)
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    from alertlake.simulate import simulate
    from alertlake.surveys import get_survey
    from alertlake.surveys.canonical import observing_night

    settings = Settings()
    # Tonight, as each observatory counts nights: alerts observed now and sent now (as a survey does), so
    # the observation night and the Kafka-time night of the reconciliation are the same.
    now_mjd = dt.datetime.now(dt.UTC).timestamp() / 86400.0 + 40587.0
    nights = {s: observing_night(now_mjd, get_survey(s).observatory_longitude_deg) or "" for s in ("ztf", "lsst")}
    night = nights["ztf"]
    client = AirflowClient(settings, _secrets(settings)["airflow_admin"])

    console.rule("1. the survey streams: shared ZTF and Rubin samples, plus every class of bad message")
    for survey in ("ztf", "lsst"):
        # A copy number of its own per demo run: a second `make demo` sends alerts the lake has not seen.
        copy = int(time.time() // 60) % 10_000_000 + 1
        summary = simulate(settings, survey, loops=2, night=nights[survey], bad=True, first_copy=copy)
        console.print(
            f"  {survey}: {summary.alerts} alerts + {summary.bad} bad messages "
            f"({summary.megabytes:.1f} MB) -> topic {summary.topic}"
        )

    console.rule("2. the pipeline, run by Airflow")
    for dag_id in PIPELINE:
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)
    since: str | None = None
    confs: dict[str, dict[str, Any]] = {
        "alertlake_ingest": {"mode": "available-now", "night": night},
        "alertlake_enrich": {},
        "alertlake_distribute": {"mode": "available-now"},
        "alertlake_quality_nightly": {"night": night},
    }
    for dag_id in PIPELINE:
        run = _stage(client, dag_id, confs[dag_id], since if dag_id in ASSET_TRIGGERED else None)
        since = run.get("end_date")

    console.rule("3. what the lake holds")
    console.print(counts_table(settings, nights))
    _print_reconciliation(settings, nights)
    _print_science(settings, night)
    _print_streams(settings)
    _print_urls(settings)
    return 0


def _print_reconciliation(settings: Settings, nights: dict[str, str]) -> None:
    """Kafka offsets -> bronze + quarantine -> silver -> distributed for tonight, per survey, with any gap."""
    from alertlake.reconcile import reconcile

    console.print("[bold]Reconciliation across stages (alertlake quality reconcile):[/]")
    for survey, night in nights.items():
        report = reconcile(settings, survey, night)
        colour = "green" if report.ok else "red"
        console.print(f"[{colour}]{report.render()}[/]", highlight=False)


def _print_science(settings: Settings, night: str) -> None:
    from alertlake import trino

    sql = (
        "SELECT survey, object_id, round(supernova_score, 3) AS sn_score, round(anomaly_score, 3) AS anomaly, "
        f"xmatch_vsx_type FROM lake.silver.alerts WHERE night = '{night}' AND quality_pass "
        "ORDER BY supernova_score DESC NULLS LAST LIMIT 5"
    )
    console.print(f"[bold]A scientist's question in Trino:[/] {sql}")
    try:
        rows = trino.query(settings, sql)
    except Exception as exc:  # noqa: BLE001
        console.print(f"  [red]query failed:[/] {exc}")
        return
    table = Table("survey", "object_id", "sn_score", "anomaly", "vsx_type")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


def _print_streams(settings: Settings) -> None:
    """Read two alerts of each filter topic as the ``scientist`` stream user (SASL/SCRAM, ACL-checked)."""
    from alertlake.consume import ConsumeOptions, iter_alerts, list_streams
    from alertlake.filters import load_filters

    live = set(load_filters().topics().values())
    topics = [t for t in list_streams(settings) if t in live]
    console.print(
        f"[bold]Filter streams ({len(topics)} topics), read back as user 'scientist' on "
        f"{settings.kafka_sasl_bootstrap_servers}:[/]"
    )
    as_scientist = settings.kafka_stream_config("scientist")
    for topic in topics:
        options = ConsumeOptions(
            topics=[topic],
            group_id=f"scientist-demo-{int(time.time())}",
            max_alerts=2,
            idle_seconds=8,
            commit=False,
            extra=as_scientist,
        )
        alerts = list(iter_alerts(settings, options))
        console.print(f"  [cyan]{topic}[/]: {'no alert tonight' if not alerts else ''}")
        for got in alerts:
            shown = {k: got.alert.get(k) for k in ("alert_id", "object_id", "ra", "dec", "band", "mag")}
            console.print(
                "    " + " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            )


def _print_urls(settings: Settings) -> None:
    reports = settings.state_dir / "reports"
    table = Table(title="where to look")
    table.add_column("what")
    table.add_column("where")
    table.add_row("Airflow UI (user admin, password in .state/secrets.json)", settings.airflow_url)
    table.add_row("MLflow UI", settings.mlflow_tracking_uri)
    table.add_row("Trino UI", f"{settings.trino_url}/ui/")
    table.add_row("Great Expectations Data Docs", str(reports / "data_docs" / "index.html"))
    table.add_row(
        "nightly quality report",
        str(sorted(reports.glob("quality-*.html"))[-1])
        if reports.exists() and list(reports.glob("quality-*.html"))
        else str(reports),
    )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
