"""Serving the lake to SQL users: Trino views for the common questions, and fast access paths.

Views
    :func:`ensure_views` creates one Trino view per common question in the schema ``lake.views`` (not in the
    layer schemas, so a view can never collide with a Delta table a job writes, and ``SHOW TABLES FROM
    lake.views`` lists every canned question in one place). Views are ``SECURITY INVOKER``: a query through a
    view runs with the caller's own rights on the tables underneath, so a view never widens what a user may
    read (a ``scientist`` reading ``views.light_curves`` needs, and has, read access to ``silver``). A view is
    created only when its source tables exist, with ``CREATE OR REPLACE VIEW``, so calling it again after
    every new table (or new module column) is safe and keeps the views current.

    ==========================  ===================================================================
    view                        question
    ==========================  ===================================================================
    ``light_curves``            every measurement of an object, one row per epoch: each alert's own
                                detection plus the history (earlier detections, upper limits,
                                forced photometry) it carried, deduplicated
    ``latest_classification``   one row per object: its latest state and scores (``gold.objects`` when it
                                exists, else computed from ``silver.alerts`` with the same columns:
                                ``last_alert_id``, ``last_mjd`` ..., module scores, ``n_alerts``,
                                ``first_mjd``)
    ``night_alerts``            every silver alert with its night, ready for ``WHERE night = ...``
    ``night_summary``           counts per night and survey: alerts, objects, share passing quality cuts
    ``filter_hits``             which alert went to which stream (``gold.filter_hits``), with the alert's
                                position, time and magnitude from silver
    ==========================  ===================================================================

Fast access paths
    Silver carries a HEALPix index column ``healpix`` (nested scheme, order :data:`HEALPIX_ORDER`), written by
    the enrichment job with :func:`healpix_index`. :func:`cone_search_sql` turns a cone into the few ranges of
    ``healpix`` values whose cells cover it, so Trino prunes Delta files and Parquet pages by their min/max
    statistics, then keeps exactly the rows within the radius by angular distance. The table is laid out for
    that pruning by :func:`optimize_layout` (``OPTIMIZE ... ZORDER BY (healpix, object_id)``), the layout chosen
    by measurement in ``bench/query.py`` (figures in ``bench/results/query.json``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alertlake.settings import Settings
from alertlake.trino import query, sql_string

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

#: HEALPix order (depth) of the ``healpix`` column: nside = 2**16, cells of ~3.2 arcsec. Deep enough that a
#: cone of a few arcseconds is a handful of cells; any coarser cell is a contiguous range of these values.
HEALPIX_ORDER = 16
#: Name of the HEALPix index column in silver.
HEALPIX_COLUMN = "healpix"
#: Columns the silver layout clusters on (Z-order), in this order: cone search first, object lookup second.
CLUSTER_COLUMNS: tuple[str, ...] = (HEALPIX_COLUMN, "object_id")
#: Distinct object ids expected per Parquet row group, to size its bloom filter (1 % false positives).
BLOOM_EXPECTED_NDV = 200_000
#: Delta table property that makes Delta keep min/max statistics for these columns whatever their position
#: (by default only the first 32 columns get statistics, and silver is wider than that).
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"
#: Schema that holds the views.
VIEWS_SCHEMA = "views"
#: Prefixes of module output columns that describe what an object is (shown by ``latest_classification``).
CLASSIFICATION_PREFIXES: tuple[str, ...] = ("xmatch_", "supernova_", "anomaly_", "sso_")
#: Columns of an object's newest alert that ``latest_classification`` shows as ``last_<column>``, as in
#: ``gold.objects`` (written by ``jobs/distribute.py``), so the view has one shape whichever table it reads.
OBJECT_LATEST: tuple[str, ...] = (
    "alert_id",
    "mjd",
    "night",
    "ra",
    "dec",
    "band",
    "mag",
    "mag_err",
    "is_positive",
    "quality_pass",
)

_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


# --------------------------------------------------------------------------------------------------- HEALPix


def healpix_index(ra: Any, dec: Any, order: int = HEALPIX_ORDER) -> np.ndarray:
    """Nested HEALPix cell (int64) at ``order`` of each position (degrees, ICRS); -1 where ra/dec is invalid.

    Vectorised (cdshealpix); accepts scalars, sequences, numpy arrays or pandas Series. This is the function
    the enrichment job uses to fill silver's ``healpix`` column (see :func:`with_healpix` for Spark).
    """
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra_arr = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec_arr = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    out = np.full(ra_arr.shape, -1, dtype=np.int64)
    ok = np.isfinite(ra_arr) & np.isfinite(dec_arr) & (dec_arr >= -90.0) & (dec_arr <= 90.0)
    if ok.any():
        lon = Longitude(np.mod(ra_arr[ok], 360.0) * u.deg)
        lat = Latitude(dec_arr[ok] * u.deg)
        out[ok] = lonlat_to_healpix(lon, lat, order).astype(np.int64)
    return out


def with_healpix(df: DataFrame, ra: str = "ra", dec: str = "dec", order: int = HEALPIX_ORDER) -> DataFrame:
    """``df`` with the ``healpix`` column added, computed by :func:`healpix_index` in a vectorised pandas UDF."""
    return df.withColumn(HEALPIX_COLUMN, healpix_column(ra, dec, order))


def healpix_column(ra: str | Column = "ra", dec: str | Column = "dec", order: int = HEALPIX_ORDER) -> Column:
    """A Spark column expression: the nested HEALPix cell at ``order`` of (``ra``, ``dec``)."""
    from pyspark.sql.functions import pandas_udf

    # The type hints below are resolved by name in this module's globals, hence pandas imported at the top.
    @pandas_udf("long")  # type: ignore[call-overload]
    def _healpix(ra_s: pd.Series, dec_s: pd.Series) -> pd.Series:
        return pd.Series(healpix_index(ra_s.to_numpy(), dec_s.to_numpy(), order))

    return _healpix(ra, dec)


def query_depth(radius_arcsec: float, order: int = HEALPIX_ORDER) -> int:
    """The deepest order (<= ``order``) whose cells are at least as wide as the cone's radius.

    At that depth a cone is covered by a handful of cells (typically 4 to 9), which become as many ranges of
    the stored index: few enough for a short SQL predicate, tight enough to prune almost every file.
    """
    depth = order
    while depth > 0 and math.sqrt(4.0 * math.pi / (12 * 4**depth)) * _ARCSEC_PER_RAD < radius_arcsec:
        depth -= 1
    return depth


def cone_ranges(ra: float, dec: float, radius_arcsec: float, order: int = HEALPIX_ORDER) -> list[tuple[int, int]]:
    """Inclusive ranges of ``healpix`` values (at ``order``) whose cells cover the cone, merged and sorted."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import cone_search

    _check_cone(ra, dec, radius_arcsec)
    depth = query_depth(radius_arcsec, order)
    cells, _, _ = cone_search(
        Longitude(ra * u.deg), Latitude(dec * u.deg), radius_arcsec * u.arcsec, depth=depth, flat=True
    )
    shift = 2 * (order - depth)
    ranges: list[tuple[int, int]] = []
    for cell in sorted(int(c) for c in cells):
        lo, hi = cell << shift, ((cell + 1) << shift) - 1
        if ranges and ranges[-1][1] + 1 == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def _check_cone(ra: float, dec: float, radius_arcsec: float) -> None:
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ValueError(f"cone centre ra={ra}, dec={dec} is not a sky position (degrees, dec in [-90, 90])")
    if not (math.isfinite(radius_arcsec) and 0.0 < radius_arcsec <= 36000.0):
        raise ValueError(f"cone radius {radius_arcsec} arcsec must be in (0, 36000] (10 degrees)")


