"""The data-quality gate's pure logic: suites, compilation to Spark SQL, verdicts, reconciliation gaps."""

from __future__ import annotations

from typing import Any

import pytest

from alertlake import quality
from alertlake.reconcile import offset_gaps
from alertlake.report import _quantiles


@pytest.mark.parametrize("table", quality.SUITE_TABLES)
def test_every_table_has_a_valid_suite_with_severities(table: str) -> None:
    suite = quality.gx_suite(table)  # GX validates every expectation's arguments
    raw = quality.suite_definition(table)
    assert suite.name == quality.suite_name(table) and len(suite.expectations) == len(raw["expectations"])
    assert {e["severity"] for e in raw["expectations"]} <= {"critical", "warning"}
    for _, expectation in quality.in_batch_expectations(raw):
        assert expectation["type"] in quality.SUPPORTED


def test_silver_suite_covers_ranges_provenance_and_cut_consistency() -> None:
    raw = quality.suite_definition("silver.alerts")["expectations"]
    by_column = {(e["type"], e["kwargs"].get("column")): e for e in raw}
    assert by_column[("expect_column_values_to_be_between", "supernova_score")]["kwargs"]["max_value"] == 1.0
    assert by_column[("expect_column_values_to_not_be_null", "xmatch_model_uri")]["severity"] == "critical"
    assert by_column[("expect_column_values_to_be_null", "xmatch_error")]["severity"] == "warning"
    conditions = [e["kwargs"].get("row_condition") for e in raw if e["kwargs"].get("column") == "quality_reason"]
    assert "quality_pass" in conditions and "NOT quality_pass" in conditions


def checks(*expectations: dict) -> list[tuple[int, dict]]:
    return list(enumerate(expectations))


RA: dict[str, Any] = {
    "type": "expect_column_values_to_be_between",
    "kwargs": {"column": "ra", "min_value": 0.0, "max_value": 360.0, "strict_max": True},
    "severity": "critical",
}
BAND: dict[str, Any] = {
    "type": "expect_column_values_to_be_in_set",
    "severity": "warning",
    "kwargs": {
        "column": "band",
        "value_set": ["g", "r"],
        "row_condition": "survey = 'ztf'",
        "condition_parser": "spark",
    },
}
UNIQUE: dict[str, Any] = {
    "type": "expect_compound_columns_to_be_unique",
    "kwargs": {"column_list": ["survey", "alert_id"]},
    "severity": "critical",
}


def test_compiled_sql_ignores_nulls_and_applies_row_conditions() -> None:
    plan = quality.aggregations(checks(RA, BAND, UNIQUE), ["ra", "band", "survey", "alert_id"])
    sql = dict(plan.aggregates)
    assert sql[plan.counts[0]["unexpected"]] == "count_if((`ra` IS NOT NULL AND NOT (`ra` >= 0.0 AND `ra` < 360.0)))"
    assert sql[plan.counts[0]["element"]] == "count(1)"
    assert sql[plan.counts[1]["element"]] == "count_if((survey = 'ztf'))"
    assert "NOT (`band` IN ('g', 'r'))" in sql[plan.counts[1]["unexpected"]]
    _, distinct = plan.counts[2]["unexpected"].split("-")
    assert "collect_set" in sql[distinct] and "struct(`survey`, `alert_id`)" in sql[distinct]
    # Identical aggregates are computed once.
    assert len(set(sql.values())) == len(sql)


def test_missing_column_fails_without_an_aggregate() -> None:
    plan = quality.aggregations(checks(RA), ["dec"])
    assert 0 not in plan.counts
    (result,) = quality.evaluate(checks(RA), {"dec": "DoubleType"}, plan, {"m0": 3})
    assert not result.success and "ra" in str(result.observed)


def test_evaluate_and_verdict() -> None:
    columns = {"ra": "DoubleType", "band": "StringType", "survey": "StringType", "alert_id": "LongType"}
    plan = quality.aggregations(checks(RA, BAND, UNIQUE), columns)
    counts = {0: (10, 10, 1), 1: (8, 8, 2), 2: (10, 10, 0)}
    stats: dict[str, int] = {"m0": 10}
    for i, (element, nonnull, unexpected) in counts.items():
        refs = plan.counts[i]
        stats[refs["element"]] = element
        if "-" in refs["unexpected"]:
            a, b = refs["unexpected"].split("-")
            stats[a], stats[b] = nonnull, nonnull - unexpected
        else:
            stats[refs["nonnull"]], stats[refs["unexpected"]] = nonnull, unexpected
    results = quality.evaluate(checks(RA, BAND, UNIQUE), columns, plan, stats, {0: (["400.0"], [42])})
    assert [r.success for r in results] == [False, False, True]
    assert results[0].unexpected_percent == 10.0 and results[1].unexpected_count == 2
    status, critical, warnings = quality.verdict_status(results)
    assert status == quality.HELD
    assert critical == [
        "expect_column_values_to_be_between(ra): 1 of 10 rows unexpected, e.g. ['400.0'] (alert ids [42])"
    ]
    assert len(warnings) == 1 and "where survey = 'ztf'" in warnings[0]
    # Warnings alone pass.
    assert quality.verdict_status(results[1:])[0] == quality.PASSED


