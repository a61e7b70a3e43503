"""``alertlake sql``: run one SQL statement on Trino, print it as a table, optionally save it as CSV or Parquet.

    alertlake sql "SELECT night, count(*) FROM lake.silver.alerts GROUP BY night"
    alertlake sql --user scientist --password ... "SELECT * FROM lake.views.light_curves WHERE object_id = 'ZTF..'"
    alertlake sql --csv hits.csv "SELECT * FROM lake.views.filter_hits"

The query runs in catalog ``lake`` (so ``silver.alerts`` works as well as ``lake.silver.alerts``). User and
password default to the settings (``ALERTLAKE_TRINO_USER``, ``ALERTLAKE_TRINO_PASSWORD``). Errors from Trino are
shown with their name and message (no traceback), and the command exits with status 1.

The ``alertlake`` command exposes :func:`sql` as its ``sql`` sub-command; ``python -m alertlake.cli_sql`` runs it
on its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from alertlake.settings import get_settings

app = typer.Typer(help="Query the lake through Trino.", add_completion=False)
console = Console()
err_console = Console(stderr=True)


class QueryFailed(Exception):
    """A query could not run; the message says why in a user's terms."""


def run_query(sql_text: str, user: str | None = None, password: str | None = None) -> tuple[list[str], list[Any]]:
    """Run ``sql_text`` on Trino and return (column names, rows); :class:`QueryFailed` with a clear message."""
    import requests
    from trino import exceptions as texc

    from alertlake.trino import connect

    settings = get_settings()
    who = user or settings.trino_user
    try:
        conn = connect(settings, user=user, password=password)
        try:
            cur = conn.cursor()
            cur.execute(sql_text)
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description or []]
        finally:
            conn.close()
    except texc.TrinoQueryError as exc:
        # Trino's own message (syntax error, missing table, access denied ...) is what the user needs.
        raise QueryFailed(f"{exc.error_name}: {exc.message}") from None
    except texc.TrinoAuthError as exc:
        raise QueryFailed(f"Trino refused the credentials of user '{who}': {exc}") from None
    except texc.HttpError as exc:
        text = str(exc)
        if "401" in text:
            text = (
                f"authentication failed for user '{who}' at {settings.trino_url}: check --user/--password "
                "(or ALERTLAKE_TRINO_USER / ALERTLAKE_TRINO_PASSWORD)"
            )
        raise QueryFailed(text) from None
    except (requests.ConnectionError, requests.Timeout, texc.TrinoConnectionError) as exc:
        raise QueryFailed(
            f"cannot reach Trino at {settings.trino_url} ({type(exc).__name__}); "
            "is it running? (`make services-status`)"
        ) from None
    except ValueError as exc:  # e.g. the client refusing a password over plain http
        raise QueryFailed(str(exc)) from None
    return columns, rows


def plain(value: Any) -> Any:
    """``value`` with Trino ROW values as dicts (field name -> value) and arrays as lists, recursively."""
    from trino.types import NamedRowTuple

    if isinstance(value, NamedRowTuple):
        names = value.__annotations__.get("names") or []
        return {(n or f"field{i}"): plain(v) for i, (n, v) in enumerate(zip(names, value, strict=False))}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def to_frame(columns: list[str], rows: list[Any]) -> Any:
    """The result as a pandas DataFrame (column names kept, even when duplicated; ROWs as dicts)."""
    import pandas as pd

    return pd.DataFrame([[plain(v) for v in r] for r in rows], columns=pd.Index(columns, dtype=object))


def export(columns: list[str], rows: list[Any], csv: Path | None, parquet: Path | None) -> list[Path]:
    """Write the result to the requested files; returns the paths written."""
    written = []
    frame = to_frame(columns, rows)
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        flat = frame.copy()
        for i in range(flat.shape[1]):  # arrays and ROWs as JSON text, readable by any CSV consumer
            flat.iloc[:, i] = flat.iloc[:, i].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, dict | list) else v
            )
        flat.to_csv(csv, index=False)
        written.append(csv)
    if parquet is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if len(set(columns)) != len(columns):
            raise QueryFailed("Parquet needs distinct column names: give duplicated columns an alias (AS ...)")
        parquet.parent.mkdir(parents=True, exist_ok=True)
        try:
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise QueryFailed(f"cannot save the result as Parquet: {exc}") from None
        pq.write_table(arrow, parquet)
        written.append(parquet)
    return written


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]null[/]"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def render(columns: list[str], rows: list[Any], max_rows: int, seconds: float) -> Table:
    """A rich table of at most ``max_rows`` rows, with the count and the time in its caption."""
    table = Table(show_lines=False, header_style="bold cyan")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows[:max_rows]:
        table.add_row(*(_cell(v) for v in row))
    shown = f", {max_rows:,} shown" if len(rows) > max_rows else ""
    table.caption = f"{len(rows):,} row{'s' if len(rows) != 1 else ''}{shown} in {seconds:.2f} s"
    return table


def sql(
    query: Annotated[str, typer.Argument(help="SQL statement; '-' reads it from standard input")],
    user: Annotated[str | None, typer.Option(help="Trino user (default: ALERTLAKE_TRINO_USER)")] = None,
    password: Annotated[
        str | None, typer.Option(help="Trino password (default: ALERTLAKE_TRINO_PASSWORD)", envvar=None)
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also save the full result as CSV to this file")] = None,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", help="Also save the full result as Parquet to this file")
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows to print (exports always get every row)")] = 50,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no table (with --csv/--parquet)")] = False,
) -> None:
    """Run one SQL statement on the lake through Trino and print the result as a table."""
    text = sys.stdin.read() if query == "-" else query
    text = text.strip().rstrip(";")
    if not text:
        err_console.print("[bold red]error:[/] empty query")
        raise typer.Exit(2)
    start = time.perf_counter()
    try:
        with console.status("querying Trino ...", spinner="dots"):
            columns, rows = run_query(text, user, password)
        seconds = time.perf_counter() - start
        written = export(columns, rows, csv, parquet)
    except QueryFailed as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] cannot write {exc.filename}: {exc.strerror}")
        raise typer.Exit(1) from None
    if not quiet:
        console.print(render(columns, rows, max_rows, seconds))
    for path in written:
        console.print(f"saved {len(rows):,} rows to {path}")


app.command()(sql)


if __name__ == "__main__":
    app()
