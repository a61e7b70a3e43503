"""AlertLake's canonical alert: the columns every survey maps its native alert to, declared once.

:data:`COLUMNS` is the single declaration. The Arrow schema (:data:`SCHEMA`), the list of required columns,
and the table in ``docs/canonical-model.md`` (:func:`markdown_table`) are all derived from it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: A canonical row as produced by a survey module: column name -> Python value.
CanonicalRow = dict[str, Any]

# AB magnitude of 1 nJy: m = -2.5 log10(f / 3631 Jy) = 31.4 - 2.5 log10(f / nJy).
AB_ZERO_POINT_NJY = 31.4
_MAG_PER_LN_FLUX = 2.5 / math.log(10.0)

_MJD_EPOCH = dt.date(1858, 11, 17)


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, Arrow type, unit and meaning, and whether every alert must have it."""

    name: str
    type: pa.DataType
    unit: str
    meaning: str
    required: bool = False


HISTORY_ENTRY = pa.struct(
    [
        pa.field("mjd", pa.float64()),
        pa.field("band", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("flux", pa.float32()),
        pa.field("flux_err", pa.float32()),
        pa.field("mag", pa.float32()),
        pa.field("mag_err", pa.float32()),
        pa.field("limiting_mag", pa.float32()),
    ]
)

COLUMNS: tuple[Column, ...] = (
    Column("survey", pa.string(), "", "Survey that sent the alert: `ztf` or `lsst`.", required=True),
    Column(
        "alert_id",
        pa.int64(),
        "",
        "The survey's unique alert id (ZTF `candid`; Rubin `diaSourceId`, `alertId` before v8).",
        required=True,
    ),
    Column(
        "object_id",
        pa.string(),
        "",
        "The survey's object the alert belongs to (ZTF `objectId`; Rubin "
        "`diaObjectId`, or `ss_<ssObjectId>` for a source associated only with a solar-system object).",
        required=True,
    ),
    Column(
        "schema_version", pa.string(), "", "Version of the survey's alert schema, e.g. `3.3` or `10.0`.", required=True
    ),
    Column("ra", pa.float64(), "deg", "Right ascension (ICRS) of the detection, in [0, 360).", required=True),
    Column("dec", pa.float64(), "deg", "Declination (ICRS) of the detection, in [-90, 90].", required=True),
    Column(
        "mjd",
        pa.float64(),
        "d (TAI)",
        "Modified Julian Date of the observation in TAI. Rubin: exposure midpoint "
        "as sent. ZTF: exposure start, converted from UTC by adding TAI-UTC (37 s since 2017).",
        required=True,
    ),
    Column(
        "night",
        pa.string(),
        "YYYY-MM-DD",
        "Observing night: the local calendar date at the observatory on "
        "which the night began, i.e. the date of (mjd + longitude/360 - 0.5) in local mean solar time. A "
        "whole night has one value at both Palomar and Cerro Pachon.",
        required=True,
    ),
    Column("band", pa.string(), "", "Filter: `g`, `r`, `i` for ZTF; `u g r i z y` for Rubin.", required=True),
    Column(
        "flux",
        pa.float32(),
        "nJy",
        "Signed PSF flux in the difference image. Rubin: `psfFlux` as sent. ZTF: "
        "derived from `magpsf` (AB), negative when the subtraction was negative.",
    ),
    Column("flux_err", pa.float32(), "nJy", "1-sigma uncertainty of `flux`."),
    Column(
        "mag",
        pa.float32(),
        "mag (AB)",
        "PSF magnitude of the absolute difference flux, 31.4 - 2.5 log10(|flux| / "
        "nJy) (ZTF: `magpsf` as sent). Null when the flux is 0 or null; `is_positive` gives the sign.",
    ),
    Column("mag_err", pa.float32(), "mag", "1-sigma uncertainty of `mag` (1.0857 flux_err / |flux| for Rubin)."),
    Column(
        "is_positive",
        pa.bool_(),
        "",
        "True when the science image is brighter than the template (ZTF "
        "`isdiffpos` t/1; Rubin not `isNegative`, or flux > 0 before v8).",
    ),
    Column(
        "reliability",
        pa.float32(),
        "0..1",
        "Real/bogus score. ZTF: `drb` (deep-learning) when present, else `rb`; Rubin: `reliability` (from v5).",
    ),
    Column(
        "ss_object_id",
        pa.string(),
        "",
        "Known solar-system object associated with the alert, if any (ZTF `ssnamenr`; Rubin `ssObjectId`).",
    ),
    Column(
        "ss_distance_arcsec",
        pa.float32(),
        "arcsec",
        "Distance to that solar-system object's predicted position "
        "(ZTF `ssdistnr`; Rubin `ssSource.ephOffset`, or the residuals before v10).",
    ),
    Column("ss_mag", pa.float32(), "mag", "Predicted magnitude of that object (ZTF `ssmagnr`, Rubin V magnitude)."),
    Column(
        "history",
        pa.list_(HISTORY_ENTRY),
        "",
        "Earlier measurements of the object sent with the alert, oldest "
        "first. `kind` is `detection` (flux/mag set), `upper_limit` (`limiting_mag` set: ZTF `diffmaglim`, Rubin "
        "5 x `diaNoise`) or `forced` (forced photometry, flux set). Fields: mjd (TAI), band, kind, flux, "
        "flux_err (nJy), mag, mag_err, limiting_mag (AB).",
    ),
)

SCHEMA: pa.Schema = pa.schema([pa.field(c.name, c.type, nullable=not c.required) for c in COLUMNS])
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
HISTORY_FIELDS: tuple[str, ...] = tuple(HISTORY_ENTRY.field(i).name for i in range(HISTORY_ENTRY.num_fields))


def markdown_table() -> str:
    """Return the canonical model as a markdown table (name, type, unit, required, meaning)."""
    lines = ["| column | type | unit | required | meaning |", "|---|---|---|---|---|"]
    for c in COLUMNS:
        type_name = "list<struct>" if c.name == "history" else str(c.type)
        meaning = c.meaning.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {type_name} | {c.unit} | {'yes' if c.required else ''} | {meaning} |")
    return "\n".join(lines) + "\n"


def observing_night(mjd: float | None, longitude_deg: float) -> str | None:
    """Return the observing night (``YYYY-MM-DD``) of an observation at ``mjd`` from an observatory at
    ``longitude_deg`` (east positive): the local-mean-time date on which that night's evening fell.

    Shifting by the longitude and half a day puts local noon, not UTC midnight, at the day boundary, so a
    night never straddles two values (Rubin's UTC nights cross midnight, ZTF's don't). ``None`` when ``mjd``
    is null, not finite, or outside years 1..9999 (then ``validate`` rejects the row).
    """
    if mjd is None or not math.isfinite(mjd):
        return None
    try:
        return (_MJD_EPOCH + dt.timedelta(days=math.floor(mjd + longitude_deg / 360.0 - 0.5))).isoformat()
    except OverflowError:
        return None


# (first MJD in UTC, TAI-UTC in s) for every leap second since 1999; ZTF (2017-) and Rubin are all after.
_LEAP_SECONDS: tuple[tuple[float, int], ...] = (
    (51179.0, 32),  # 1999-01-01
    (53736.0, 33),  # 2006-01-01
    (54832.0, 34),  # 2009-01-01
    (56109.0, 35),  # 2012-07-01
    (57204.0, 36),  # 2015-07-01
    (57754.0, 37),  # 2017-01-01
)


_LAST_LEAP_START, _LAST_LEAP_DAYS = _LEAP_SECONDS[-1][0], _LEAP_SECONDS[-1][1] / 86400.0


def utc_jd_to_tai_mjd(jd_utc: float) -> float:
    """Convert a Julian Date in UTC to a Modified Julian Date in TAI (valid from 1999 on)."""
    mjd_utc = jd_utc - 2400000.5
    if mjd_utc >= _LAST_LEAP_START:  # every alert since 2017: one comparison
        return mjd_utc + _LAST_LEAP_DAYS
    for start, seconds in reversed(_LEAP_SECONDS):
        if mjd_utc >= start:
            return mjd_utc + seconds / 86400.0
    return mjd_utc + _LEAP_SECONDS[0][1] / 86400.0


def flux_to_mag(flux: float | None, flux_err: float | None) -> tuple[float | None, float | None]:
    """Return the AB magnitude of ``|flux|`` (nJy) and its propagated error; ``(None, None)`` if no flux."""
    if flux is None or flux == 0.0 or not math.isfinite(flux):
        return None, None
    magnitude = AB_ZERO_POINT_NJY - 2.5 * math.log10(abs(flux))
    if flux_err is None or not math.isfinite(flux_err):
        return magnitude, None
    return magnitude, _MAG_PER_LN_FLUX * flux_err / abs(flux)


def mag_to_flux(mag: float | None, mag_err: float | None) -> tuple[float | None, float | None]:
    """Return the flux (nJy) of an AB magnitude and its propagated error; ``(None, None)`` if no magnitude."""
    if mag is None or not math.isfinite(mag):
        return None, None
    flux = 10.0 ** (-0.4 * (mag - AB_ZERO_POINT_NJY))
    if mag_err is None or not math.isfinite(mag_err):
        return flux, None
    return flux, flux * mag_err / _MAG_PER_LN_FLUX


def history_entry(
    mjd: float,
    band: str | None,
    kind: str,
    flux: float | None = None,
    flux_err: float | None = None,
    mag: float | None = None,
    mag_err: float | None = None,
    limiting_mag: float | None = None,
) -> dict[str, Any]:
    """Build one element of the ``history`` column."""
    return {
        "mjd": mjd,
        "band": band,
        "kind": kind,
        "flux": flux,
        "flux_err": flux_err,
        "mag": mag,
        "mag_err": mag_err,
        "limiting_mag": limiting_mag,
    }


def to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Return canonical rows as an Arrow table with exactly :data:`SCHEMA`."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)
