"""gold.objects kept from silver by jobs.objects (delta-rs, real Delta tables in a temporary lake): MERGE rules,
state per object, silver versions read once, skipped or rebuilt."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from alertlake.settings import Settings
from jobs.objects import merge_objects

SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("object_id", pa.string()),
        ("last_alert_id", pa.int64()),
        ("last_mjd", pa.float64()),
        ("last_dec", pa.float64()),
        ("supernova_score", pa.float32()),
        ("n_alerts", pa.int64()),
        ("first_mjd", pa.float64()),
        ("last_kafka_timestamp", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
APP = "objects"


def state(object_id: str, alert_id: int, mjd: float, n: int, first: float, second: int, **extra: Any) -> dict[str, Any]:
    stamp = dt.datetime(2026, 1, 5, 3, 0, second, tzinfo=dt.UTC)
    return {
        "survey": "ztf",
        "object_id": object_id,
        "last_alert_id": alert_id,
        "last_mjd": mjd,
        "last_dec": -mjd,
        "supernova_score": 0.1 * n,
        "n_alerts": n,
        "first_mjd": first,
        "last_kafka_timestamp": stamp,
        "updated_at": stamp,
        **extra,
    }


def rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    table = DeltaTable(str(tmp_path / "gold" / "objects")).to_pyarrow_table()
    return {r["object_id"]: r for r in table.to_pylist()}


def test_objects_merge_keeps_latest_alert_sums_counts_and_runs_once_per_batch(tmp_path: Path) -> None:
    settings = Settings(lake_root=str(tmp_path))
    write_deltalake(str(tmp_path / "gold" / "objects"), SCHEMA.empty_table())

    first = pa.Table.from_pylist([state("a", 1, 60010.0, 2, 60009.0, 1)], SCHEMA)
    assert merge_objects(settings, first, APP, 0)
    assert not merge_objects(settings, first, APP, 0)  # a replayed batch (restart after a kill): no change
    assert rows(tmp_path)["a"]["n_alerts"] == 2

    # An older alert of "a" arrives late: counts and first detection change, the latest alert stays.
    second = pa.Table.from_pylist(
        [state("a", 0, 60008.0, 1, 60008.0, 2), state("b", 3, 60011.0, 1, 60011.0, 2)], SCHEMA
    )
    assert merge_objects(settings, second, APP, 1)
    got = rows(tmp_path)
    assert (got["a"]["last_alert_id"], got["a"]["last_dec"], got["a"]["n_alerts"]) == (1, -60010.0, 3)
    assert got["a"]["first_mjd"] == 60008.0 and got["a"]["updated_at"].second == 1
    assert got["b"]["n_alerts"] == 1 and got["b"]["last_alert_id"] == 3

    # A newer alert (and a module output new to the table, added as a column): latest columns replaced.
    third = pa.Table.from_pylist([state("a", 7, 60012.0, 3, 60011.5, 3)], SCHEMA)
    third = third.append_column("anomaly_score", pa.array([0.7]))
    assert merge_objects(settings, third, APP, 2)
    got = rows(tmp_path)
    assert (got["a"]["last_alert_id"], got["a"]["n_alerts"], got["a"]["first_mjd"]) == (7, 6, 60008.0)
    assert got["a"]["anomaly_score"] == 0.7 and got["b"]["anomaly_score"] is None
    assert got["a"]["updated_at"].second == 3
    assert not merge_objects(settings, second, APP, 1)  # an older batch id than the last merged: skipped
    assert rows(tmp_path)["a"]["n_alerts"] == 6
    assert DeltaTable(str(tmp_path / "gold" / "objects")).transaction_version(APP) == 2


# --- from silver: jobs.objects.step -------------------------------------------------------------------------------

SILVER_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("object_id", pa.string()),
        ("alert_id", pa.int64()),
        ("mjd", pa.float64()),
        ("night", pa.string()),
        ("ra", pa.float64()),
        ("mag", pa.float32()),
        ("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        ("enrich_batch", pa.string()),
        ("supernova_score", pa.float32()),
        ("history", pa.list_(pa.float64())),  # a column gold.objects does not read
    ]
)


def alert(object_id: str, alert_id: int, mjd: float, batch: str, score: float | None = 0.5) -> dict[str, Any]:
    return {
        "survey": "ztf",
        "object_id": object_id,
        "alert_id": alert_id,
        "mjd": mjd,
        "night": "2026-01-05" if mjd < 60100 else "2026-01-06",
        "ra": mjd / 1000,
        "mag": 18.0,
        "kafka_timestamp": dt.datetime(2026, 1, 5, 3, 0, alert_id % 60, tzinfo=dt.UTC),
        "enrich_batch": batch,
        "supernova_score": score,
        "history": [1.0, 2.0],
    }


def append(lake: Path, alerts: list[dict[str, Any]], schema: pa.Schema = SILVER_SCHEMA) -> None:
    write_deltalake(
        str(lake / "silver" / "alerts"),
        pa.Table.from_pylist(alerts, schema),
        mode="append",
        partition_by=["night"],
        schema_mode="merge",
    )


def gate(lake: Path, **status: str) -> None:
    """quality.batches with the given verdict per silver batch key."""
    from alertlake.quality import BATCHES_SCHEMA

    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    rows = [
        {"table": "silver.alerts", "batch_key": k, "status": s, "rows": 1, "checked_at": now} for k, s in status.items()
    ]
    write_deltalake(str(lake / "quality" / "batches"), pa.Table.from_pylist(rows, BATCHES_SCHEMA), mode="overwrite")


def objects_rows(lake: Path) -> dict[str, dict[str, Any]]:
    return {r["object_id"]: r for r in DeltaTable(str(lake / "gold" / "objects")).to_pyarrow_table().to_pylist()}


def without_updated_at(got: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {c: v for c, v in r.items() if c != "updated_at"} for k, r in got.items()}


def test_combine_takes_the_latest_alert_whole_and_sums_counts() -> None:
    """The latest alert's columns come as a whole (a null score stays null, not an older alert's value); ties on
    mjd go to the greater alert id; counts, first detection and last Kafka timestamp over every alert."""
    from jobs.objects import as_states, combine

    table = pa.Table.from_pylist(
        [
            alert("a", 5, 60010.0, "b1", 0.9),
            alert("a", 7, 60011.0, "b1", None),
            alert("a", 3, 60009.0, "b1", 0.1),
            alert("b", 2, 60010.0, "b1", 0.2),
            alert("b", 4, 60010.0, "b1", 0.4),
        ],
        SILVER_SCHEMA,
    )
    state = combine(as_states(table, ["alert_id", "mjd", "ra", "supernova_score"]))
    got = {r["object_id"]: r for r in state.to_pylist()}
    assert state.column_names[:2] == ["survey", "object_id"]
    assert state.column_names[-3:] == ["n_alerts", "first_mjd", "last_kafka_timestamp"]
    assert (got["a"]["last_alert_id"], got["a"]["supernova_score"], got["a"]["n_alerts"]) == (7, None, 3)
    assert got["a"]["first_mjd"] == 60009.0 and got["a"]["last_kafka_timestamp"].second == 7
    assert (got["b"]["last_alert_id"], got["b"]["supernova_score"], got["b"]["n_alerts"]) == (4, 0.4000000059604645, 2)
    # Combining partial states gives the same as combining the alerts at once (how a rebuild reduces in chunks).
    halves = [combine(as_states(table.slice(0, 2), ["alert_id", "mjd", "ra", "supernova_score"]))]
    halves.append(combine(as_states(table.slice(2), ["alert_id", "mjd", "ra", "supernova_score"])))
    assert sorted(combine(pa.concat_tables(halves)).to_pylist(), key=str) == sorted(state.to_pylist(), key=str)


def test_step_reads_each_appended_version_once_gated_and_skips_rewrites(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    from jobs.objects import APP_ID, step

    settings = Settings(lake_root=str(tmp_path))
    assert step(settings) is None  # no silver yet
    gate(tmp_path, b1="passed", b2="passed", b3="held", b4="released")
    append(tmp_path, [alert("a", 1, 60010.0, "b1"), alert("b", 2, 60010.0, "b1")])  # version 0

    first = step(settings)  # no gold.objects yet: built from the snapshot
    assert first is not None and first.rebuilt == "new table" and first.created
    assert (first.merged_through, first.alerts, first.objects) == (0, 2, 2)

    append(tmp_path, [alert("a", 3, 60012.0, "b2", 0.8), alert("c", 4, 60012.0, "b2")])  # version 1
    append(tmp_path, [alert("d", 5, 60013.0, "b3"), alert("a", 6, 60014.0, "b3")])  # 2: held by the gate
    DeltaTable(str(tmp_path / "silver" / "alerts")).optimize.compact()  # 3: rewrites files, adds no alert
    append(tmp_path, [alert("a", 7, 60008.0, "b4", 0.3)])  # 4: an older alert, in a released batch

    second = step(settings)
    assert second is not None and second.rebuilt is None and not second.created
    assert (second.merged_through, second.head, second.alerts, second.objects) == (4, 4, 3, 2)
    assert second.skipped == ["3: OPTIMIZE adds no alerts"]
    got = objects_rows(tmp_path)
    assert set(got) == {"a", "b", "c"}  # d's only alert is in a held batch
    a = got["a"]
    assert (a["last_alert_id"], a["last_mjd"], a["n_alerts"], a["first_mjd"]) == (3, 60012.0, 3, 60008.0)
    assert abs(a["supernova_score"] - 0.8) < 1e-6 and a["last_night"] == "2026-01-05"
    assert "last_mag" in a and "history" not in a and "enrich_batch" not in a
    assert DeltaTable(str(tmp_path / "gold" / "objects")).transaction_version(APP_ID) == 4

    again = step(settings)  # nothing new: nothing read, nothing committed
    assert again is not None and (again.merged_through, again.alerts) == (4, 0)
    assert DeltaTable(str(tmp_path / "gold" / "objects")).version() == 1

    # The same state rebuilt from the snapshot (what a new lake or --rebuild does).
    incremental = without_updated_at(objects_rows(tmp_path))
    rebuilt = step(settings, rebuild_now=True)
    assert rebuilt is not None and rebuilt.rebuilt == "asked for" and rebuilt.merged_through == 4
    assert without_updated_at(objects_rows(tmp_path)) == incremental

    # A night recomputed (rows replaced) is skipped, as the streams skip it: counts do not change.
    write_deltalake(
        str(tmp_path / "silver" / "alerts"),
        pa.Table.from_pylist([alert("b", 2, 60010.0, "b1")], SILVER_SCHEMA),
        mode="overwrite",
        predicate="night = '2026-01-05'",
        partition_by=["night"],
    )  # version 5
    # A module output new to silver (schema evolution) becomes a column of gold.objects.
    with_anomaly = SILVER_SCHEMA.append(pa.field("anomaly_score", pa.float64()))
    append(tmp_path, [{**alert("e", 8, 60015.0, "b2"), "anomaly_score": 0.7}], with_anomaly)  # version 6
    third = step(settings)
    assert third is not None and (third.merged_through, third.alerts, third.objects) == (6, 1, 1)
    assert third.skipped == ["5: WRITE removes or replaces rows"]
    got = objects_rows(tmp_path)
    assert got["b"]["n_alerts"] == 1 and got["a"]["n_alerts"] == 3
    assert got["e"]["anomaly_score"] == 0.7 and got["a"]["anomaly_score"] is None


def test_step_rebuilds_when_the_versions_to_read_were_vacuumed(tmp_path: Path) -> None:
    """Stopped longer than the retention: the versions to read are gone, so the table is rebuilt from the
    snapshot, and a table kept by an earlier release (no 'objects' transaction) is rebuilt, not counted twice."""
    from deltalake import DeltaTable

    from jobs.objects import step

    settings = Settings(lake_root=str(tmp_path))
    gate(tmp_path, b1="passed")
    append(tmp_path, [alert("a", 1, 60010.0, "b1")])
    assert step(settings) is not None
    append(tmp_path, [alert("a", 2, 60011.0, "b1")])
    append(tmp_path, [alert("b", 3, 60011.0, "b1")])
    silver = DeltaTable(str(tmp_path / "silver" / "alerts"))
    silver.optimize.compact()
    silver.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)

    done = step(settings)
    assert done is not None and done.rebuilt is not None and "deleted (VACUUM)" in done.rebuilt
    got = objects_rows(tmp_path)
    assert (got["a"]["n_alerts"], got["a"]["last_alert_id"], got["b"]["n_alerts"]) == (2, 2, 1)

    # An earlier release's table: same rows, another app id's transaction only.
    table = DeltaTable(str(tmp_path / "gold" / "objects")).to_pyarrow_table()
    shutil.rmtree(tmp_path / "gold" / "objects")
    write_deltalake(str(tmp_path / "gold" / "objects"), table, commit_properties=legacy_commit())
    done = step(settings)
    assert done is not None and done.rebuilt == "no 'objects' transaction in it" and not done.created
    assert objects_rows(tmp_path)["a"]["n_alerts"] == 2


def legacy_commit() -> Any:
    from deltalake import CommitProperties, Transaction

    return CommitProperties(app_transactions=[Transaction(app_id="distribute.objects", version=41)])


def test_parse_interval() -> None:
    from jobs.objects import parse_interval

    assert parse_interval("30 seconds") == 30 and parse_interval("2 minutes") == 120
    assert parse_interval("1 second") == 1 and parse_interval("500 ms") == 0.5
    with pytest.raises(ValueError, match="expected a number and a unit"):
        parse_interval("soon")


def test_objects_thread_follows_silver_until_stopped(tmp_path: Path) -> None:
    """In a job's process (a thread shaped like a streaming query): new silver versions are merged each interval;
    bounded without silver, it fails with a clear error."""
    import time

    from jobs.objects import keep_current, start

    settings = Settings(lake_root=str(tmp_path), trino_register=False)  # a throw-away lake
    with pytest.raises(RuntimeError, match=r"silver\.alerts does not exist yet"):
        keep_current(settings, bounded=True)
    gate(tmp_path, b1="passed")
    append(tmp_path, [alert("a", 1, 60010.0, "b1")])
    thread = start(settings, "continuous", "200 ms")

    def n_alerts() -> int | None:
        location = tmp_path / "gold" / "objects"
        return objects_rows(tmp_path).get("a", {}).get("n_alerts") if location.exists() else None

    try:
        deadline = time.monotonic() + 30
        while n_alerts() != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        append(tmp_path, [alert("a", 2, 60011.0, "b1")])
        while n_alerts() != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert n_alerts() == 2 and thread.isActive
    finally:
        thread.stop()
    assert not thread.isActive and thread.exception() is None
