"""Data-quality gate: checks every batch with Great Expectations, holds the ones that fail.

The suites are reviewed JSON files, one per table, in ``expectations/`` (GX expectation-suite format). Each
expectation has a GX ``severity``: ``critical`` holds a silver batch, ``warning`` passes and is reported.
``meta.in_batch`` marks the cheap checks run on every micro-batch.

Two ways of running a suite, one set of definitions:

* **In-batch** (:func:`gate_batch`, called by the enrichment job on each micro-batch). GX's own Spark engine
  resolves metrics with several Spark jobs per expectation (~3 s for four expectations on three rows here, and
  each Spark action costs ~1 s on a small machine), far too much for a per-batch gate. So each in-batch
  expectation is compiled to Spark SQL aggregates (:func:`aggregations`) and the whole suite is evaluated in
  ONE ``agg`` over the batch; the counts are then turned into GX ``ExpectationValidationResult`` objects with
  GX's result model (:func:`evaluate`, :func:`gx_result_json`). No extra pass over the data: the
  enrichment job adds these aggregates to the one aggregation that computes its batch figures
  (:func:`gate_plan`, ``gate_batch(..., stats=...)``), so the gate needs no Spark action of its own. The
  real-time pipeline goes further: it brings each aggregate's row-level form (a boolean per condition,
  :meth:`AggregatePlan.row_columns`) to the driver with the columns its filters read, and pyarrow reduces them
  (:meth:`AggregatePlan.reduce`): no aggregation at all.
  The small results are written with delta-rs (no Spark job) to ``quality.results`` / ``quality.batches``
  and as GX validation results in the GX store (``<state_dir>/gx``, JSON written directly: the gate never
  imports GX), from which Data Docs are built.
* **Per night** (:func:`validate_night`): the full suite, run by GX itself (Spark datasource, ``SUMMARY``
  results with unexpected samples) over one night of a table.

The distribution job sends only rows of batches that passed or were released (:func:`distributable`); a held
batch is released by a person after a fix (:func:`release`, ``alertlake quality release``, or the DAG).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from alertlake.lake import delta_location, split_name, table_exists, table_uri
from alertlake.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

PASSED, HELD, RELEASED = "passed", "held", "released"
CRITICAL, WARNING = "critical", "warning"

EXPECTATIONS_DIR = REPO_ROOT / "expectations"
RESULTS = "quality.results"
BATCHES = "quality.batches"
SILVER = "silver.alerts"
#: Tables that have a suite, in pipeline order.
SUITE_TABLES: tuple[str, ...] = (
    "bronze.ztf_alerts",
    "bronze.lsst_alerts",
    "bronze.quarantine",
    "silver.alerts",
    "gold.filter_hits",
    "gold.objects",
)
#: How many unexpected values / alert ids a result keeps as examples.
SAMPLE = 5
DATA_DOCS_SITE = "alertlake"

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("batch_key", pa.string()),
        pa.field("run", pa.string()),  # "batch" (in-batch gate) or "night" (full suite)
        pa.field("suite", pa.string()),
        pa.field("expectation", pa.string()),
        pa.field("column", pa.string()),
        pa.field("kwargs", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("success", pa.bool_()),
        pa.field("element_count", pa.int64()),
        pa.field("unexpected_count", pa.int64()),
        pa.field("unexpected_percent", pa.float64()),
        pa.field("observed", pa.string()),
        pa.field("examples", pa.string()),
        pa.field("checked_at", pa.timestamp("us", tz="UTC")),
        pa.field("night_first", pa.string()),
        pa.field("night_last", pa.string()),
    ]
)

BATCHES_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("batch_key", pa.string()),
        pa.field("status", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("critical_failures", pa.list_(pa.string())),
        pa.field("warnings", pa.list_(pa.string())),
        pa.field("checked_at", pa.timestamp("us", tz="UTC")),
        pa.field("night_first", pa.string()),
        pa.field("night_last", pa.string()),
        pa.field("gx_result", pa.string()),
        pa.field("released_at", pa.timestamp("us", tz="UTC")),
        pa.field("released_by", pa.string()),
        pa.field("release_reason", pa.string()),
    ]
)


@dataclass
class Verdict:
    """The outcome of checking one batch of one table."""

    table: str
    batch_key: str
    status: str  # PASSED or HELD
    rows: int
    critical_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CheckResult:
    """One expectation evaluated on one batch (the same fields as a row of ``quality.results``)."""

    index: int
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    severity: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed: Any = None
    examples: list[Any] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """One line an engineer can act on: which check, on what, how many rows, examples."""
        target = self.column or ",".join(self.kwargs.get("column_list", []) or self.kwargs.get("column_set", []))
        if "column_A" in self.kwargs:
            target = f"{self.kwargs['column_A']},{self.kwargs['column_B']}"
        where = f" where {self.kwargs['row_condition']}" if self.kwargs.get("row_condition") else ""
        text = f"{self.expectation}({target}){where}"
        if self.unexpected_count is not None:
            text += f": {self.unexpected_count} of {self.element_count} rows unexpected"
        elif self.observed is not None:
            text += f": observed {self.observed}"
        if self.examples:
            text += f", e.g. {self.examples[:3]}"
        if self.alert_ids:
            text += f" (alert ids {self.alert_ids[:3]})"
        return text


# ----------------------------------------------------------------------------------------------- suites
def suite_name(table: str) -> str:
    """The suite of ``layer.table``: ``expectations/<layer>_<table>.json``."""
    layer, name = split_name(table)
    return f"{layer}_{name}"


@cache
def suite_definition(table: str) -> dict[str, Any]:
    """The reviewed suite of ``table`` as a dict (the JSON file as written)."""
    path = EXPECTATIONS_DIR / f"{suite_name(table)}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite for {table}: expected {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def gx_suite(table: str) -> ExpectationSuite:
    """The suite of ``table`` as a GX ``ExpectationSuite`` (validates every expectation's arguments)."""
    from great_expectations.core import ExpectationSuite

    return ExpectationSuite(**json.loads(json.dumps(suite_definition(table))))


def in_batch_expectations(suite: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``(index in suite, expectation)`` of the expectations marked ``meta.in_batch``."""
    return [(i, e) for i, e in enumerate(suite["expectations"]) if e.get("meta", {}).get("in_batch")]


# ---------------------------------------------------------------------------- compiling to Spark SQL
def sql_identifier(name: str) -> str:
    """A column name quoted for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: Any) -> str:
    """A Python value as a Spark SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


#: Column-map expectations: the Spark SQL condition under which a row is *unexpected*, given its kwargs.
def _between(c: str, k: Mapping[str, Any]) -> str:
    parts = []
    if k.get("min_value") is not None:
        parts.append(f"{c} {'>' if k.get('strict_min') else '>='} {sql_literal(k['min_value'])}")
    if k.get("max_value") is not None:
        parts.append(f"{c} {'<' if k.get('strict_max') else '<='} {sql_literal(k['max_value'])}")
    return f"NOT ({' AND '.join(parts) or 'TRUE'})"


def _in_set(c: str, k: Mapping[str, Any]) -> str:
    return f"NOT ({c} IN ({', '.join(sql_literal(v) for v in k['value_set'])}))"


COLUMN_MAP: dict[str, Any] = {
    "expect_column_values_to_not_be_null": lambda c, k: f"{c} IS NULL",
    "expect_column_values_to_be_null": lambda c, k: f"{c} IS NOT NULL",
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_not_be_in_set": lambda c, k: f"NOT ({_in_set(c, k)})",
    "expect_column_values_to_match_regex": lambda c, k: f"NOT ({c} RLIKE {sql_literal(k['regex'])})",
}
#: Expectations whose unexpected rows include nulls (the others, like GX, ignore null values).
NULL_AWARE = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}
PAIR = {"expect_column_pair_values_to_be_equal", "expect_column_pair_values_a_to_be_greater_than_b"}
UNIQUE = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
SCHEMA_LEVEL = {
    "expect_table_columns_to_match_set",
    "expect_column_to_exist",
    "expect_column_values_to_be_of_type",
}
TABLE_LEVEL = {"expect_table_row_count_to_be_between"}
SUPPORTED = set(COLUMN_MAP) | PAIR | UNIQUE | SCHEMA_LEVEL | TABLE_LEVEL


def referenced_columns(expectation: Mapping[str, Any]) -> list[str]:
    """Columns an expectation reads (not counting its row condition)."""
    k = expectation["kwargs"]
    if "column" in k:
        return [k["column"]]
    if "column_A" in k:
        return [k["column_A"], k["column_B"]]
    if "column_list" in k:
        return list(k["column_list"])
    return []


#: Example values and alert ids of failed expectations, by index in the suite.
Examples = dict[int, tuple[list[Any], list[int]]]


@dataclass
class AggregatePlan:
    """How a suite's in-batch expectations are computed: one aggregation, plus example queries on failure.

    ``aggregates`` are ``(alias, Spark SQL)`` pairs, identical expressions shared; ``counts[i]`` names the
    aliases of expectation ``i``'s ``element``, ``nonnull`` and ``unexpected`` counts; ``unexpected[i]`` is
    its ``(row is unexpected, example value)`` SQL, used only to name examples when it failed.
    """

    aggregates: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[int, dict[str, str]] = field(default_factory=dict)
    unexpected: dict[int, tuple[str, str]] = field(default_factory=dict)
    nights: tuple[str, str] | None = None  # aliases of the batch's first and last night
    #: Each aggregate's row-level form, by alias (see :meth:`row_columns`).
    rowwise: dict[str, RowAggregate] = field(default_factory=dict)

    def add(self, sql: str, rowwise: RowAggregate) -> str:
        """The alias of aggregate ``sql`` (added once), whose row-level form is ``rowwise``."""
        for alias, existing in self.aggregates:
            if existing == sql:
                return alias
        alias = f"m{len(self.aggregates)}"
        self.aggregates.append((alias, sql))
        self.rowwise[alias] = rowwise
        return alias

    def row_columns(self) -> dict[str, str]:
        """The row-level columns from which :meth:`reduce` computes every aggregate on the driver, as
        ``{name: Spark SQL}``: one boolean ``gate_c<k>`` per distinct condition, and the value columns themselves.

        The real-time pipeline brings these to the driver with the columns its filters read, in the one query
        that takes the batch there: the gate and the batch figures then cost no aggregation (a Spark job with a
        shuffle) of their own.
        """
        out = {name: f"coalesce(({condition}), FALSE)" for condition, name in self._flags().items()}
        for agg in self.rowwise.values():
            for column in agg.columns:
                out[column] = sql_identifier(column)
        return out

    def flag(self, alias: str) -> str | None:
        """The name of the boolean column of aggregate ``alias``'s condition (None: it has none)."""
        condition = self.rowwise[alias].condition
        return None if condition is None else self._flags()[condition]

    def _flags(self) -> dict[str, str]:
        """The name of each distinct condition's boolean column (a uniqueness check's non-null count and its
        distinct count share one)."""
        flags: dict[str, str] = {}
        for agg in self.rowwise.values():
            if agg.condition is not None and agg.condition not in flags:
                flags[agg.condition] = f"gate_c{len(flags)}"
        return flags

    def reduce(self, table: pa.Table) -> dict[str, Any]:
        """Every aggregate, computed with pyarrow from ``table`` (holding :meth:`row_columns`): the same values
        as the Spark aggregation."""
        import pyarrow.compute as pc

        stats: dict[str, Any] = {}
        flags = self._flags()
        for alias, agg in self.rowwise.items():
            flag = table.column(flags[agg.condition]) if agg.condition is not None else None
            if agg.kind == "count":
                stats[alias] = table.num_rows if flag is None else int(pc.sum(flag).as_py() or 0)
            elif agg.kind in ("min", "max"):
                (column,) = agg.columns
                stats[alias] = pc.min_max(table.column(column))[agg.kind].as_py()
            elif agg.kind == "distinct":
                values = table.select(list(agg.columns))
                if flag is not None:
                    values = values.filter(flag)
                stats[alias] = values.group_by(list(agg.columns)).aggregate([]).num_rows
            else:
                raise ValueError(f"unknown row-level aggregate {agg.kind!r} ({alias})")
        return stats


@dataclass(frozen=True)
class RowAggregate:
    """The row-level form of one aggregate: ``count`` rows (where ``condition`` holds), ``min``/``max`` of its
    one column, or the number of ``distinct`` value tuples of its ``columns`` (where ``condition`` holds; the
    condition implies they are not null)."""

    kind: str
    condition: str | None = None
    columns: tuple[str, ...] = ()


def aggregations(expectations: Sequence[tuple[int, Mapping[str, Any]]], columns: Iterable[str]) -> AggregatePlan:
    """Compile ``expectations`` to Spark SQL aggregates that evaluate them on a batch in one pass.

    Per column-map expectation: rows in its domain (its ``row_condition``), rows of the domain with a value,
    and unexpected rows (for the null checks, derived from the first two). Uniqueness is
    ``count - size(collect_set)`` (no Expand of the data as ``count(DISTINCT)`` would do). Plus ``rows`` and
    the batch's first and last ``night``. Expectations over a missing column get no aggregate
    (:func:`evaluate` fails them).
    """
    have = set(columns)
    plan = AggregatePlan()
    rows = plan.add("count(1)", RowAggregate("count"))
    if "night" in have:
        plan.nights = (
            plan.add("min(`night`)", RowAggregate("min", columns=("night",))),
            plan.add("max(`night`)", RowAggregate("max", columns=("night",))),
        )
    for i, exp in expectations:
        kind, k = exp["type"], exp["kwargs"]
        cols = referenced_columns(exp)
        if kind in SCHEMA_LEVEL or kind in TABLE_LEVEL or not set(cols) <= have:
            continue
        if kind not in SUPPORTED:
            raise ValueError(f"expectation {kind} (#{i}) cannot run in-batch; remove meta.in_batch or add it here")
        if k.get("row_condition") and k.get("condition_parser") != "spark":
            raise ValueError(f"expectation {kind} (#{i}): in-batch row conditions must use condition_parser spark")
        domain = f"({k['row_condition']})" if k.get("row_condition") else None
        q = [sql_identifier(c) for c in cols]
        element = plan.add(f"count_if({domain})", RowAggregate("count", domain)) if domain else rows
        if kind in UNIQUE:
            present = " AND ".join([*([domain] if domain else []), *(f"{c} IS NOT NULL" for c in q)])
            value = q[0] if len(q) == 1 else f"struct({', '.join(q)})"
            nonnull = plan.add(f"count_if({present})", RowAggregate("count", present))
            distinct = plan.add(
                f"size(collect_set(CASE WHEN {present} THEN {value} END))",
                RowAggregate("distinct", present, tuple(cols)),
            )
            plan.counts[i] = {"element": element, "nonnull": nonnull, "unexpected": f"{nonnull}-{distinct}"}
            continue
        if kind in PAIR:
            a, b = q
            ok = f"{a} <=> {b}" if kind.endswith("to_be_equal") else f"{a} {'>=' if k.get('or_equal') else '>'} {b}"
            bad = f"NOT coalesce({ok}, FALSE) AND NOT ({a} IS NULL AND {b} IS NULL)"
            has_value = f"NOT ({a} IS NULL AND {b} IS NULL)"
            sample = f"concat_ws(' vs ', CAST({a} AS STRING), CAST({b} AS STRING))"
        else:
            c = q[0]
            rule = COLUMN_MAP[kind](c, k)
            bad = rule if kind in NULL_AWARE else f"{c} IS NOT NULL AND {rule}"
            has_value = f"{c} IS NOT NULL"
            sample = f"CAST({c} AS STRING)"
        scope = f"{domain} AND " if domain else ""
        nonnull = plan.add(f"count_if({scope}{has_value})", RowAggregate("count", f"{scope}{has_value}"))
        # The null checks need no aggregate of their own: their unexpected rows are the (non-)null ones.
        if kind == "expect_column_values_to_not_be_null":
            unexpected = f"{element}-{nonnull}"
        elif kind == "expect_column_values_to_be_null":
            unexpected = nonnull
        else:
            unexpected = plan.add(f"count_if({scope}({bad}))", RowAggregate("count", f"{scope}({bad})"))
        plan.counts[i] = {"element": element, "nonnull": nonnull, "unexpected": unexpected}
        plan.unexpected[i] = (f"{scope}({bad})", sample)
    return plan


def _count(stats: Mapping[str, Any], ref: str) -> int:
    if "-" in ref:
        a, b = ref.split("-")
        return int(stats[a] or 0) - int(stats[b] or 0)
    return int(stats[ref] or 0)


def _success_by_share(unexpected: int, denominator: int, mostly: float) -> bool:
    if denominator == 0:
        return True
    return (denominator - unexpected) / denominator >= mostly


def evaluate(
    expectations: Sequence[tuple[int, Mapping[str, Any]]],
    column_types: Mapping[str, str],
    plan: AggregatePlan,
    stats: Mapping[str, Any],
    examples: Examples | None = None,
) -> list[CheckResult]:
    """Turn the batch's aggregates (:func:`aggregations`) and its schema into one result per expectation.

    ``examples`` (optional) gives example values and alert ids of failed expectations by index.

    ``column_types`` maps each column to its Spark type class name (``DoubleType``, ...), as GX's Spark
    engine reports it. Success follows GX: ``mostly`` is the share of non-null values (of all rows for the
    null checks) that must be expected; a missing column fails.
    """
    out: list[CheckResult] = []
    rows = _count(stats, "m0")
    for i, exp in expectations:
        kind, k = exp["type"], dict(exp["kwargs"])
        severity = str(exp.get("severity") or exp.get("meta", {}).get("severity") or CRITICAL)
        column = k.get("column")
        result = CheckResult(i, kind, column, k, severity, success=True)
        missing = [c for c in referenced_columns(exp) if c not in column_types]
        if kind == "expect_table_columns_to_match_set":
            expected, observed = set(k["column_set"]), set(column_types)
            absent = sorted(expected - observed)
            extra = sorted(observed - expected) if k.get("exact_match", True) else []
            result.success = not absent and not extra
            result.observed = {"missing": absent, "unexpected": extra} if not result.success else sorted(observed)
        elif kind == "expect_column_to_exist":
            result.success = not missing
            result.observed = "present" if not missing else "missing"
        elif missing:
            result.success = False
            result.observed = f"column(s) missing: {', '.join(missing)}"
        elif kind == "expect_column_values_to_be_of_type":
            result.observed = column_types[str(column)]
            result.success = result.observed == k["type_"]
        elif kind == "expect_table_row_count_to_be_between":
            result.observed = rows
            lo, hi = k.get("min_value"), k.get("max_value")
            result.success = (lo is None or rows >= lo) and (hi is None or rows <= hi)
        else:
            refs = plan.counts[i]
            element, nonnull = _count(stats, refs["element"]), _count(stats, refs["nonnull"])
            unexpected = _count(stats, refs["unexpected"])
            denominator = element if kind in NULL_AWARE else nonnull
            result.element_count, result.unexpected_count = element, unexpected
            result.unexpected_percent = 100.0 * unexpected / denominator if denominator else 0.0
            result.success = _success_by_share(unexpected, denominator, float(k.get("mostly", 1.0)))
            result.examples, result.alert_ids = (examples or {}).get(i, ([], []))
        out.append(result)
    return out


def verdict_status(results: Iterable[CheckResult]) -> tuple[str, list[str], list[str]]:
    """``(status, critical failures, warnings)``: HELD when any critical expectation failed."""
    critical: list[str] = []
    warnings: list[str] = []
    for r in results:
        if r.success:
            continue
        (critical if r.severity == CRITICAL else warnings).append(r.describe())
    return (HELD if critical else PASSED), critical, warnings


# ------------------------------------------------------------------------------------- GX results
def to_gx_result(
    table: str, batch_key: str, results: Sequence[CheckResult], checked_at: dt.datetime
) -> ExpectationSuiteValidationResult:
    """The checks as a GX suite validation result, built with GX's own classes (the reference that
    :func:`gx_result_json` is tested against)."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    suite = gx_suite(table)
    evrs = [
        ExpectationValidationResult(
            success=r.success, expectation_config=suite.expectations[r.index].configuration, result=_result_payload(r)
        )
        for r in results
    ]
    return ExpectationSuiteValidationResult(
        success=_suite_success(results),
        results=evrs,
        suite_name=suite.name,
        statistics=_statistics(results),
        meta=_result_meta(table, batch_key, checked_at),
        batch_id=batch_key,
    )


def _result_payload(r: CheckResult) -> dict[str, Any]:
    """One expectation's ``result`` as GX reports it: counts and examples, or the observed value."""
    if r.unexpected_count is None:
        return {"observed_value": r.observed}
    return {
        "element_count": r.element_count,
        "unexpected_count": r.unexpected_count,
        "unexpected_percent": r.unexpected_percent,
        "partial_unexpected_list": r.examples,
        "partial_unexpected_alert_ids": r.alert_ids,
    }


def _suite_success(results: Sequence[CheckResult]) -> bool:
    return all(r.success or r.severity != CRITICAL for r in results)


def _statistics(results: Sequence[CheckResult]) -> dict[str, Any]:
    successful = sum(r.success for r in results)
    return {
        "evaluated_expectations": len(results),
        "successful_expectations": successful,
        "unsuccessful_expectations": len(results) - successful,
        "success_percent": 100.0 * successful / len(results) if results else 100.0,
    }


def _result_meta(table: str, batch_key: str, checked_at: dt.datetime) -> dict[str, Any]:
    return {
        "great_expectations_version": _gx_version(),
        "active_batch_definition": {
            "datasource_name": "alertlake_in_batch",
            "data_connector_name": "spark_aggregate",
            "data_asset_name": table,
            "batch_identifiers": {"batch_key": batch_key},
        },
        "batch_spec": {"batch_key": batch_key, "engine": "one Spark aggregation (alertlake.quality)"},
        "run_id": {"run_name": batch_key, "run_time": checked_at.isoformat()},
        "validation_time": checked_at.isoformat(),
    }


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great_expectations")  # no import of GX itself (seconds): the in-batch gate never needs it


def gx_result_json(
    table: str, batch_key: str, results: Sequence[CheckResult], checked_at: dt.datetime
) -> dict[str, Any]:
    """:func:`to_gx_result` as the JSON document the GX store keeps, built without GX (milliseconds, no import).

    Expectation configurations are the reviewed suite's own entries; GX reads this document back as the same
    validation result (``tests/unit/test_quality_gate.py`` checks it against :func:`to_gx_result`).
    """
    raw = suite_definition(table)["expectations"]
    evrs = [
        {
            "success": r.success,
            "expectation_config": _config_json(raw[r.index]),
            "result": _result_payload(r),
            "meta": {},
            "exception_info": {"raised_exception": False, "exception_traceback": None, "exception_message": None},
        }
        for r in results
    ]
    return {
        "success": _suite_success(results),
        "results": evrs,
        "suite_name": suite_name(table),
        "suite_parameters": {},
        "statistics": _statistics(results),
        "meta": _result_meta(table, batch_key, checked_at),
        "id": None,
    }


def _config_json(expectation: Mapping[str, Any]) -> dict[str, Any]:
    """A reviewed suite entry as GX writes an expectation configuration: ``None`` arguments left out, a row
    condition as GX's pass-through condition (handed to the engine as written)."""
    kwargs = {k: v for k, v in expectation["kwargs"].items() if v is not None}
    if isinstance(kwargs.get("row_condition"), str):
        kwargs["row_condition"] = {"type": "pass_through", "pass_through_filter": kwargs["row_condition"]}
    return {**expectation, "kwargs": kwargs}


def write_gx_result(
    settings: Settings, table: str, batch_key: str, results: Sequence[CheckResult], checked_at: dt.datetime
) -> Path:
    """Write the batch's GX validation result where GX's validation-results store keeps it (the layout
    :func:`gx_result_path` reads), without importing GX; returns its JSON file."""
    run = _safe(batch_key)
    path = (
        settings.state_dir
        / "gx"
        / "uncommitted"
        / "validations"
        / suite_name(table)
        / run
        / checked_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        / f"{run}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(gx_result_json(table, batch_key, results, checked_at), indent=2, sort_keys=True, default=str)
    path.write_text(text)
    return path


_context_lock = threading.Lock()
_contexts: dict[Path, AbstractDataContext] = {}


def gx_context(settings: Settings) -> AbstractDataContext:
    """The file-backed GX context under ``<state_dir>/gx`` (suites, validation results, Data Docs site)."""
    import great_expectations as gx

    root = settings.state_dir
    with _context_lock:
        if root not in _contexts:
            root.mkdir(parents=True, exist_ok=True)
            context = gx.get_context(mode="file", project_root_dir=str(root))
            if DATA_DOCS_SITE not in (context.get_site_names() or []):
                context.add_data_docs_site(
                    site_name=DATA_DOCS_SITE,
                    site_config={
                        "class_name": "SiteBuilder",
                        "store_backend": {
                            "class_name": "TupleFilesystemStoreBackend",
                            "base_directory": str(data_docs_dir(settings)),
                        },
                        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    },
                )
            _contexts[root] = context
        return _contexts[root]


def data_docs_dir(settings: Settings) -> Path:
    """Where the static Data Docs site is built."""
    return settings.state_dir / "reports" / "data_docs"


def gx_result_path(settings: Settings, key: Any) -> Path:
    """The JSON file of a stored validation result."""
    suite, run_name, run_time, batch = key.to_tuple()
    return settings.state_dir / "gx" / "uncommitted" / "validations" / suite / run_name / run_time / f"{batch}.json"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


# ----------------------------------------------------------------------------------------- Delta tables
_registered: set[tuple[str, str]] = set()


def _register_in_trino(settings: Settings, name: str) -> None:
    # Best effort: a Trino that is down only delays serving (the platform DAG registers every table later).
    key = (settings.lake_uri, name)
    if key in _registered or not settings.lake_is_local or not settings.trino_register:
        return
    _registered.add(key)  # one attempt per process and table: the platform DAG catches up later
    from alertlake import trino

    trino.register_tables(settings, [name])


def _append(settings: Settings, name: str, table: pa.Table) -> None:
    from deltalake import write_deltalake

    write_deltalake(delta_location(settings, name), table, mode="append")
    _register_in_trino(settings, name)


def _merge_batch(settings: Settings, row: dict[str, Any], keep_released: bool = True) -> dict[str, Any]:
    """Upsert one row of ``quality.batches`` keyed by (table, batch_key), retrying on a concurrent commit.
    Returns delta-rs's metrics of the MERGE (empty when the row created the table).

    The key's values are also written into the predicate as literals: delta-rs then skips, by their statistics,
    the files that cannot hold the key. Without them it read every file of the table for each batch (one file a
    batch until the daily compaction): 24 ms a merge with 10 rows, 404 ms with 1,000 and 1,159 ms with 2,000, a
    fixed cost of every real-time micro-batch growing through the night. With them, 125 ms with 2,000 files
    (all skipped)."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from alertlake.trino import sql_string

    source = pa.Table.from_pylist([row], schema=BATCHES_SCHEMA)
    location = delta_location(settings, BATCHES)
    key = f"t.`table` = {sql_string(row['table'])} AND t.batch_key = {sql_string(row['batch_key'])}"
    for attempt in range(5):
        try:
            if not DeltaTable.is_deltatable(location):
                write_deltalake(location, source, mode="append")
                _register_in_trino(settings, BATCHES)
                return {}
            merger = DeltaTable(location).merge(
                source,
                predicate=f"{key} AND t.`table` = s.`table` AND t.batch_key = s.batch_key",
                source_alias="s",
                target_alias="t",
            )
            # A release is a person's decision: re-checking a retried batch does not undo it.
            merger = merger.when_matched_update_all(predicate="t.status <> 'released'" if keep_released else None)
            metrics: dict[str, Any] = merger.when_not_matched_insert_all().execute()
            return metrics
        except CommitFailedError:
            if attempt == 4:
                raise
            log.info("concurrent update of %s, retrying", BATCHES)
    raise AssertionError("unreachable: the last attempt returns or raises")


def read_table(settings: Settings, name: str, columns: list[str] | None = None, where: Any = None) -> pa.Table:
    """Rows of Delta table ``name`` (delta-rs, no Spark) restricted to ``columns`` and a pyarrow filter.

    An absent table reads as an empty table.
    """
    from deltalake import DeltaTable

    location = delta_location(settings, name)
    if not DeltaTable.is_deltatable(location):
        return pa.table({c: pa.array([], pa.null()) for c in columns or []})
    dataset = DeltaTable(location).to_pyarrow_dataset()
    return dataset.to_table(columns=columns, filter=where)


# --------------------------------------------------------------------------------------------- gating
def validation_view(df: DataFrame) -> DataFrame:
    """The columns a suite sees: the table's, plus the canonical struct's fields as ``canonical_<field>``.

    Lazy projection only (bronze keeps its canonical columns in a struct; suites check them flat).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    if "canonical" not in df.columns or not isinstance(df.schema["canonical"].dataType, StructType):
        return df
    fields = df.schema["canonical"].dataType.fieldNames()
    return df.select("*", *[F.col(f"canonical.{f}").alias(f"canonical_{f}") for f in fields])


def _rows(
    table: str,
    batch_key: str,
    run: str,
    results: Sequence[CheckResult],
    checked_at: dt.datetime,
    nights: tuple[str | None, str | None],
) -> list[dict[str, Any]]:
    return [
        {
            "table": table,
            "batch_key": batch_key,
            "run": run,
            "suite": suite_name(table),
            "expectation": r.expectation,
            "column": r.column,
            "kwargs": json.dumps(r.kwargs, sort_keys=True, default=str),
            "severity": r.severity,
            "success": r.success,
            "element_count": r.element_count,
            "unexpected_count": r.unexpected_count,
            "unexpected_percent": r.unexpected_percent,
            "observed": None if r.observed is None else json.dumps(r.observed, default=str),
            "examples": json.dumps({"values": r.examples, "alert_ids": r.alert_ids}, default=str),
            "checked_at": checked_at,
            "night_first": nights[0],
            "night_last": nights[1],
        }
        for r in results
    ]


@dataclass
class GatePlan:
    """The in-batch gate of ``table`` compiled for one batch: what to aggregate, over which view.

    A caller that already runs an aggregation over the batch (the enrichment job's batch figures) adds
    :meth:`columns` to its own ``select`` over :attr:`view` and hands the resulting row to :func:`gate_batch`
    (``stats=``): the gate then costs no Spark action of its own.
    """

    table: str
    checks: list[tuple[int, dict[str, Any]]]
    view: DataFrame
    column_types: dict[str, str]
    aggregates: AggregatePlan

    def columns(self) -> list[Any]:
        """The aggregate columns (``m0``, ``m1``, ...), for a global ``select`` over :attr:`view`."""
        from pyspark.sql import functions as F

        return [F.expr(sql).alias(alias) for alias, sql in self.aggregates.aggregates]

    def row_columns(self) -> dict[str, Any]:
        """The row-level columns of :meth:`AggregatePlan.row_columns`, over :attr:`view`; the rows they bring to
        the driver give the same aggregates with :meth:`AggregatePlan.reduce` as :meth:`columns` in Spark."""
        from pyspark.sql import functions as F

        return {name: F.expr(sql).alias(name) for name, sql in self.aggregates.row_columns().items()}

    def compute(self) -> dict[str, Any]:
        """The aggregates over the batch, on their own (one Spark action)."""
        return self.view.select(*self.columns()).collect()[0].asDict()


def gate_plan(table: str, df: DataFrame) -> GatePlan:
    """Compile ``table``'s in-batch expectations for batch ``df`` (lazy: no Spark job)."""
    checks = in_batch_expectations(suite_definition(table))
    view = validation_view(df)
    column_types = {f.name: type(f.dataType).__name__ for f in view.schema.fields}
    return GatePlan(table, checks, view, column_types, aggregations(checks, column_types))


def gate_batch(
    spark: SparkSession,
    settings: Settings,
    df: DataFrame,
    table: str,
    batch_key: str,
    *,
    plan: GatePlan | None = None,
    stats: Mapping[str, Any] | None = None,
) -> Verdict:
    """Run the table's in-batch (cheap) expectations on ``df`` and record the verdict.

    Writes one row per expectation to ``quality.results`` and the batch's status to ``quality.batches``.
    Returns the verdict; a HELD batch must not be distributed until released.

    Without ``stats``: one Spark action (one aggregation). With ``stats`` (a row holding ``plan``'s aggregates,
    computed by the caller in its own aggregation over ``plan.view``; see :class:`GatePlan`): none. A batch
    with failures pays one more, bounded query that names example alert ids. Cache ``df`` first if the caller
    reuses it.
    """
    plan = plan or gate_plan(table, df)
    if stats is None:
        stats = plan.compute()
    aggregates = plan.aggregates
    missing = [alias for alias, _ in aggregates.aggregates if alias not in stats]
    if missing:
        raise ValueError(f"stats lack the gate's aggregates {missing[:5]}: compute them from the same gate_plan")
    failed = [
        i for i, refs in aggregates.counts.items() if _count(stats, refs["unexpected"]) and i in aggregates.unexpected
    ]
    examples = failure_examples(plan.view, aggregates, failed) if failed else {}
    results = evaluate(plan.checks, plan.column_types, aggregates, stats, examples)
    status, critical, warnings = verdict_status(results)
    checked_at = dt.datetime.now(dt.UTC)
    nights = (stats[aggregates.nights[0]], stats[aggregates.nights[1]]) if aggregates.nights else (None, None)
    rows = _count(stats, "m0")
    records = _rows(table, batch_key, "batch", results, checked_at, nights)
    gx_path = write_gx_result(settings, table, batch_key, results, checked_at)
    _append(settings, RESULTS, pa.Table.from_pylist(records, schema=RESULTS_SCHEMA))
    _merge_batch(
        settings,
        {
            "table": table,
            "batch_key": batch_key,
            "status": status,
            "rows": rows,
            "critical_failures": critical,
            "warnings": warnings,
            "checked_at": checked_at,
            "night_first": nights[0],
            "night_last": nights[1],
            "gx_result": str(gx_path),
            "released_at": None,
            "released_by": None,
            "release_reason": None,
        },
    )
    if critical:
        log.error("%s batch %s HELD (%d rows): %s", table, batch_key, rows, "; ".join(critical))
    for warning in warnings:
        log.warning("%s batch %s: %s", table, batch_key, warning)
    return Verdict(table, batch_key, status, rows, critical, warnings, records)


def failure_examples(
    view: DataFrame, plan: AggregatePlan, failed: Sequence[int]
) -> dict[int, tuple[list[Any], list[int]]]:
    """Up to :data:`SAMPLE` example values and alert ids per failed expectation, in one bounded query."""
    has_id = "alert_id" in view.columns
    conds = {i: plan.unexpected[i] for i in failed}
    picked = [f"CASE WHEN {cond} THEN {sample} END AS x{i}" for i, (cond, sample) in conds.items()]
    query = view.where(" OR ".join(f"({cond})" for cond, _ in conds.values())).selectExpr(
        *(["alert_id"] if has_id else []), *picked
    )
    out: Examples = {i: ([], []) for i in failed}
    for row in query.limit(SAMPLE * len(failed)).collect():
        for i in failed:
            value = row[f"x{i}"]
            values, ids = out[i]
            if value is not None and len(values) < SAMPLE:
                values.append(value)
                if has_id and row["alert_id"] is not None:
                    ids.append(int(row["alert_id"]))
    return out


def distributable(spark: SparkSession, settings: Settings, silver: DataFrame) -> DataFrame:
    """``silver`` restricted to rows whose ``enrich_batch`` passed the gate or was released.

    Rows of batches never checked are not distributable (fail closed).
    """
    from pyspark.sql import functions as F

    if not table_exists(settings, BATCHES):
        return silver.where(F.lit(False))
    ok = (
        spark.read.format("delta")
        .load(table_uri(settings, BATCHES))
        .where((F.col("table") == SILVER) & F.col("status").isin(PASSED, RELEASED))
        .select(F.col("batch_key").alias("enrich_batch"))
    )
    return silver.join(F.broadcast(ok), "enrich_batch", "left_semi")


@dataclass
class BatchStatus:
    """One row of ``quality.batches``."""

    table: str
    batch_key: str
    status: str
    rows: int
    critical_failures: list[str]
    warnings: list[str]
    checked_at: dt.datetime
    night_first: str | None = None
    night_last: str | None = None
    gx_result: str | None = None
    released_at: dt.datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None


def batches(settings: Settings, status: str | None = None, table: str | None = None) -> list[BatchStatus]:
    """Checked batches (optionally only those with ``status`` / of ``table``), oldest first."""
    import pyarrow.compute as pc

    where = None
    if status:
        where = pc.field("status") == status
    if table:
        cond = pc.field("table") == table
        where = cond if where is None else where & cond
    rows = read_table(settings, BATCHES, BATCHES_SCHEMA.names, where).to_pylist()
    return sorted((BatchStatus(**r) for r in rows), key=lambda b: b.checked_at)


def held(settings: Settings) -> list[BatchStatus]:
    """Batches held by the gate and not yet released."""
    return batches(settings, HELD)


def release(
    settings: Settings, batch_key: str, reason: str, released_by: str | None = None, table: str = SILVER
) -> BatchStatus:
    """Mark held batch ``batch_key`` released (after a fix), so the distribution job sends its alerts."""
    import getpass

    if not reason.strip():
        raise ValueError("a release needs a reason (what was fixed, or why the failures are acceptable)")
    found = [b for b in batches(settings, table=table) if b.batch_key == batch_key]
    if not found:
        raise LookupError(f"no checked batch {batch_key!r} of {table}; `alertlake quality held` lists held batches")
    current = found[0]
    if current.status != HELD:
        raise ValueError(f"batch {batch_key!r} of {table} is {current.status}, not held: nothing to release")
    current.status = RELEASED
    current.released_at = dt.datetime.now(dt.UTC)
    current.released_by = released_by or getpass.getuser()
    current.release_reason = reason
    _merge_batch(settings, asdict(current), keep_released=False)
    log.info("released %s batch %s: %s", table, batch_key, reason)
    return current


# ---------------------------------------------------------------------------------------- per night
def read_night(spark: SparkSession, settings: Settings, table: str, night: str) -> DataFrame:
    """One observing night of ``table``: its ``night`` partition, or for tables without one (quarantine,
    gold) the rows whose Kafka / send time falls in the night's window at each survey's observatory."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(table_uri(settings, table))
    if "night" in df.columns:
        return df.where(F.col("night") == night)
    stamp = next((c for c in ("kafka_timestamp", "sent_at", "updated_at") if c in df.columns), None)
    if stamp is None or "survey" not in df.columns:
        return df  # a table of current state (gold.objects): the whole table is checked
    from alertlake.lake import night_window
    from alertlake.surveys import survey_names

    cond = F.lit(False)
    for survey in survey_names():
        begin, end = night_window(survey, night)
        cond = cond | ((F.col("survey") == survey) & (F.col(stamp) >= begin) & (F.col(stamp) < end))
    return df.where(cond)


def validate_night(spark: SparkSession, settings: Settings, table: str, night: str) -> Verdict:
    """Run ``table``'s full suite with GX over one night; results go to the GX store and ``quality.results``.

    The verdict's status is HELD when a critical expectation failed (nothing is blocked: nights are reports).
    """
    import great_expectations as gx

    if not table_exists(settings, table):
        raise FileNotFoundError(f"table {table} does not exist yet at {table_uri(settings, table)}")
    context = gx_context(settings)
    suite = context.suites.add_or_update(gx_suite(table))
    source = context.data_sources.add_or_update_spark(name="alertlake_spark")
    name = suite_name(table)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name=name)
    try:
        batch_definition = asset.get_batch_definition("night")
    except (KeyError, LookupError):
        batch_definition = asset.add_batch_definition_whole_dataframe("night")
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}_night", data=batch_definition, suite=suite)
    )
    from great_expectations.core.run_identifier import RunIdentifier

    view = validation_view(read_night(spark, settings, table, night))
    checked_at = dt.datetime.now(dt.UTC)
    outcome = definition.run(
        batch_parameters={"dataframe": view},
        result_format="SUMMARY",
        run_id=RunIdentifier(run_name=f"night_{night}", run_time=checked_at),
    )
    raw = suite_definition(table)["expectations"]
    results = []
    for evr in outcome.results:
        config = evr.expectation_config
        assert config is not None
        index = next(
            (i for i, e in enumerate(raw) if e["type"] == config.type and _same_kwargs(e["kwargs"], config.kwargs)),
            -1,
        )
        payload = evr.result or {}
        kwargs = raw[index]["kwargs"] if index >= 0 else dict(config.kwargs)
        unexpected = payload.get("unexpected_count")
        results.append(
            CheckResult(
                index=index,
                expectation=config.type,
                column=kwargs.get("column"),
                kwargs=kwargs,
                severity=str(getattr(config.severity, "value", config.severity) or CRITICAL),
                success=bool(evr.success),
                element_count=payload.get("element_count"),
                unexpected_count=unexpected,
                unexpected_percent=payload.get("unexpected_percent"),
                observed=payload.get("observed_value")
                or (evr.exception_info.get("exception_message") if evr.exception_info else None),
                examples=list(payload.get("partial_unexpected_list") or [])[:SAMPLE],
            )
        )
    status, critical, warnings = verdict_status(results)
    rows = _rows(table, f"night:{night}", "night", results, checked_at, (night, night))
    _append(settings, RESULTS, pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA))
    count = max((r.element_count or 0 for r in results), default=0)
    return Verdict(table, f"night:{night}", status, count, critical, warnings, rows)


def _same_kwargs(raw: Mapping[str, Any], parsed: Mapping[str, Any]) -> bool:
    for key, value in raw.items():
        other = parsed.get(key)
        if key == "row_condition":
            other = getattr(other, "pass_through_filter", other)
            if isinstance(other, dict):
                other = other.get("pass_through_filter")
        if isinstance(value, int | float) and isinstance(other, int | float):
            if float(value) != float(other):
                return False
        elif value != other and not (isinstance(value, list) and list(other or []) == value):
            return False
    return True


def validate_nights(spark: SparkSession, settings: Settings, night: str) -> list[Verdict]:
    """The full suite of every table that exists, over ``night``."""
    return [validate_night(spark, settings, t, night) for t in SUITE_TABLES if table_exists(settings, t)]


def build_data_docs(settings: Settings) -> Path:
    """Build the static GX Data Docs site (suites and every stored validation result); returns index.html."""
    context = gx_context(settings)
    for table in SUITE_TABLES:
        context.suites.add_or_update(gx_suite(table))
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    return data_docs_dir(settings) / "index.html"
