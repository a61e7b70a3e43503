"""Serving through Trino on a small real table: views, cone search, object lookup and ``alertlake sql`` export.

A silver-like Delta table is built with Spark from the shared ZTF sample alerts (canonical columns, history,
quality flag, a module score and the HEALPix column) under a temporary lake root, registered in Trino under
throw-away schemas, and every answer is compared with the same computation done in pandas / astropy.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alertlake.lake import table_uri
from alertlake.serving import (
    HEALPIX_ORDER,
    Schemas,
    cone_ranges,
    cone_search_sql,
    ensure_views,
    healpix_index,
    object_lookup_sql,
    with_healpix,
)
from alertlake.settings import Settings
from alertlake.surveys.canonical import SCHEMA
from alertlake.trino import query, register_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration


@dataclass
class ServedLake:
    """The test lake: its settings, schema names, and the silver rows as pandas for expected answers."""

    settings: Settings
    schemas: Schemas
    alerts: pd.DataFrame

    @property
    def silver(self) -> str:
        """Full Trino name of the test silver table."""
        return f"{self.settings.trino_catalog}.{self.schemas.silver}.alerts"

    def views(self, name: str) -> str:
        """Full Trino name of a test view."""
        return f"{self.settings.trino_catalog}.{self.schemas.views}.{name}"


def sample_alerts() -> pd.DataFrame:
    """Canonical rows of every shared ZTF sample alert, with a quality flag and a deterministic module score."""
    from alertlake.surveys import get_survey
    from alertlake.surveys.canonical import to_table
    from alertlake.surveys.samples import sample_messages

    ztf = get_survey("ztf")
    rows = [row for s in sample_messages("ztf") for row in ztf.to_canonical(ztf.decode_alerts(s.message))]
    frame = to_table(rows).to_pandas()
    frame = frame.drop_duplicates("alert_id").reset_index(drop=True)
    frame["quality_pass"] = frame["reliability"].fillna(0) > 0.5
    frame["supernova_score"] = (frame["alert_id"] % 997) / 997.0
    return frame


@pytest.fixture(scope="module")
def served(services: Settings, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLake]:
    """Silver built with Spark from real alerts in a temporary lake, registered in Trino; removed afterwards."""
    lake = tmp_path_factory.mktemp("served-lake")
    settings = services.model_copy(update={"lake_root": str(lake)})
    schemas = Schemas.prefixed(f"test_{uuid.uuid4().hex[:8]}_")
    alerts = sample_alerts()

    staging = lake / "staging.parquet"
    canonical = alerts.drop(columns=["quality_pass", "supernova_score"])
    pq.write_table(pa.Table.from_pandas(canonical, schema=SCHEMA, preserve_index=False), staging)
    extra = spark.createDataFrame(alerts[["alert_id", "quality_pass", "supernova_score"]])
    silver = with_healpix(spark.read.parquet(str(staging)).join(extra, "alert_id"))
    silver.write.format("delta").partitionBy("night").save(table_uri(settings, f"{schemas.silver}.alerts"))
    register_table(settings, f"{schemas.silver}.alerts")
    try:
        yield ServedLake(settings, schemas, alerts)
    finally:
        cat = settings.trino_catalog
        existing = {r[0] for r in query(settings, f"SHOW SCHEMAS FROM {cat}")}
        for schema in (schemas.views, schemas.silver, schemas.gold):
            if schema not in existing:
                continue
            try:
                for (name,) in query(settings, f"SHOW TABLES FROM {cat}.{schema}"):
                    kind = query(
                        settings,
                        f"SELECT table_type FROM {cat}.information_schema.tables "
                        f"WHERE table_schema = '{schema}' AND table_name = '{name}'",
                    )[0][0]
                    if kind == "VIEW":
                        query(settings, f"DROP VIEW {cat}.{schema}.{name}")
                    else:
                        query(
                            settings,
                            f"CALL {cat}.system.unregister_table(schema_name => '{schema}', table_name => '{name}')",
                        )
                query(settings, f"DROP SCHEMA IF EXISTS {cat}.{schema}")
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own result
                print(f"cleanup of {schema} failed: {exc}")


def frame(settings: Settings, sql: str) -> pd.DataFrame:
    """Run ``sql`` on Trino and return a DataFrame."""
    from alertlake.trino import connect

    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
        # object dtype: a bigint column with nulls must not become float64 (alert ids exceed 2**53)
        return pd.DataFrame(rows, columns=[d[0] for d in cur.description], dtype=object)
    finally:
        conn.close()


def test_healpix_index_is_nested_and_hierarchical() -> None:
    """Coarser cells are the stored index shifted right; invalid positions get -1."""
    from astropy import units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra = np.array([0.0, 10.5, 359.999, 180.0, np.nan])
    dec = np.array([0.0, -45.2, 89.9, -89.9, 10.0])
    idx = healpix_index(ra, dec)
    assert idx[-1] == -1
    for depth in (0, 5, 11):
        expected = lonlat_to_healpix(Longitude(ra[:4] * u.deg), Latitude(dec[:4] * u.deg), depth)
        assert list(idx[:4] >> (2 * (HEALPIX_ORDER - depth))) == list(expected)
    # every cell of the cone's cover is inside one of the ranges, and the centre's cell is covered
    centre = int(healpix_index(10.5, -45.2)[0])
    assert any(lo <= centre <= hi for lo, hi in cone_ranges(10.5, -45.2, 60.0))
    with pytest.raises(ValueError, match="not a sky position"):
        cone_ranges(10.0, 95.0, 60.0)


def test_views_exist_and_are_idempotent(served: ServedLake) -> None:
    """Views are created only for sources that exist; a second call replaces them without error."""
    created = ensure_views(served.settings, served.schemas)
    names = {c.rsplit(".", 1)[1] for c in created}
    assert names == {"light_curves", "night_alerts", "night_summary", "latest_classification"}
    assert ensure_views(served.settings, served.schemas) == created
    listed = {r[0] for r in query(served.settings, f"SHOW TABLES FROM lake.{served.schemas.views}")}
    assert names <= listed


def test_night_views_match_pandas(served: ServedLake) -> None:
    """``night_alerts`` and ``night_summary`` give the alerts and counts of each night."""
    ensure_views(served.settings, served.schemas)
    expected = served.alerts.groupby("night").agg(
        alerts=("alert_id", "size"), objects=("object_id", "nunique"), passed=("quality_pass", "sum")
    )
    summary = frame(served.settings, f"SELECT * FROM {served.views('night_summary')}").set_index("night")
    assert summary["alerts"].to_dict() == expected["alerts"].to_dict()
    assert summary["objects"].to_dict() == expected["objects"].to_dict()
    assert summary["quality_passed"].to_dict() == expected["passed"].to_dict()

    night = expected["alerts"].idxmax()
    got = frame(served.settings, f"SELECT alert_id FROM {served.views('night_alerts')} WHERE night = '{night}'")
    assert set(got.alert_id) == set(served.alerts.loc[served.alerts.night == night, "alert_id"])


def test_light_curve_is_deduplicated_union_of_alerts_and_history(served: ServedLake) -> None:
    """One row per (epoch, band, kind) of the object; the alert's own rows carry its alert id."""
    ensure_views(served.settings, served.schemas)
    counts = served.alerts.object_id.value_counts()
    object_id = str(counts.index[0])  # the object with the most alerts
    mine = served.alerts[served.alerts.object_id == object_id]
    expected = {(round(m, 9), b, "detection") for m, b in zip(mine.mjd, mine.band, strict=True)}
    for history in mine.history:
        for h in history if history is not None else []:
            expected.add((round(h["mjd"], 9), h["band"], h["kind"]))

    curve = frame(
        served.settings, f"SELECT * FROM {served.views('light_curves')} WHERE object_id = '{object_id}' ORDER BY mjd"
    )
    keys = [(round(m, 9), b, k) for m, b, k in zip(curve.mjd, curve.band, curve.kind, strict=True)]
    assert len(keys) == len(set(keys)), "light curve has duplicate epochs"
    assert set(keys) == expected
    own = curve[curve.alert_id.notna()]
    assert set(own.alert_id) == set(mine.alert_id)
    assert list(curve.mjd) == sorted(curve.mjd)