def test_mostly_and_schema_checks() -> None:
    mostly = {**RA, "kwargs": {**RA["kwargs"], "mostly": 0.8}}
    columns_set = {"type": "expect_table_columns_to_match_set", "severity": "critical",
                   "kwargs": {"column_set": ["ra", "dec"], "exact_match": False}}  # fmt: skip
    plan = quality.aggregations(checks(mostly, columns_set), ["ra"])
    refs = plan.counts[0]
    stats = {"m0": 10, refs["nonnull"]: 10, refs["unexpected"]: 2}
    ok, schema = quality.evaluate(checks(mostly, columns_set), {"ra": "DoubleType"}, plan, stats)
    assert ok.success and not schema.success and schema.observed == {"missing": ["dec"], "unexpected": []}


def test_sql_literals_escape_quotes() -> None:
    assert quality.sql_literal("it's") == "'it\\'s'"
    assert quality.sql_literal(True) == "TRUE" and quality.sql_literal(2) == "2" and quality.sql_literal(None) == "NULL"


def test_offset_gaps_lists_missing_and_doubled_offsets() -> None:
    seen = [("ztf", 0, 0), ("ztf", 0, 1), ("ztf", 0, 1), ("ztf", 1, 5), ("ztf", 0, 9), ("lsst", 0, 2)]
    missing, doubled = offset_gaps({0: (0, 3), 1: (5, 6)}, "ztf", seen)
    assert missing == [("ztf", 0, 2)]
    assert doubled == [("ztf", 0, 1)]


def test_quantiles() -> None:
    q = _quantiles([float(x) for x in range(1, 101)])
    assert q["count"] == 100 and q["p50"] == 51.0 and q["max"] == 100.0
    assert _quantiles([])["p50"] is None


def test_null_checks_reuse_the_value_counts() -> None:
    not_null = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "ra"}, "severity": "critical"}
    null = {"type": "expect_column_values_to_be_null", "kwargs": {"column": "ra"}, "severity": "warning"}
    plan = quality.aggregations(checks(not_null, null, RA), ["ra"])
    assert len(plan.aggregates) == 3  # count(1), count_if(ra IS NOT NULL), RA's unexpected rows
    stats = {"m0": 10, plan.counts[0]["nonnull"]: 7, plan.counts[2]["unexpected"]: 0}
    missing, present, _ = quality.evaluate(checks(not_null, null, RA), {"ra": "DoubleType"}, plan, stats)
    assert (missing.unexpected_count, missing.success) == (3, False)
    assert (present.unexpected_count, present.success) == (7, False)


def test_gx_result_json_reads_back_as_gx_own_result(tmp_path: Any) -> None:
    """The in-batch gate writes GX's validation result without GX; GX reads it as the result it would build."""
    import datetime as dt
    import json

    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    from alertlake.settings import Settings

    table = quality.SILVER
    chosen = quality.in_batch_expectations(quality.suite_definition(table))
    results = []
    for n, (i, e) in enumerate(chosen):
        r = quality.CheckResult(i, e["type"], e["kwargs"].get("column"), e["kwargs"], e["severity"], n % 5 != 0)
        if n % 2:
            r.element_count, r.unexpected_count, r.unexpected_percent = 100, 3, 3.0
            r.examples, r.alert_ids = ["400.0", "-1.5"], [42, 43]
        else:
            r.observed = ["a", "b"] if n % 4 else 7
        results.append(r)
    checked_at = dt.datetime(2026, 11, 25, 16, 2, 30, 130898, tzinfo=dt.UTC)
    settings = Settings().model_copy(update={"state_dir": tmp_path})
    path = quality.write_gx_result(settings, table, "enrich_ztf:7", results, checked_at)

    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=quality.suite_name(table)),
        run_id=RunIdentifier(run_name="enrich_ztf_7", run_time=checked_at),
        batch_identifier="enrich_ztf_7",
    )
    assert path == quality.gx_result_path(settings, key)  # where GX's store puts it
    loaded = quality.gx_context(settings).validation_results_store.get(key)  # as Data Docs reads it
    assert loaded is not None
    expected = quality.to_gx_result(table, "enrich_ztf:7", results, checked_at)
    assert loaded.to_json_dict() == expected.to_json_dict()
    assert json.loads(path.read_text())["success"] is expected.success
    ValidationResultsPageRenderer().render(loaded)  # Data Docs can render it


