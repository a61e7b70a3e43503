"""Rubin Observatory (LSST) alerts in the Confluent wire format Rubin publishes on Kafka.

A message is ``0x00`` (magic byte), a 4-byte big-endian schema id, then the schemaless Avro body. Rubin's
schema id for version ``MAJOR.MINOR`` is ``int(f"{MAJOR}{MINOR:02d}")``, i.e. ``MAJOR * 100 + MINOR`` (1000
for 10.0, 703 for 7.3), which is what ``lsst.alert.packet.Schema.get_schema_id`` computes. Ids are resolved
offline from the schemas the ``lsst-alert-packet`` package ships, every major/minor version of them, so no
schema registry is needed at run time.

Field names changed across versions (``midPointTai``/``decl``/``filterName``/``psFlux`` up to 4.0, the
``midpointMjdTai``/``dec``/``band``/``psfFlux`` names after; ``alertId`` and ``prvDiaNondetectionLimits`` up
to 7.x, ``diaSourceId`` and ``ssSource`` from 8.0). The mapping below reads whichever the record has.
"""

from __future__ import annotations

import io
import math
import re
import struct
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import fastavro
import fastavro.schema

from alertlake.surveys import DecodedAlert, Survey, copied_id
from alertlake.surveys.canonical import CanonicalRow, flux_to_mag, observing_night
from alertlake.surveys.errors import (
    DEFAULT_MAX_MESSAGE_BYTES,
    CorruptAvro,
    MessageContext,
    NotAvro,
    TruncatedAvro,
    UnknownSchemaId,
    UnknownSchemaVersion,
    WrongSchema,
    check_size,
)

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
CONTAINER_MAGIC = b"Obj\x01"

_ID_KEYS = frozenset({"alertId", "diaSourceId", "diaObjectId", "ssObjectId", "diaForcedSourceId", "parentDiaSourceId"})
_TRUNCATION_ERRORS = (EOFError, IndexError, struct.error)
_DECODE_ERRORS = (ValueError, KeyError, UnicodeDecodeError, OverflowError, MemoryError, TypeError)


def schema_root() -> Path:
    """Folder of the ``lsst-alert-packet`` schemas: ``<root>/<major>/<minor>/lsst.vM_m.alert.avsc``."""
    from lsst.alert.packet.schema import get_schema_root  # the package's import is slow; only when needed

    return Path(get_schema_root())


def schema_id(version: str) -> int:
    """Return Rubin's Confluent schema id of ``MAJOR.MINOR`` (``MAJOR * 100 + MINOR``)."""
    major, minor = (int(part) for part in version.split("."))
    return major * 100 + minor


@cache
def _versions() -> tuple[str, ...]:
    found = []
    for path in schema_root().glob("*/*/lsst.v*_*.alert.avsc"):
        match = re.fullmatch(r"lsst\.v(\d+)_(\d+)\.alert\.avsc", path.name)
        if match:
            found.append((int(match[1]), int(match[2])))
    return tuple(f"{major}.{minor}" for major, minor in sorted(found))


@cache
def alert_schema(version: str) -> dict[str, Any]:
    """Return the parsed Avro schema of alert version ``version`` (references to sibling files resolved)."""
    major, minor = version.split(".")
    path = schema_root() / major / minor / f"lsst.v{major}_{minor}.alert.avsc"
    # A fresh name table per version: every version defines its own lsst.vM_m.* named types.
    schema: dict[str, Any] = fastavro.schema.load_schema(str(path), named_schemas={})  # type: ignore[assignment]
    return schema


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in record:
            return record[key]
    return None


def _nonzero(value: int | None) -> int | None:
    return value if value else None  # Rubin writes 0 as well as null for "no such id"


