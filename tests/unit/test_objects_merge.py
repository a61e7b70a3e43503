"""gold.objects MERGE rules (delta-rs, a real Delta table in a temporary lake): latest alert, counts, once per batch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from alertlake.settings import Settings
from jobs.distribute import merge_objects

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
APP = "distribute.objects"


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
