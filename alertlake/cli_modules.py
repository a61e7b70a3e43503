"""``alertlake modules list | register | promote | describe`` and ``alertlake replay enrich``: the typer commands.

Thin: each command calls :mod:`alertlake.modules_cli` (or :func:`jobs.enrich.replay_enrich`) and renders the
result with rich, or prints it as JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Science modules: list, register in MLflow, promote, describe.", no_args_is_help=True)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Every science module found under modules/, in the order the enrichment runs them."""
    from alertlake.modules_cli import list_modules

    rows = list_modules()
    if as_json:
        _print_json(rows)
        return
    table = Table(title="science modules (run order)")
    for col in ("name", "depends on", "inputs", "outputs", "note"):
        table.add_column(col, overflow="fold")
    for m in rows:
        table.add_row(
            m["name"],
            ", ".join(m["depends_on"]) or "-",
            ", ".join(m["inputs"]),
            ", ".join(f"{k}: {v}" for k, v in m["outputs"].items()),
            m["version_note"],
        )
    console.print(table)


@app.command("register")
def register_command(
    name: Annotated[str, typer.Argument(help="Module name (folder under modules/)")],
    alias: Annotated[
        str | None, typer.Option(help="Point this alias at the new version: champion or challenger")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Override a parameter: KEY=VALUE (VALUE parsed as JSON if it can be)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Build, validate on the real sample alerts and log the module as a new MLflow model version."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from alertlake.modules import MlflowUnreachable, ModuleError
    from alertlake.modules_cli import register_module

    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    with Progress(SpinnerColumn(), TextColumn("[bold]registering {task.description}[/]"), TimeElapsedColumn()) as bar:
        bar.add_task(name, total=None)
        try:
            result = register_module(name, alias=alias, params=params or None)
        except (KeyError, ValueError, ModuleError, MlflowUnreachable) as exc:
            _fail(str(exc))
            return
    if as_json:
        _print_json(result)
        return
    console.print(
        f"registered [bold]{result['name']}[/] version [bold]{result['version']}[/] ({result['uri']}, run "
        f"{result['run_id']})" + (f" as @{alias}" if alias else "")
    )


@app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Module name")],
    version: Annotated[int, typer.Argument(help="Version to point the alias at")],
    alias: Annotated[str, typer.Option(help="champion or challenger")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Point an alias at a version (manual promotion; the promotion DAG checks a challenger first)."""
    from alertlake.modules import MlflowUnreachable
    from alertlake.modules_cli import promote_module

    try:
        result = promote_module(name, version, alias=alias)
    except (ValueError, MlflowUnreachable) as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - MLflow's own errors (unknown model or version) for the user
        _fail(f"could not promote {name} version {version}: {exc}")
        return
    if as_json:
        _print_json(result)
        return
    console.print(f"{name} @{alias} -> version {version}" if result["promoted"] else f"{name}: @{alias} unchanged")


@app.command("describe")
def describe_command(
    name: Annotated[str, typer.Argument(help="Module name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """What MLflow knows of a module: aliases, and each version with its parameters and metrics."""
    from alertlake.modules import MlflowUnreachable
    from alertlake.modules_cli import describe_module

    try:
        info = describe_module(name)
    except MlflowUnreachable as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - MLflow's own error for an unknown model, shown to the user
        _fail(f"module {name!r} is not registered ({exc}); register it with `alertlake modules register {name}`")
        return
    if as_json:
        _print_json(info)
        return
    aliases = ", ".join(f"@{a} = {v}" for a, v in sorted(info["aliases"].items())) or "none"
    table = Table(title=f"{name}: aliases {aliases}")
    for col in ("version", "aliases", "created (UTC)", "run", "params", "metrics"):
        table.add_column(col, overflow="fold")
    for v in info["versions"]:
        created = datetime.fromtimestamp(v["created"] / 1000, UTC).strftime("%Y-%m-%d %H:%M") if v["created"] else ""
        params = {k: p for k, p in v["params"].items() if k.startswith(("param.", "params_hash"))}
        table.add_row(
            str(v["version"]),
            ", ".join(v["aliases"]),
            created,
            (v["run_id"] or "")[:12],
            "\n".join(f"{k}={p}" for k, p in sorted(params.items())),
            "\n".join(f"{k}={m:.4g}" for k, m in sorted(v["metrics"].items())),
        )
    console.print(table)


def replay_enrich_command(
    night: Annotated[str, typer.Option(help="Observing night YYYY-MM-DD to recompute from bronze")],
    module: Annotated[
        list[str] | None, typer.Option(help="Pin a module version: NAME@VERSION (repeatable); others use @champion")
    ] = None,
    survey: Annotated[list[str] | None, typer.Option(help="Survey(s); default all")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Recompute a night of silver.alerts with pinned module versions (previous result kept by time travel)."""
    from alertlake.modules import MlflowUnreachable
    from alertlake.settings import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:  # jobs/ is beside the package, not installed with it
        sys.path.insert(0, str(REPO_ROOT))
    from jobs.enrich import SURVEYS, replay_enrich

    try:
        summary = replay_enrich(night, module or [], surveys=survey or list(SURVEYS))
    except (ValueError, RuntimeError, MlflowUnreachable) as exc:
        _fail(str(exc))
        return
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"silver.alerts night {night} recomputed ({summary['rows']:,} alerts)")
    for col in ("module", "version", "errors"):
        table.add_column(col)
    for name, version in summary["versions"].items():
        table.add_row(name, str(version), str(summary["module_errors"].get(name, 0)))
    console.print(table)
    console.print(
        f"silver.alerts version {summary['previous_version']} -> {summary['version']}; the previous result: "
        f"VERSION AS OF {summary['previous_version']}"
    )
