"""The ``alertlake`` command: simulate streams, replay and reconcile the lake, query it.

Every sub-command reads the same settings (``ALERTLAKE_*`` environment variables) as the jobs and DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from alertlake.cli_consume import consume
from alertlake.cli_modules import app as modules_app
from alertlake.cli_modules import replay_enrich_command
from alertlake.cli_quality import app as quality_app
from alertlake.cli_sql import sql

app = typer.Typer(help="AlertLake: an astronomical alert broker on a lakehouse.", no_args_is_help=True)
replay_app = typer.Typer(help="Recompute a past night from its source, idempotently.", no_args_is_help=True)
app.add_typer(replay_app, name="replay")
app.add_typer(modules_app, name="modules")
app.add_typer(quality_app, name="quality")
app.command("sql", help="Run SQL on the lake through Trino (pretty table, --csv / --parquet export).")(sql)
app.command("consume", help="Subscribe to filter streams: live summary, save to Avro/Parquet.")(consume)
replay_app.command("enrich", help="Recompute a night of silver with pinned module versions.")(replay_enrich_command)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


@app.command()
def simulate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Avro alert files or folders (default: shared samples)")
    ] = None,
    survey: Annotated[str, typer.Option(help="Survey whose wire format to send: ztf or lsst")] = "ztf",
    topic: Annotated[str | None, typer.Option(help="Kafka topic (default: the survey's topic)")] = None,
    rate: Annotated[float, typer.Option(help="Alerts per second; 0 = as fast as possible")] = 0.0,
    loops: Annotated[int, typer.Option(help="How many times to replay the sample")] = 1,
    remap: Annotated[bool, typer.Option(help="Give every loop unique alert ids (consistent object ids)")] = True,
    night: Annotated[str | None, typer.Option(help="Move observation times onto this night (YYYY-MM-DD)")] = None,
    bad: Annotated[bool, typer.Option(help="Also send one message of every bad class per loop")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many good alerts")] = None,
    drop_cutouts: Annotated[bool, typer.Option(help="Send alerts without image stamps (scale tests)")] = False,
    first_copy: Annotated[int, typer.Option(help="Copy number of the first loop (0 = the sample's own ids)")] = 0,
) -> None:
    """Replay alert files into Kafka in the survey's real wire format."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from alertlake.settings import get_settings
    from alertlake.simulate import simulate as run

    settings = get_settings()
    with Progress(
        TextColumn("[bold]simulating[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("send", total=limit)
        try:
            summary = run(
                settings,
                survey,
                paths or [],
                topic,
                rate,
                loops,
                remap,
                night,
                bad,
                limit,
                drop_cutouts,
                first_copy=first_copy,
                progress=lambda n: progress.advance(task, n),
            )
        except (ValueError, KeyError, RuntimeError) as exc:
            _fail(str(exc))
            return
    table = Table(title=f"sent to {summary.topic} at {settings.kafka_bootstrap_servers}")
    for col in ("alerts", "bad messages", "MB", "seconds", "messages/s"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{summary.alerts:,}",
        f"{summary.bad:,}",
        f"{summary.megabytes:,.1f}",
        f"{summary.seconds:,.1f}",
        f"{summary.rate:,.0f}",
    )
    console.print(table)
    if summary.bad_by_reason:
        console.print(
            "bad messages by expected reason: "
            + ", ".join(f"{k}={v}" for k, v in sorted(summary.bad_by_reason.items()))
        )


@replay_app.command("ingest")
def replay_ingest(
    night: Annotated[str, typer.Option(help="Observing night YYYY-MM-DD (by Kafka timestamp)")],
    survey: Annotated[list[str] | None, typer.Option(help="Survey(s); default all")] = None,
) -> None:
    """Re-read a night from Kafka into bronze (bounded, idempotent: what is already there is skipped)."""
    from alertlake.surveys import survey_names
    from jobs import ingest

    for name in survey or survey_names():
        code = ingest.main(["--survey", name, "--replay-night", night])
        if code:
            raise typer.Exit(code)


@app.command()
def reconcile(
    night: Annotated[
        str | None, typer.Option(help="Observing night YYYY-MM-DD by Kafka timestamp; default all")
    ] = None,
    survey: Annotated[list[str] | None, typer.Option(help="Survey(s); default all")] = None,
) -> None:
    """Prove Kafka messages = bronze rows + quarantine rows, offset by offset."""
    from alertlake.reconcile import reconcile as run
    from alertlake.settings import get_settings
    from alertlake.surveys import survey_names

    failed = False
    for name in survey or survey_names():
        report = run(get_settings(), name, night)
        console.print(report.render())
        failed |= not report.ok
    if failed:
        raise typer.Exit(1)


@replay_app.command("filter")
def replay_filter(
    filter_name: Annotated[str, typer.Argument(help="The filter to replay (new or changed)")],
    night: Annotated[list[str], typer.Option(help="Night(s) YYYY-MM-DD of silver to replay")],
    topic_suffix: Annotated[str | None, typer.Option(help="Suffix of the separate replay topics")] = None,
) -> None:
    """Run a filter over past nights into separate replay topics; live streams are not touched."""
    from jobs.distribute import replay_filter_command

    replay_filter_command(filter_name, night, topic_suffix)


def main() -> None:
    """Entry point of the ``alertlake`` console script."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # jobs/ lives beside the package
    app()


if __name__ == "__main__":
    main()