def angular_distance_sql(ra: float, dec: float, ra_col: str = "ra", dec_col: str = "dec") -> str:
    """SQL expression: angular distance in arcsec between (``ra_col``, ``dec_col``) and (ra, dec), haversine."""
    ra, dec = float(ra), float(dec)  # numpy scalars would print as np.float64(...)
    ra_r, dec_r = math.radians(ra), math.radians(dec)
    return (
        f"(2 * asin(sqrt(power(sin((radians({dec_col}) - {dec_r!r}) / 2), 2) + cos(radians({dec_col})) * "
        f"{math.cos(dec_r)!r} * power(sin((radians({ra_col}) - {ra_r!r}) / 2), 2))) * {_ARCSEC_PER_RAD!r})"
    )


def cone_search_sql(
    ra: float,
    dec: float,
    radius_arcsec: float,
    table: str = "lake.silver.alerts",
    columns: Sequence[str] | str = "*",
    order: int = HEALPIX_ORDER,
) -> str:
    """Trino SQL selecting the rows of ``table`` within ``radius_arcsec`` of (``ra``, ``dec``), nearest first.

    The ``healpix`` ranges (and a declination band) let Trino skip files and pages by their statistics; the
    exact angular distance then keeps precisely the rows inside the cone. A column ``distance_arcsec`` is added.
    """
    ra, dec, radius_arcsec = float(ra), float(dec), float(radius_arcsec)  # numpy scalars print as np.float64(...)
    ranges = cone_ranges(ra, dec, radius_arcsec, order)
    cells = " OR ".join(
        f"{HEALPIX_COLUMN} = {lo}" if lo == hi else f"{HEALPIX_COLUMN} BETWEEN {lo} AND {hi}" for lo, hi in ranges
    )
    pad = radius_arcsec / 3600.0
    cols = columns if isinstance(columns, str) else ", ".join(columns)
    distance = angular_distance_sql(ra, dec)
    return (
        f"SELECT * FROM (SELECT {cols}, {distance} AS distance_arcsec FROM {table} "
        f"WHERE ({cells}) AND dec BETWEEN {dec - pad!r} AND {dec + pad!r}) "
        f"WHERE distance_arcsec <= {float(radius_arcsec)!r} ORDER BY distance_arcsec"
    )