def test_row_level_forms_reduce_to_the_aggregates() -> None:
    """The pipeline's way (row-level columns on the driver, reduced by pyarrow): flags as Spark would compute
    them for three rows, one a duplicate key with an out-of-range ra and a band outside the set."""
    import pyarrow as pa

    plan = quality.aggregations(checks(RA, BAND, UNIQUE), ["ra", "band", "survey", "alert_id", "night"])
    columns = plan.row_columns()
    assert {"night", "survey", "alert_id"} <= set(columns)
    band_scope = plan.flag(plan.counts[1]["element"])
    assert band_scope is not None and columns[band_scope] == "coalesce(((survey = 'ztf')), FALSE)"
    # The uniqueness check counts its non-null keys and their distinct values where one condition holds: one
    # column for both.
    distinct = plan.counts[2]["unexpected"].split("-")[1]
    assert plan.flag(plan.counts[2]["nonnull"]) == plan.flag(distinct)
    assert len([c for c in columns if c.startswith("gate_")]) == len(
        {a.condition for a in plan.rowwise.values()} - {None}
    )
    flags = {
        plan.counts[0]["nonnull"]: [True, True, False],
        plan.counts[0]["unexpected"]: [False, True, False],
        plan.counts[1]["element"]: [True, True, False],
        plan.counts[1]["nonnull"]: [True, True, False],
        plan.counts[1]["unexpected"]: [False, True, False],
        plan.counts[2]["nonnull"]: [True, True, True],
    }
    table = pa.table(
        {
            "survey": ["ztf", "ztf", "lsst"],
            "alert_id": [1, 1, 1],
            "night": ["2026-01-01", "2026-01-02", None],
            **{str(plan.flag(alias)): values for alias, values in flags.items()},
        }
    )
    assert set(columns) == set(table.column_names)
    stats = plan.reduce(table)
    assert stats["m0"] == 3 and stats[distinct] == 2
    assert plan.nights is not None and (stats[plan.nights[0]], stats[plan.nights[1]]) == ("2026-01-01", "2026-01-02")
    results = quality.evaluate(
        checks(RA, BAND, UNIQUE),
        {"ra": "DoubleType", "band": "StringType", "survey": "StringType", "alert_id": "LongType"},
        plan,
        stats,
    )
    assert [(r.success, r.unexpected_count) for r in results] == [(False, 1), (False, 1), (False, 1)]
    # An empty batch: zero counts, no nights, as Spark's aggregation gives.
    empty = plan.reduce(table.slice(0, 0))
    assert empty["m0"] == 0 and empty[distinct] == 0 and empty[plan.nights[0]] is None


def test_batch_record_reads_only_the_files_that_may_hold_its_key(tmp_path: Any) -> None:
    """quality.batches gets one file a batch; each upsert must skip the others by their statistics (it read them
    all, a cost growing through the night), and still update its own row, keeping a person's release."""
    from deltalake import DeltaTable

    from alertlake.settings import Settings

    settings = Settings(lake_root=str(tmp_path), trino_register=False)

    def row(key: str, status: str) -> dict[str, Any]:
        return {f.name: None for f in quality.BATCHES_SCHEMA} | {
            "table": "silver.alerts",
            "batch_key": key,
            "status": status,
        }

    assert quality._merge_batch(settings, row("pipeline_ztf:0", "passed")) == {}
    for i in range(1, 12):
        metrics = quality._merge_batch(settings, row(f"pipeline_ztf:{i}", "passed"))
        assert metrics["num_target_files_scanned"] == 0 and metrics["num_target_rows_inserted"] == 1
        assert metrics["num_target_files_skipped_during_scan"] == i
    again = quality._merge_batch(settings, row("pipeline_ztf:5", "failed"))
    assert again["num_target_files_scanned"] == 1 and again["num_target_rows_updated"] == 1
    quality._merge_batch(settings, row("pipeline_ztf:7", quality.RELEASED), keep_released=False)
    kept = quality._merge_batch(settings, row("pipeline_ztf:7", "failed"))
    assert kept["num_target_rows_updated"] == 0  # a retried check does not undo the release
    statuses = {
        r["batch_key"]: r["status"]
        for r in DeltaTable(str(tmp_path / "quality" / "batches")).to_pyarrow_table().to_pylist()
    }
    assert len(statuses) == 12
    assert statuses["pipeline_ztf:5"] == "failed" and statuses["pipeline_ztf:7"] == quality.RELEASED
