"""``alertlake consume``: read AlertLake's filter streams, see them live, save them.

Wired into the ``alertlake`` command by ``alertlake/cli.py``; also runnable alone (``python -m alertlake.cli_consume``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

app = typer.Typer(help="Read AlertLake's filter streams.", no_args_is_help=True)
console = Console()

EXAMPLES = """
Examples:

  alertlake consume --list
  alertlake consume alertlake.ztf.early_sn_candidate --max-alerts 10
  alertlake consume alertlake.ztf.sn_candidate alertlake.lsst.sn_candidate --group my-team --save sn.parquet
  alertlake consume alertlake.ztf.solar_system --from-time 2026-01-05T00:00:00 --max-seconds 60 --save sso.avro
  alertlake consume alertlake.ztf.top_anomaly --partition 0 --offset 120 --max-alerts 5
"""


def _summary(counts: Counter[str], last: dict[str, dict[str, Any]], started: float) -> Table:
    elapsed = max(time.monotonic() - started, 1e-6)
    table = Table(title=f"AlertLake streams: {sum(counts.values())} alerts in {elapsed:.0f} s")
    for col in ("topic", "alerts", "alerts/s", "last object", "last mjd", "band", "mag", "supernova", "anomaly"):
        table.add_column(col, justify="right" if col not in ("topic", "last object", "band") else "left")
    for topic in sorted(counts):
        a = last[topic]

        def num(key: str, fmt: str = ".3f", alert: dict[str, Any] = a) -> str:
            value = alert.get(key)
            return format(value, fmt) if isinstance(value, int | float) else "-"

        table.add_row(
            topic,
            str(counts[topic]),
            f"{counts[topic] / elapsed:.1f}",
            str(a.get("object_id", "-")),
            num("mjd", ".5f"),
            str(a.get("band", "-")),
            num("mag", ".2f"),
            num("supernova_score"),
            num("anomaly_score"),
        )
    return table


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


@app.command(epilog=EXAMPLES)
def consume(
    topics: Annotated[
        list[str] | None,
        typer.Argument(help="Topics to read, e.g. alertlake.ztf.early_sn_candidate (see --list)", show_default=False),
    ] = None,
    list_topics: Annotated[bool, typer.Option("--list", help="List the available AlertLake streams and exit")] = False,
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group: reading resumes where this group stopped last time (default: a new one)"),
    ] = None,
    offset_reset: Annotated[
        str, typer.Option(help="Where a new group starts: 'earliest' (all kept alerts) or 'latest' (only new ones)")
    ] = "earliest",
    from_time: Annotated[
        str | None,
        typer.Option(help="Replay from this time: ISO (UTC unless given, e.g. 2026-01-05T03:00) or epoch ms"),
    ] = None,
    partition: Annotated[int | None, typer.Option(help="With --offset: the partition to read (one topic only)")] = None,
    offset: Annotated[int | None, typer.Option(help="Start at this offset of --partition (one topic only)")] = None,
    max_alerts: Annotated[int | None, typer.Option(help="Stop after this many alerts")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    idle_seconds: Annotated[
        float | None, typer.Option(help="Stop when no alert arrived for this many seconds (default: never)")
    ] = None,
    save: Annotated[
        Path | None, typer.Option(help="Save the alerts to this file: .avro (one schema, the stream's) or .parquet")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No live table, only the final counts")] = False,
) -> None:
    """Read AlertLake filter streams (Fink's convention: Avro schema in the key, schemaless Avro value),
    show a live summary per topic, and optionally save the alerts.

    Connection settings come from ALERTLAKE_KAFKA_* environment variables (bootstrap servers, SASL user and
    password). Stops on Ctrl-C or when a limit is reached.
    """
    from alertlake.consume import (
        AlertWriter,
        ConsumeError,
        ConsumeOptions,
        check_topics,
        iter_alerts,
        iter_from_offset,
        list_streams,
        parse_time,
        seek_offset,
    )
    from alertlake.settings import get_settings

    settings = get_settings()
    try:
        if list_topics:
            for topic in list_streams(settings):
                console.print(topic)
            return
        if not topics:
            _fail("give at least one topic, or --list to see the available streams")
        assert topics is not None
        writer = AlertWriter(save) if save else None
        if (offset is None) != (partition is None):
            _fail("--offset and --partition go together")
        if offset is not None and partition is not None:
            if len(topics) != 1:
                _fail("--offset reads one topic: give exactly one")
            seek_offset(settings, topics[0], partition, offset)
            stream = iter_from_offset(settings, topics[0], partition, offset, max_alerts, idle_seconds or 5.0)
        else:
            options = ConsumeOptions(
                topics=topics,
                group_id=group,
                offset_reset=offset_reset,
                from_time=parse_time(from_time) if from_time else None,
                max_alerts=max_alerts,
                max_seconds=max_seconds,
                idle_seconds=idle_seconds,
            )
            stream = iter_alerts(settings, options)
        check_topics(settings, topics)  # unknown topics fail here, before the live table starts
        counts: Counter[str] = Counter()
        last: dict[str, dict[str, Any]] = defaultdict(dict)
        started = time.monotonic()
        try:
            with Live(_summary(counts, last, started), console=console, refresh_per_second=4, transient=quiet) as live:
                for received in stream:
                    counts[received.topic] += 1
                    last[received.topic] = received.alert
                    if writer:
                        writer.add(received)
                    if not quiet:
                        live.update(_summary(counts, last, started))
        except KeyboardInterrupt:
            pass
        if quiet:
            console.print(_summary(counts, last, started))
        if writer:
            console.print(f"saved {writer.close()} alerts to {save}")
    except ConsumeError as exc:
        _fail(str(exc))


def main() -> None:
    """Entry point when run alone."""
    app()


if __name__ == "__main__":
    main()