def test_latest_classification_is_newest_alert_per_object(served: ServedLake) -> None:
    """From silver (no gold.objects here): one row per object, its newest alert, with the alert count."""
    ensure_views(served.settings, served.schemas)
    latest = frame(served.settings, f"SELECT * FROM {served.views('latest_classification')}")
    assert latest.object_id.is_unique
    assert len(latest) == served.alerts.object_id.nunique()
    newest = served.alerts.sort_values(["mjd", "alert_id"]).groupby("object_id").tail(1).set_index("object_id")
    got = latest.set_index("object_id")
    assert got["last_alert_id"].to_dict() == newest["alert_id"].to_dict()
    assert got["n_alerts"].to_dict() == served.alerts.object_id.value_counts().to_dict()
    assert got["first_mjd"].to_dict() == served.alerts.groupby("object_id").mjd.min().to_dict()
    assert "supernova_score" in latest.columns  # module scores, shaped like gold.objects


def test_filter_hits_view_appears_with_its_source(served: ServedLake, spark: SparkSession) -> None:
    """``filter_hits`` is created once gold.filter_hits exists, joined to the alert's position from silver."""
    some = served.alerts.head(5)
    hits = spark.createDataFrame(
        pd.DataFrame(
            {
                "survey": "ztf",
                "alert_id": some.alert_id,
                "filter": "test_filter",
                "topic": "alertlake.ztf.test_filter",
            }
        )
    )
    name = f"{served.schemas.gold}.filter_hits"
    hits.write.format("delta").save(table_uri(served.settings, name))
    register_table(served.settings, name)
    created = ensure_views(served.settings, served.schemas)
    assert served.views("filter_hits") in created
    got = frame(served.settings, f"SELECT alert_id, object_id, ra FROM {served.views('filter_hits')}")
    objects = dict(zip(some.alert_id, some.object_id, strict=True))
    positions = dict(zip(some.alert_id, some.ra, strict=True))
    assert set(got.alert_id) == set(some.alert_id)
    for row in got.itertuples():
        assert row.object_id == objects[row.alert_id]
        assert row.ra == pytest.approx(positions[row.alert_id])