def object_lookup_sql(object_id: str, table: str = "lake.silver.alerts", columns: Sequence[str] | str = "*") -> str:
    """Trino SQL selecting every alert of ``object_id`` in ``table``, oldest first."""
    cols = columns if isinstance(columns, str) else ", ".join(columns)
    return f"SELECT {cols} FROM {table} WHERE object_id = {sql_string(object_id)} ORDER BY mjd, alert_id"


# ----------------------------------------------------------------------------------------------- Layout


def optimize_layout(spark: SparkSession, location: str, max_file_bytes: int | None = None) -> dict[str, Any]:
    """Cluster the Delta table at ``location`` for cone search and object lookup; returns OPTIMIZE metrics.

    ``OPTIMIZE ... ZORDER BY (healpix, object_id)`` rewrites each partition (night) so that every file, and
    every Parquet row group in it, covers a small patch of sky; Trino skips the others by their min/max
    statistics. Z-order rather than liquid clustering because silver is partitioned by night, which liquid
    clustering does not allow. Object ids carry no order a range could prune on, so the rewritten files also get
    a Parquet bloom filter on ``object_id``, which Trino's Parquet reader checks before reading a row group.
    ``bench/query.py`` measures the layout against the unclustered table.
    """
    from delta.tables import DeltaTable

    if max_file_bytes is not None:
        spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(max_file_bytes))
    # parquet-mr reads these per-column settings from the Hadoop configuration the write inherits.
    spark.conf.set("parquet.bloom.filter.enabled#object_id", "true")
    spark.conf.set("parquet.bloom.filter.expected.ndv#object_id", str(BLOOM_EXPECTED_NDV))
    try:
        table = DeltaTable.forPath(spark, location)
        metrics = table.optimize().executeZOrderBy(*CLUSTER_COLUMNS).collect()
    finally:
        spark.conf.unset("parquet.bloom.filter.enabled#object_id")
        spark.conf.unset("parquet.bloom.filter.expected.ndv#object_id")
    return metrics[0].asDict(recursive=True) if metrics else {}


