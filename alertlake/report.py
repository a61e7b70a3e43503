"""The nightly quality report: one self-contained HTML page an engineer or a scientist reads in the morning.

Counts per stage (Kafka, bronze, quarantine, silver, distributed; from :mod:`alertlake.reconcile`), the share
of alerts passing the quality cuts, science-module coverage and failures, quarantine reasons, the latency
from the Kafka timestamp to enrichment, and the data-quality gate's verdicts. Plots are matplotlib PNGs
inlined in the page; the figures are also embedded as JSON (``<script id="figures">``) for machines.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from alertlake.quality import BATCHES, RESULTS, read_table
from alertlake.settings import Settings

log = logging.getLogger(__name__)


def reports_dir(settings: Settings) -> Path:
    """Where reports are written (``<state_dir>/reports``)."""
    return settings.state_dir / "reports"


def nightly_figures(settings: Settings, night: str) -> dict[str, Any]:
    """Every figure of the nightly report for ``night`` as plain values."""
    from alertlake import modules as registry
    from alertlake.reconcile import reconcile
    from alertlake.surveys import survey_names

    figures: dict[str, Any] = {"night": night, "generated_at": dt.datetime.now(dt.UTC).isoformat()}
    stages: dict[str, Any] = {}
    for survey in survey_names():
        try:
            stages[survey] = reconcile(settings, survey, night).as_dict()
        except Exception as exc:  # noqa: BLE001 - a report with one survey missing beats no report
            log.warning("reconciliation of %s %s failed: %s", survey, night, exc)
            stages[survey] = {"error": str(exc)}
    figures["stages"] = stages

    modules = sorted(registry.all_modules().items())
    first_output = {name: next(iter(cls.outputs)) for name, cls in modules}
    columns = ["survey", "quality_pass", "quality_reason", "kafka_timestamp", "enrich_time"]
    columns += [f"{n}_error" for n, _ in modules] + list(first_output.values())
    silver = read_table(settings, "silver.alerts", None, pc.field("night") == night)
    silver = silver.select([c for c in columns if c in silver.column_names]) if silver.num_rows else silver
    rows = silver.num_rows
    frame = silver.to_pandas() if rows else None
    figures["silver_rows"] = rows
    quality: dict[str, Any] = {}
    coverage: dict[str, Any] = {}
    latency: list[float] = []
    if frame is not None:
        for survey, group in frame.groupby("survey"):
            passed = int(group["quality_pass"].sum())
            reasons = group.loc[~group["quality_pass"].astype(bool), "quality_reason"].value_counts()
            quality[str(survey)] = {
                "rows": len(group),
                "passed": passed,
                "share": passed / len(group),
                "reasons": {str(k): int(v) for k, v in reasons.items()},
            }
        eligible = frame[frame["quality_pass"].astype(bool)]
        for name, output in first_output.items():
            errors = frame.get(f"{name}_error")
            values = eligible.get(output)
            coverage[name] = {
                "eligible": len(eligible),
                "with_output": int(values.notna().sum()) if values is not None else 0,
                "failed": int(errors.notna().sum()) if errors is not None else 0,
                "error_codes": {str(k): int(v) for k, v in errors.value_counts().items()} if errors is not None else {},
            }
        if "kafka_timestamp" in frame and "enrich_time" in frame:
            delta = (frame["enrich_time"] - frame["kafka_timestamp"]).dt.total_seconds().dropna()
            latency = [float(x) for x in delta]
    figures["quality_cuts"] = quality
    figures["modules"] = coverage
    figures["latency_seconds"] = _quantiles(latency)

    in_night = (pc.field("night_first") <= night) & (pc.field("night_last") >= night)
    batches = read_table(settings, BATCHES, ["table", "batch_key", "status", "rows", "critical_failures"], in_night)
    figures["batches"] = {
        status: int(count)
        for status, count in _counts(batches.column("status").to_pylist() if batches.num_rows else []).items()
    }
    figures["held_batches"] = [
        {"batch_key": r["batch_key"], "rows": r["rows"], "failures": r["critical_failures"]}
        for r in (batches.to_pylist() if batches.num_rows else [])
        if r["status"] == "held"
    ]
    results = read_table(
        settings,
        RESULTS,
        ["table", "run", "expectation", "column", "severity", "success", "unexpected_count"],
        in_night & (pc.field("success") == False),  # noqa: E712 - a pyarrow expression, not a Python comparison
    )
    failing: dict[str, int] = {}
    for r in results.to_pylist() if results.num_rows else []:
        key = f"{r['table']} {r['severity']} {r['expectation']}({r['column'] or ''})"
        failing[key] = failing.get(key, 0) + 1
    figures["failing_expectations"] = failing
    figures["_latency_values"] = latency
    return figures


def _counts(values: list[Any]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {"count": len(ordered), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": ordered[-1]}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plots(figures: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    stages = {s: v for s, v in figures["stages"].items() if "error" not in v}
    if stages:
        names = ["kafka_messages", "bronze_rows", "quarantine_rows", "silver_rows", "distributed_alerts"]
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / len(stages)
        for k, (survey, v) in enumerate(stages.items()):
            ax.bar([i + k * width for i in range(len(names))], [v[n] for n in names], width, label=survey)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], [n.split("_")[0] for n in names])
        ax.set_ylabel("alerts / messages")
        ax.legend()
        plots["stages"] = _png(fig)
    if figures["quality_cuts"]:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        surveys = list(figures["quality_cuts"])
        ax.barh(surveys, [100 * figures["quality_cuts"][s]["share"] for s in surveys])
        ax.set_xlim(0, 100)
        ax.set_xlabel("% passing the quality cuts")
        plots["quality"] = _png(fig)
    if figures["modules"]:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        names = list(figures["modules"])
        m = figures["modules"]
        ax.bar(names, [100 * m[n]["with_output"] / m[n]["eligible"] if m[n]["eligible"] else 0 for n in names])
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of passing alerts with output")
        plots["modules"] = _png(fig)
    reasons: dict[str, int] = {}
    for v in stages.values():
        for reason, n in v.get("quarantine_reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        ax.barh(list(reasons), list(reasons.values()))
        ax.set_xlabel("quarantined messages")
        plots["quarantine"] = _png(fig)
    if figures["_latency_values"]:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.hist(figures["_latency_values"], bins=40)
        ax.set_xlabel("seconds from Kafka timestamp to enrichment")
        ax.set_ylabel("alerts")
        plots["latency"] = _png(fig)
    return plots


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def render_html(figures: dict[str, Any]) -> str:
    """The report page of ``figures`` (see :func:`nightly_figures`)."""
    plots = _plots(figures)
    night = html.escape(figures["night"])
    stage_rows = []
    for survey, v in figures["stages"].items():
        if "error" in v:
            stage_rows.append([survey, "error: " + v["error"], "", "", "", "", ""])
            continue
        stage_rows.append(
            [survey, v["kafka_messages"], v["bronze_rows"], v["quarantine_rows"], v["silver_rows"],
             v["distributed_alerts"], "OK" if v["ok"] else "GAPS"]
        )  # fmt: skip
    parts = [
        f"<h1>AlertLake quality report, night {night}</h1>",
        f"<p>Generated {html.escape(figures['generated_at'])}.</p>",
        "<h2>Counts per stage</h2>",
        _table(stage_rows, ["survey", "kafka", "bronze", "quarantine", "silver", "distributed", "reconciliation"]),
    ]
    for key, title in [
        ("stages", ""),
        ("quality", "Share passing the quality cuts"),
        ("modules", "Module coverage"),
        ("quarantine", "Quarantine reasons"),
        ("latency", "Latency, Kafka to enrichment"),
    ]:
        if title:
            parts.append(f"<h2>{title}</h2>")
        if key in plots:
            parts.append(f'<img alt="{key}" src="{plots[key]}">')
        if key == "quality":
            parts.append(
                _table(
                    [[s, q["rows"], q["passed"], f"{100 * q['share']:.1f} %", q["reasons"]]
                     for s, q in figures["quality_cuts"].items()],
                    ["survey", "silver rows", "passing", "share", "failed cuts"],
                )
            )  # fmt: skip
        if key == "modules":
            parts.append(
                _table(
                    [[n, m["eligible"], m["with_output"], m["failed"], m["error_codes"]]
                     for n, m in figures["modules"].items()],
                    ["module", "passing alerts", "with output", "failed rows", "error codes"],
                )
            )  # fmt: skip
        if key == "latency":
            parts.append(_table([[k, v] for k, v in figures["latency_seconds"].items()], ["latency (s)", "value"]))
    parts += [
        "<h2>Data-quality gate</h2>",
        _table([[k, v] for k, v in figures["batches"].items()], ["batch status", "batches"]),
        _table([[b["batch_key"], b["rows"], "; ".join(b["failures"])] for b in figures["held_batches"]],
               ["held batch", "rows", "critical failures"]),
        _table([[k, v] for k, v in figures["failing_expectations"].items()], ["failing expectation", "runs"]),
    ]  # fmt: skip
    public = {k: v for k, v in figures.items() if not k.startswith("_")}
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>AlertLake {night}</title><style>{style}</style>"
        f"</head><body>{''.join(parts)}"
        f"<script type='application/json' id='figures'>{html.escape(json.dumps(public, default=str))}</script>"
        "</body></html>"
    )


def nightly_report(settings: Settings, night: str) -> Path:
    """Write the nightly report of ``night`` to ``<state_dir>/reports/quality-<night>.html``; returns its path."""
    figures = nightly_figures(settings, night)
    path = reports_dir(settings) / f"quality-{night}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(figures))
    (path.with_suffix(".json")).write_text(
        json.dumps({k: v for k, v in figures.items() if not k.startswith("_")}, indent=2, default=str)
    )
    return path