@pytest.mark.parametrize("k", [1, 4, 12])
def test_cone_search_returns_exactly_the_rows_within_radius(served: ServedLake, k: int) -> None:
    """The HEALPix-pruned cone returns the same rows as astropy's separation test, radius between neighbours."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    alerts = served.alerts
    centre = alerts.iloc[(k * 37) % len(alerts)]
    coords = SkyCoord(alerts.ra.to_numpy() * u.deg, alerts.dec.to_numpy() * u.deg)
    sep = coords.separation(SkyCoord(centre.ra * u.deg, centre.dec * u.deg)).arcsec
    distinct = np.unique(np.round(sep, 3))
    # a radius half-way between the k-th and (k+1)-th distinct separations: no row sits on the boundary
    radius = float((distinct[min(k, len(distinct) - 2)] + distinct[min(k + 1, len(distinct) - 1)]) / 2)
    radius = min(radius, 36000.0)
    expected = set(alerts.alert_id[sep <= radius])
    assert expected, "the cone must contain rows for the test to mean something"

    got = frame(served.settings, cone_search_sql(centre.ra, centre.dec, radius, served.silver, ["alert_id"]))
    assert set(got.alert_id) == expected
    assert list(got.distance_arcsec) == sorted(got.distance_arcsec)
    assert got.distance_arcsec.max() <= radius


def test_object_lookup_returns_every_alert_of_the_object(served: ServedLake) -> None:
    """Object lookup returns exactly the object's alerts, oldest first."""
    object_id = str(served.alerts.object_id.value_counts().index[0])
    got = frame(served.settings, object_lookup_sql(object_id, served.silver, ["alert_id", "mjd"]))
    mine = served.alerts[served.alerts.object_id == object_id].sort_values(["mjd", "alert_id"])
    assert list(got.alert_id) == list(mine.alert_id)
    assert frame(served.settings, object_lookup_sql("no-such-object'--", served.silver)).empty


def test_sql_command_exports_csv_and_parquet(served: ServedLake, tmp_path: Path, monkeypatch: Any) -> None:
    """``alertlake sql --csv/--parquet`` writes every row; a Trino error is one clear line and exit status 1."""
    from typer.testing import CliRunner

    from alertlake import cli_sql

    ensure_views(served.settings, served.schemas)
    runner = CliRunner()
    out_csv, out_parquet = tmp_path / "night.csv", tmp_path / "night.parquet"
    sql = f"SELECT night, alerts, objects FROM {served.views('night_summary')} ORDER BY night"
    result = runner.invoke(cli_sql.app, [sql, "--csv", str(out_csv), "--parquet", str(out_parquet), "--max-rows", "1"])
    assert result.exit_code == 0, result.output
    expected = served.alerts.groupby("night").size()
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["night"] for r in rows] == list(expected.index)
    assert [int(r["alerts"]) for r in rows] == list(expected)
    assert pq.read_table(out_parquet).column("alerts").to_pylist() == list(expected)
    assert "night" in result.output and f"{len(expected)} row" in result.output

    bad = runner.invoke(cli_sql.app, [f"SELECT * FROM {served.schemas.silver}.no_such_table"])
    assert bad.exit_code == 1
    assert "TABLE_NOT_FOUND" in bad.output and "Traceback" not in bad.output
