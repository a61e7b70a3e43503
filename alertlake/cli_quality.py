"""``alertlake quality ...``: held batches and their release, full suites per night, reports and Data Docs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Data quality: gate verdicts, releases, nightly suites, reports.", no_args_is_help=True)
console = Console()


@app.command()
def release(
    batch_key: Annotated[str, typer.Argument(help="The held batch, e.g. enrich:42 (see `held`)")],
    reason: Annotated[str, typer.Option(help="What was fixed, or why the failures are acceptable")],
    table: Annotated[str, typer.Option(help="Table of the batch")] = "silver.alerts",
) -> None:
    """Release a held batch: its alerts become distributable."""
    from alertlake import quality
    from alertlake.settings import get_settings

    try:
        status = quality.release(get_settings(), batch_key, reason, table=table)
    except (LookupError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"released {status.table} batch {status.batch_key} ({status.rows} rows): {reason}")


@app.command()
def held() -> None:
    """List the batches the gate holds."""
    from alertlake import quality
    from alertlake.settings import get_settings

    batches = quality.held(get_settings())
    table = Table("table", "batch", "rows", "checked at", "critical failures")
    for b in batches:
        table.add_row(b.table, b.batch_key, str(b.rows), b.checked_at.isoformat(), "\n".join(b.critical_failures))
    console.print(table if batches else "no held batches")


@app.command()
def validate(
    night: Annotated[str, typer.Option(help="Observing night YYYY-MM-DD")],
    table: Annotated[list[str] | None, typer.Option(help="Table(s), e.g. silver.alerts; default every table")] = None,
) -> None:
    """Run the full GX suites over one night; exits 1 when a critical expectation failed."""
    from alertlake import quality
    from alertlake.settings import get_settings
    from alertlake.spark import build_spark

    settings = get_settings()
    with console.status("starting Spark"):
        spark = build_spark(settings, "alertlake-quality-validate")
    names = table or [t for t in quality.SUITE_TABLES if quality.table_exists(settings, t)]
    failed = False
    for name in names:
        with console.status(f"validating {name} {night}"):
            verdict = quality.validate_night(spark, settings, name, night)
        failed |= bool(verdict.critical_failures)
        mark = "[red]FAILED[/red]" if verdict.critical_failures else "[green]ok[/green]"
        console.print(f"{name} {night}: {mark} ({verdict.rows} rows, {len(verdict.warnings)} warnings)")
        for line in verdict.critical_failures + verdict.warnings:
            console.print(f"  {line}")
    if failed:
        raise typer.Exit(1)


@app.command()
def report(night: Annotated[str, typer.Option(help="Observing night YYYY-MM-DD")]) -> None:
    """Write the nightly quality report (HTML with plots) and print its path."""
    from alertlake.report import nightly_report
    from alertlake.settings import get_settings

    with console.status(f"building the report of {night}"):
        path = nightly_report(get_settings(), night)
    console.print(str(path))


@app.command()
def docs() -> None:
    """Build the GX Data Docs site and print its index."""
    from alertlake.quality import build_data_docs
    from alertlake.settings import get_settings

    with console.status("building Data Docs"):
        path = build_data_docs(get_settings())
    console.print(str(path))