# ------------------------------------------------------------------------------------------------ Views


@dataclass(frozen=True)
class Schemas:
    """Schema names of the layers the views read and of the views themselves (tests use throw-away ones)."""

    silver: str = "silver"
    gold: str = "gold"
    views: str = VIEWS_SCHEMA

    @classmethod
    def prefixed(cls, prefix: str) -> Schemas:
        """Schemas ``<prefix>silver``, ``<prefix>gold``, ``<prefix>views`` (for tests and benchmarks)."""
        return cls(f"{prefix}silver", f"{prefix}gold", f"{prefix}views")


def _columns(settings: Settings, schema: str, table: str, **connect_args: Any) -> list[str]:
    """Columns of ``lake.schema.table`` in order, or [] when the table does not exist."""
    rows = query(
        settings,
        f"SELECT column_name FROM {settings.trino_catalog}.information_schema.columns "
        f"WHERE table_schema = {sql_string(schema)} AND table_name = {sql_string(table)} "
        "ORDER BY ordinal_position",
        **connect_args,
    )
    return [r[0] for r in rows]


def _light_curves_sql(silver: str, cols: Sequence[str]) -> str:
    """One row per measurement and object: alerts' own detections plus their history, deduplicated."""
    # An object's history is repeated in each of its alerts; keep one row per (object, epoch, band, kind),
    # preferring the alert's own measurement (which carries an alert_id) over a copy from a later history.
    alert_rows = (
        "SELECT survey, object_id, alert_id, mjd, band, 'detection' AS kind, CAST(flux AS double) AS flux, "
        "CAST(flux_err AS double) AS flux_err, CAST(mag AS double) AS mag, CAST(mag_err AS double) AS mag_err, "
        f"CAST(NULL AS double) AS limiting_mag, 1 AS from_alert FROM {silver}"
    )
    parts = [alert_rows]
    if "history" in cols:
        parts.append(
            "SELECT a.survey, a.object_id, CAST(NULL AS bigint) AS alert_id, h.mjd, h.band, h.kind, "
            "CAST(h.flux AS double), CAST(h.flux_err AS double), CAST(h.mag AS double), "
            "CAST(h.mag_err AS double), CAST(h.limiting_mag AS double), 0 AS from_alert "
            f"FROM {silver} a CROSS JOIN UNNEST(a.history) AS h"
        )
    union = " UNION ALL ".join(parts)
    return (
        "SELECT survey, object_id, alert_id, mjd, band, kind, flux, flux_err, mag, mag_err, limiting_mag FROM ("
        "SELECT *, row_number() OVER (PARTITION BY survey, object_id, mjd, band, kind "
        f"ORDER BY from_alert DESC, alert_id DESC) AS rank_ FROM ({union}) m) WHERE rank_ = 1"
    )


def _latest_from_silver_sql(silver: str, cols: Sequence[str]) -> str:
    """One row per object from its newest alert in silver, shaped like ``gold.objects`` (same column names)."""
    latest = [c for c in OBJECT_LATEST if c in cols]
    scores = [
        c
        for c in cols
        if c.startswith(CLASSIFICATION_PREFIXES) and not c.endswith(("_version", "_model_uri", "_error"))
    ]
    picked = ", ".join([*(f'"{c}" AS "last_{c}"' for c in latest), *(f'"{c}"' for c in scores)])
    out = ", ".join([*(f'"last_{c}"' for c in latest), *(f'"{c}"' for c in scores)])
    return (
        f"SELECT survey, object_id, {out}, n_alerts, first_mjd FROM (SELECT survey, object_id, {picked}, "
        "count(*) OVER (PARTITION BY survey, object_id) AS n_alerts, "
        "min(mjd) OVER (PARTITION BY survey, object_id) AS first_mjd, "
        "row_number() OVER (PARTITION BY survey, object_id ORDER BY mjd DESC, alert_id DESC) AS rank_ "
        f"FROM {silver}) WHERE rank_ = 1"
    )