class LsstSurvey(Survey):
    """The Vera C. Rubin Observatory's alert stream (Legacy Survey of Space and Time)."""

    name: ClassVar[str] = "lsst"
    default_topic: ClassVar[str] = "lsst"
    observatory_longitude_deg: ClassVar[float] = -70.7494  # Cerro Pachon
    cutout_fields: ClassVar[tuple[str, ...]] = ("cutoutDifference", "cutoutScience", "cutoutTemplate")
    alert_id_field: ClassVar[str] = "diaSourceId"

    @property
    def schema_versions(self) -> tuple[str, ...]:
        """Every version shipped by the installed ``lsst-alert-packet``, oldest first."""
        return _versions()

    def avro_schema(self, version: str) -> dict[str, Any]:
        """Return the alert schema of ``version`` from ``lsst-alert-packet`` (sibling files resolved)."""
        if version not in self.schema_versions:
            raise UnknownSchemaVersion(version, list(self.schema_versions), survey=self.name)
        return alert_schema(version)

    def schemaless_body(self, message: bytes, version: str) -> bytes:
        """Return the schemaless Avro body after the 5-byte Confluent frame."""
        return message[HEADER.size :]

    def file_to_messages(self, data: bytes) -> list[bytes]:
        """Rubin alert files are Avro containers; each record becomes one wire-format message."""
        return self.container_to_messages(data)

    @property
    def schema_ids(self) -> dict[int, str]:
        """Schema id -> version, for every known version."""
        return _ids()

    # --- decoding -------------------------------------------------------------------------------------

    def _frame(self, message: bytes, context: MessageContext | None) -> tuple[int, str]:
        if message[0] != MAGIC_BYTE:
            if message.startswith(CONTAINER_MAGIC):
                raise WrongSchema(
                    "is an Avro object container (self-describing, as ZTF sends), not Rubin's Confluent frame "
                    "(magic byte 0, schema id, schemaless body); was it sent to the wrong topic?",
                    survey=self.name,
                    context=context,
                )
            raise NotAvro(
                f"first byte is {message[0]:#04x}, not the Confluent magic byte 0x00 (starts with {message[:8]!r})",
                survey=self.name,
                context=context,
            )
        if len(message) <= HEADER.size:
            raise TruncatedAvro(
                f"only {len(message)} bytes: no room for the 5-byte frame header and a body",
                survey=self.name,
                context=context,
            )
        _, sid = HEADER.unpack_from(message)
        version = _ids().get(sid)
        if version is None:
            raise UnknownSchemaId(sid, list(_ids()), survey=self.name, context=context)
        return sid, version

    def decode_alerts(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> list[DecodedAlert]:
        """Decode a Rubin Kafka message (Confluent frame) into its one alert, every field kept."""
        check_size(message, max_bytes, survey=self.name, context=context)
        sid, version = self._frame(message, context)
        stream = io.BytesIO(message)
        stream.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(stream, alert_schema(version), None)
        except _TRUNCATION_ERRORS as exc:
            raise TruncatedAvro(
                f"the body ends before the schema {sid} (v{version}) record does ({type(exc).__name__}: {exc})",
                survey=self.name,
                context=context,
            ) from None
        except _DECODE_ERRORS as exc:
            raise CorruptAvro(
                f"the body does not decode with schema {sid} (v{version}) ({type(exc).__name__}: {exc})",
                survey=self.name,
                context=context,
            ) from None
        left = len(message) - stream.tell()
        if left:
            raise CorruptAvro(
                f"{left} bytes are left after the schema {sid} (v{version}) record: the body was "
                "written with another schema or is corrupt",
                survey=self.name,
                context=context,
            )
        return [DecodedAlert(record, version)]  # type: ignore[arg-type]

    def detect_version(self, message: bytes, context: MessageContext | None = None) -> str:
        """Return the schema version named by the message's schema id."""
        check_size(message, None, survey=self.name, context=context)
        return self._frame(message, context)[1]

    # --- encoding -------------------------------------------------------------------------------------

    def encode(self, record: Any, version: str) -> bytes:
        """Encode one alert as Rubin sends it: magic byte, schema id of ``version``, schemaless Avro."""
        if version not in self.schema_versions:
            raise UnknownSchemaVersion(version, list(self.schema_versions), survey=self.name)
        body = io.BytesIO()
        body.write(HEADER.pack(MAGIC_BYTE, schema_id(version)))
        fastavro.schemaless_writer(body, alert_schema(version), record)
        return body.getvalue()

    def container_to_messages(self, data: bytes) -> list[bytes]:
        """Re-frame the alerts of an Avro container file (as stored by brokers and the package's samples)
        into Rubin wire-format messages, with the version named by the writer schema."""
        reader = fastavro.reader(io.BytesIO(data))
        match = re.fullmatch(r"lsst\.v(\d+)_(\d+)\.alert", str(reader.writer_schema.get("name", "")))  # type: ignore[union-attr]
        if not match:
            raise WrongSchema("the container does not hold lsst.vM_m.alert records", survey=self.name)
        version = f"{match[1]}.{match[2]}"
        return [self.encode(record, version) for record in reader]

    # --- identity and simulation ----------------------------------------------------------------------

    def alert_id(self, record: Any) -> int:
        """Return ``diaSourceId`` (``alertId`` before v8)."""
        return int(record["diaSourceId"] if "diaSourceId" in record else record["alertId"])

    def object_id(self, record: Any) -> str:
        """Return ``diaObjectId``, or ``ss_<ssObjectId>`` for a source tied only to a solar-system object."""
        source = record["diaSource"]
        dia_object = _nonzero(source.get("diaObjectId"))
        if dia_object is not None:
            return str(dia_object)
        ss_object = _nonzero(source.get("ssObjectId"))
        return f"ss_{ss_object}" if ss_object is not None else ""

    def remap(self, record: Any, copy: int, time_shift_days: float = 0.0) -> dict[str, Any]:
        """Return ``record`` as copy ``copy`` (every id mapped by ``copied_id``), times shifted."""

        def fix(item: dict[str, Any]) -> dict[str, Any]:
            out = dict(item)
            for key, value in item.items():
                if copy and key in _ID_KEYS and value:
                    out[key] = copied_id(value, copy)
                elif time_shift_days and value is not None and (key == "midPointTai" or key.endswith("MjdTai")):
                    out[key] = value + time_shift_days
            return out

        out = fix(record)
        for key in ("diaSource", "diaObject", "ssSource", "ssObject"):
            if record.get(key) is not None:
                out[key] = fix(record[key])
        for key in ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits"):
            if record.get(key):
                out[key] = [fix(item) for item in record[key]]
        return out

    # --- canonical mapping ----------------------------------------------------------------------------

    def to_canonical_row(self, alert: DecodedAlert) -> CanonicalRow:
        """Map a Rubin alert to the canonical columns (see ``docs/canonical-model.md``)."""
        record = alert.record
        source = record["diaSource"]
        dec = _first(source, "dec", "decl")
        flux = _first(source, "psfFlux", "psFlux")
        flux_err = _first(source, "psfFluxErr", "psFluxErr")
        mag, mag_err = flux_to_mag(flux, flux_err)
        is_negative = source.get("isNegative")
        if is_negative is not None:
            is_positive: bool | None = not is_negative
        else:
            is_positive = None if flux is None else flux > 0
        mjd = _first(source, "midpointMjdTai", "midPointTai")
        ss_object = _nonzero(source.get("ssObjectId"))
        ss_distance, ss_mag = _solar_system(record.get("ssSource"), dec)
        return {
            "survey": self.name,
            "alert_id": self.alert_id(record),
            "object_id": self.object_id(record) or None,
            "schema_version": alert.schema_version,
            "ra": source["ra"],
            "dec": dec,
            "mjd": mjd,
            "night": observing_night(mjd, self.observatory_longitude_deg),
            "band": _first(source, "band", "filterName"),
            "flux": flux,
            "flux_err": flux_err,
            "mag": mag,
            "mag_err": mag_err,
            "is_positive": is_positive,
            "reliability": source.get("reliability"),
            "ss_object_id": str(ss_object) if ss_object is not None else None,
            "ss_distance_arcsec": ss_distance,
            "ss_mag": ss_mag,
            "history": _history(record),
        }


def _solar_system(ss_source: dict[str, Any] | None, dec: float | None) -> tuple[float | None, float | None]:
    """(distance to the predicted position in arcsec, predicted V magnitude) from an ``ssSource``."""
    if not ss_source:
        return None, None
    if "ephOffset" in ss_source:  # v10 on: already in arcsec
        return ss_source["ephOffset"], ss_source.get("ephVmag")
    d_ra, d_dec = ss_source.get("residualRa"), ss_source.get("residualDec")  # v8, v9: degrees
    distance = None
    if d_ra is not None and d_dec is not None and dec is not None:
        distance = math.hypot(d_ra * math.cos(math.radians(dec)), d_dec) * 3600.0
    return distance, ss_source.get("predictedVMagnitude")


def _history(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for kind, key in (("detection", "prvDiaSources"), ("forced", "prvDiaForcedSources")):
        for item in record.get(key) or ():
            flux = _first(item, "psfFlux", "psFlux")
            flux_err = _first(item, "psfFluxErr", "psFluxErr")
            mag, mag_err = flux_to_mag(flux, flux_err)
            entries.append(
                {
                    "mjd": _first(item, "midpointMjdTai", "midPointTai"),
                    "band": _first(item, "band", "filterName"),
                    "kind": kind,
                    "flux": flux,
                    "flux_err": flux_err,
                    "mag": mag,
                    "mag_err": mag_err,
                    "limiting_mag": None,
                }
            )
    for item in record.get("prvDiaNondetectionLimits") or ():
        noise = item.get("diaNoise")
        limit = flux_to_mag(5.0 * noise, None)[0] if noise is not None and noise > 0 else None  # 5-sigma
        entries.append(
            {
                "mjd": _first(item, "midpointMjdTai", "midPointTai"),
                "band": _first(item, "band", "filterName"),
                "kind": "upper_limit",
                "flux": None,
                "flux_err": None,
                "mag": None,
                "mag_err": None,
                "limiting_mag": limit,
            }
        )
    entries.sort(key=lambda entry: entry["mjd"] if entry["mjd"] is not None else -math.inf)
    return entries


@cache
def _ids() -> dict[int, str]:
    return {schema_id(version): version for version in _versions()}


SURVEY = LsstSurvey()