def view_definitions(settings: Settings, schemas: Schemas = Schemas(), **connect_args: Any) -> dict[str, str]:
    """The body (``SELECT ...``) of every view whose sources exist now, by view name."""
    cat = settings.trino_catalog
    silver_cols = _columns(settings, schemas.silver, "alerts", **connect_args)
    objects_cols = _columns(settings, schemas.gold, "objects", **connect_args)
    hits_cols = _columns(settings, schemas.gold, "filter_hits", **connect_args)
    silver = f"{cat}.{schemas.silver}.alerts"
    views: dict[str, str] = {}
    if silver_cols:
        views["light_curves"] = _light_curves_sql(silver, silver_cols)
        night_cols = [c for c in silver_cols if c != "history"]
        views["night_alerts"] = f"SELECT {', '.join(chr(34) + c + chr(34) for c in night_cols)} FROM {silver}"
        passed = "count_if(quality_pass)" if "quality_pass" in silver_cols else "CAST(NULL AS bigint)"
        views["night_summary"] = (
            f"SELECT night, survey, count(*) AS alerts, count(DISTINCT object_id) AS objects, "
            f"{passed} AS quality_passed, CAST({passed} AS double) / count(*) AS quality_pass_share, "
            f"min(mjd) AS first_mjd, max(mjd) AS last_mjd FROM {silver} GROUP BY night, survey"
        )
    if objects_cols:
        views["latest_classification"] = f"SELECT * FROM {cat}.{schemas.gold}.objects"
    elif silver_cols:
        views["latest_classification"] = _latest_from_silver_sql(silver, silver_cols)
    if hits_cols:
        hits = f"{cat}.{schemas.gold}.filter_hits"
        extra = [c for c in ("object_id", "ra", "dec", "mjd", "night", "band", "mag") if c not in hits_cols]
        keys = [c for c in ("survey", "alert_id") if c in hits_cols]
        if silver_cols and "alert_id" in keys and extra:
            joined = ", ".join(f'a."{c}"' for c in extra if c in silver_cols)
            on = " AND ".join(f"h.{k} = a.{k}" for k in keys)
            views["filter_hits"] = f"SELECT h.*, {joined} FROM {hits} h LEFT JOIN {silver} a ON {on}"
        else:
            views["filter_hits"] = f"SELECT * FROM {hits}"
    return views


def ensure_views(settings: Settings, schemas: Schemas = Schemas(), **connect_args: Any) -> list[str]:
    """Create or replace every view whose sources exist; returns the full names of the views now defined.

    Idempotent: run it after each new table or schema change (the maintenance and demo DAGs do). Views whose
    source is missing are left out and are created by a later call once the source appears. ``connect_args``
    (``user``, ``password``) go to :func:`alertlake.trino.connect`; creating views needs a writing user.
    """
    definitions = view_definitions(settings, schemas, **connect_args)
    if not definitions:
        log.info("no source table for any view yet (%s.alerts missing)", schemas.silver)
        return []
    cat = settings.trino_catalog
    query(settings, f"CREATE SCHEMA IF NOT EXISTS {cat}.{schemas.views}", **connect_args)
    created = []
    for name, body in definitions.items():
        full = f"{cat}.{schemas.views}.{name}"
        query(settings, f"CREATE OR REPLACE VIEW {full} SECURITY INVOKER AS {body}", **connect_args)
        created.append(full)
    log.info("views defined: %s", ", ".join(created))
    return created


def expose_lake(settings: Settings) -> list[str]:
    """Register in Trino every lake table it does not know yet, then (re)build the views over them.

    Returns the newly registered tables. A view that cannot be built (a source table of an older shape, say)
    is reported as a warning: it must not keep new tables from being served.
    """
    from alertlake.trino import sync_tables

    registered = sync_tables(settings) if settings.lake_is_local else []
    try:
        ensure_views(settings)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("views not updated: %s", exc)
    return registered
