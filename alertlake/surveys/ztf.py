"""ZTF alerts as ZTF publishes them on Kafka: every message is an Avro object container holding its schema.

Versions 1.5 and 1.8 (early 2018) have no ``schemavsn`` field: their version is the writer schema's
``version`` key. Later versions carry both; the record's ``schemavsn`` wins when they disagree.

Decoding is the hot path of ingestion, so the container is parsed here rather than by ``fastavro.reader``:
the header is read by hand, the writer schema is parsed and checked once per distinct schema text, and each
block body goes straight to ``fastavro.schemaless_reader``. The schemas used to *encode* are the versioned
data files in ``schemas/ztf/<version>/alert.avsc`` (writer schemas of real alerts).

:meth:`ZtfSurvey.read` (what ingestion calls) goes further: it maps each alert from a *projection* of the
record (:data:`CANONICAL_PROJECTION`, ~40 of its ~2,100 values) read by a reader generated once per writer
schema (:mod:`alertlake.surveys.avro_projection`), and returns the full record as a
:class:`~alertlake.surveys.avro_projection.DeferredRecord` decoded by ``fastavro`` only if someone looks into
it. A message the projected reader cannot read is decoded by the full path, which gives the exact error.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar

import fastavro
from fastavro.schema import SchemaParseException, to_parsing_canonical_form

from alertlake.surveys import DecodedAlert, Remapper, Survey, copied_id
from alertlake.surveys.avro_projection import (
    DeferredRecord,
    Projection,
    Reader,
    UnsupportedSchema,
    compile_projection,
    read_long,
)
from alertlake.surveys.canonical import (
    CanonicalRow,
    flux_to_mag,
    mag_to_flux,
    observing_night,
    utc_jd_to_tai_mjd,
)
from alertlake.surveys.errors import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BadMessage,
    CorruptAvro,
    MessageContext,
    MissingField,
    NotAvro,
    TruncatedAvro,
    UnknownSchemaVersion,
    WrongSchema,
    check_size,
    validate,
)

MAGIC = b"Obj\x01"
SCHEMA_DIR = Path(__file__).parent / "schemas" / "ztf"
ALERT_SCHEMA_NAME = "ztf.alert"

_BANDS = {1: "g", 2: "r", 3: "i"}
_POSITIVE = frozenset({"t", "1"})

#: Writer-schema paths the canonical mapping reads without a fallback.
REQUIRED_FIELDS: tuple[str, ...] = (
    "objectId",
    "candid",
    "candidate.jd",
    "candidate.fid",
    "candidate.ra",
    "candidate.dec",
    "candidate.magpsf",
    "candidate.sigmapsf",
    "candidate.isdiffpos",
)

#: The fields :meth:`ZtfSurvey.to_canonical_row` reads: what :meth:`ZtfSurvey.read` decodes eagerly.
CANONICAL_PROJECTION: Projection = {
    "schemavsn": True,
    "objectId": True,
    "candid": True,
    "candidate": dict.fromkeys(
        ("jd", "fid", "ra", "dec", "magpsf", "sigmapsf", "isdiffpos", "drb", "rb", "ssnamenr", "ssdistnr", "ssmagnr"),
        True,
    ),
    "prv_candidates": dict.fromkeys(("jd", "fid", "candid", "magpsf", "sigmapsf", "isdiffpos", "diffmaglim"), True),
    "fp_hists": dict.fromkeys(("jd", "fid", "forcediffimflux", "forcediffimfluxunc", "magzpsci", "diffmaglim"), True),
}

#: The values ``remap`` changes: their byte positions let ``remapper`` rewrite just them.
REMAP_PROJECTION: Projection = {
    "objectId": True,
    "candid": True,
    "candidate": dict.fromkeys(("candid", "jd", "jdstarthist", "jdendhist"), True),
    "prv_candidates": dict.fromkeys(("candid", "jd"), True),
    "fp_hists": {"jd": True},
}

# Decoding errors fastavro raises on bytes that do not follow the schema.
_DECODE_ERRORS = (
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
    TypeError,
)


def _long_bytes(value: int) -> bytes:
    """Encode ``value`` as an Avro zig-zag varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fullname(schema: dict[str, Any]) -> str:
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _field_paths(schema: Any, prefix: str = "") -> set[str]:
    """Every dotted field path of the records nested in ``schema`` (through unions, not arrays)."""
    paths: set[str] = set()
    if isinstance(schema, list):
        for branch in schema:
            paths |= _field_paths(branch, prefix)
    elif isinstance(schema, dict) and schema.get("type") == "record":
        for field in schema["fields"]:
            path = f"{prefix}{field['name']}"
            paths.add(path)
            paths |= _field_paths(field["type"], path + ".")
    return paths


@dataclass
class _WriterSchema:
    """A writer schema seen in a message header, parsed and checked once."""

    raw: bytes
    parsed: Any = None
    version: str | None = None
    problem: BadMessage | None = None
    # version -> whether this writer schema has the binary layout of our stored schema of that version
    same_layout: dict[str, bool] = field(default_factory=dict)
    # reader of CANONICAL_PROJECTION, compiled on first use; None when the schema cannot have one
    projected: Reader | None = None
    projected_tried: bool = False

    remap_spans: Reader | None = None
    remap_tried: bool = False

    def remap_reader(self) -> Reader | None:
        """The generated reader of :data:`REMAP_PROJECTION` with byte spans (None if unsupported)."""
        if not self.remap_tried:
            self.remap_tried = True
            try:
                self.remap_spans = compile_projection(json.loads(self.raw), REMAP_PROJECTION, spans=True)
            except (UnsupportedSchema, KeyError, TypeError, ValueError):
                self.remap_spans = None
        return self.remap_spans

    def projected_reader(self) -> Reader | None:
        """The generated reader of :data:`CANONICAL_PROJECTION` for this schema (None if unsupported)."""
        if not self.projected_tried:
            self.projected_tried = True
            try:
                self.projected = compile_projection(json.loads(self.raw), CANONICAL_PROJECTION)
            except (UnsupportedSchema, KeyError, TypeError, ValueError):
                self.projected = None
        return self.projected


@cache
def _load_schema(version: str) -> dict[str, Any]:
    path = SCHEMA_DIR / version / "alert.avsc"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


class ZtfSurvey(Survey):
    """The Zwicky Transient Facility's public alert stream."""

    name: ClassVar[str] = "ztf"
    default_topic: ClassVar[str] = "ztf"
    observatory_longitude_deg: ClassVar[float] = -116.8650  # Palomar
    cutout_fields: ClassVar[tuple[str, ...]] = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
    alert_id_field: ClassVar[str] = "candid"

    def __init__(self) -> None:
        # Keyed by schema length, then compared byte for byte: hashing a 40 KB schema per message would cost
        # more than comparing it to the one or two schemas of that length seen so far.
        self._writer_schemas: dict[int, list[_WriterSchema]] = {}
        self._encoders: dict[str, tuple[Any, bytes, bytes]] = {}

    @property
    def schema_versions(self) -> tuple[str, ...]:
        """Every version with a schema file under ``schemas/ztf/``, oldest first."""
        return _known_versions()

    def schemaless_body(self, message: bytes, version: str) -> bytes:
        """Return the single record's bytes from the container's first block (inflated if deflated)."""
        schema, codec, _, pos = self._header(message, None)
        if version not in schema.same_layout:
            stored = fastavro.parse_schema(self.avro_schema(version), named_schemas={})
            schema.same_layout[version] = to_parsing_canonical_form(schema.parsed) == to_parsing_canonical_form(stored)
        if not schema.same_layout[version]:
            raise UnknownSchemaVersion(
                f"{version} (a variant whose layout differs from the known {version} schema)",
                list(self.schema_versions),
                survey=self.name,
            )
        count, pos = read_long(message, pos)
        size, pos = read_long(message, pos)
        if count != 1:
            raise CorruptAvro(f"expected one alert per message, found {count}", survey=self.name)
        body = message[pos : pos + size]
        return zlib.decompress(body, -15) if codec == b"deflate" else body

    def avro_schema(self, version: str) -> dict[str, Any]:
        """Return the alert schema of ``version`` as shipped in ``schemas/ztf/<version>/alert.avsc``."""
        if version not in self.schema_versions:
            raise UnknownSchemaVersion(version, list(self.schema_versions), survey=self.name)
        return _load_schema(version)

    # --- decoding -------------------------------------------------------------------------------------

    def _writer_schema(self, raw: bytes) -> _WriterSchema:
        bucket = self._writer_schemas.setdefault(len(raw), [])
        for entry in bucket:
            if entry.raw == raw:
                return entry
        entry = self._check_writer_schema(raw)
        bucket.append(entry)
        return entry

    def _check_writer_schema(self, raw: bytes) -> _WriterSchema:
        entry = _WriterSchema(raw=raw)
        try:
            schema = json.loads(raw)
        except ValueError as exc:
            entry.problem = CorruptAvro(f"the container's writer schema is not valid JSON ({exc})")
            return entry
        if not isinstance(schema, dict) or _fullname(schema) != ALERT_SCHEMA_NAME:
            found = _fullname(schema) if isinstance(schema, dict) else type(schema).__name__
            entry.problem = WrongSchema(f"the container holds {found!r} records, not {ALERT_SCHEMA_NAME!r}")
            return entry
        version = schema.get("version")
        entry.version = str(version) if version is not None else None
        if entry.version is not None and entry.version not in self.schema_versions:
            entry.problem = UnknownSchemaVersion(entry.version, list(self.schema_versions))
            return entry
        paths = _field_paths(schema)
        for required in REQUIRED_FIELDS:
            if required not in paths:
                entry.problem = MissingField(
                    required, f"is absent from the writer schema (version {entry.version or 'not stated'})"
                )
                return entry
        try:
            entry.parsed = fastavro.parse_schema(schema, named_schemas={})
        except (SchemaParseException, ValueError, KeyError, TypeError) as exc:
            entry.problem = CorruptAvro(f"the container's writer schema is not a valid Avro schema ({exc})")
        return entry

    def _header(self, message: bytes, context: MessageContext | None) -> tuple[_WriterSchema, bytes, bytes, int]:
        """Parse the container header: (writer schema, codec, sync marker, position of the first block)."""
        if not message.startswith(MAGIC):
            if MAGIC.startswith(message[:4]):
                raise TruncatedAvro(
                    f"only {len(message)} bytes, shorter than an Avro container header",
                    survey=self.name,
                    context=context,
                )
            raise NotAvro(
                f"does not start with the Avro container magic {MAGIC!r} (starts with {message[:8]!r})",
                survey=self.name,
                context=context,
            )
        size = len(message)
        pos = 4
        meta: dict[bytes, tuple[int, int]] = {}
        try:
            while True:
                count, pos = read_long(message, pos)
                if count == 0:
                    break
                if count < 0:  # a negative count is followed by the block's byte size
                    count = -count
                    _, pos = read_long(message, pos)
                for _ in range(count):
                    key_len, pos = read_long(message, pos)
                    key = message[pos : pos + key_len]
                    pos += key_len
                    value_len, pos = read_long(message, pos)
                    meta[key] = (pos, pos + value_len)
                    pos += value_len
                    if pos > size:
                        raise IndexError
        except IndexError:
            raise TruncatedAvro(
                f"the container header ends early ({size} bytes)", survey=self.name, context=context
            ) from None
        except ValueError as exc:
            raise CorruptAvro(f"the container header is garbled ({exc})", survey=self.name, context=context) from None
        if pos + 16 > size:
            raise TruncatedAvro(
                f"the container ends inside its header ({size} bytes)", survey=self.name, context=context
            )
        if b"avro.schema" not in meta:
            raise CorruptAvro("the container header has no 'avro.schema' entry", survey=self.name, context=context)
        start, end = meta[b"avro.schema"]
        schema = self._writer_schema(message[start:end])
        if schema.problem is not None:
            raise schema.problem.with_context(survey=self.name, context=context)
        codec = message[slice(*meta[b"avro.codec"])] if b"avro.codec" in meta else b"null"
        return schema, codec, message[pos : pos + 16], pos + 16

    def decode_alerts(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> list[DecodedAlert]:
        """Decode a ZTF Kafka message (an Avro container) into its alerts, every field kept."""
        check_size(message, max_bytes, survey=self.name, context=context)
        schema, codec, sync, pos = self._header(message, context)
        size = len(message)
        records: list[dict[str, Any]] = []
        stream = io.BytesIO(message)
        block = 0
        while pos < size:
            try:
                count, pos = read_long(message, pos)
                block_size, pos = read_long(message, pos)
            except (IndexError, ValueError):
                raise TruncatedAvro(
                    f"block {block} header runs past the end of the message ({size} bytes)",
                    survey=self.name,
                    context=context,
                ) from None
            end = pos + block_size
            if count < 0 or block_size < 0 or end + 16 > size:
                raise TruncatedAvro(
                    f"block {block} declares {block_size} bytes at offset {pos}, past the end of the "
                    f"{size}-byte message",
                    survey=self.name,
                    context=context,
                )
            if codec == b"null":
                reader, limit = stream, end
                stream.seek(pos)
            elif codec == b"deflate":
                try:
                    data = zlib.decompress(message[pos:end], -15)
                except zlib.error as exc:
                    raise CorruptAvro(
                        f"block {block} does not inflate ({exc})", survey=self.name, context=context
                    ) from None
                reader, limit = io.BytesIO(data), len(data)
            else:
                raise CorruptAvro(
                    f"unsupported container codec {codec.decode(errors='replace')!r}", survey=self.name, context=context
                )
            try:
                for _ in range(count):
                    records.append(fastavro.schemaless_reader(reader, schema.parsed, None))  # type: ignore[arg-type]
            except _DECODE_ERRORS as exc:
                raise CorruptAvro(
                    f"block {block} does not decode with its writer schema ({type(exc).__name__}: {exc})",
                    survey=self.name,
                    context=context,
                ) from None
            if reader.tell() != limit:
                raise CorruptAvro(
                    f"block {block} declares {count} record(s) in {block_size} bytes but they end "
                    f"{reader.tell() - limit:+d} bytes from the block's end",
                    survey=self.name,
                    context=context,
                )
            if message[end : end + 16] != sync:
                raise CorruptAvro(
                    f"the sync marker after block {block} does not match the header's",
                    survey=self.name,
                    context=context,
                )
            pos = end + 16
            block += 1
        return [DecodedAlert(record, self._record_version(record, schema, context)) for record in records]

    def _record_version(self, record: dict[str, Any], schema: _WriterSchema, context: MessageContext | None) -> str:
        version = record.get("schemavsn") or schema.version
        if version is None:
            raise MissingField(
                "schemavsn", "is absent and the writer schema has no 'version' key", survey=self.name, context=context
            )
        if version != schema.version and version not in self.schema_versions:
            raise UnknownSchemaVersion(version, list(self.schema_versions), survey=self.name, context=context)
        return str(version)

    def read(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> list[tuple[DecodedAlert, CanonicalRow]]:
        """Decode, map and validate a message, as :meth:`Survey.read`, reading only what the mapping needs.

        The rows are those of the full path (``to_canonical_row`` of ``decode_alerts``); each record is a
        :class:`DeferredRecord` holding every field, decoded in full on first access.
        """
        check_size(message, max_bytes, survey=self.name, context=context)
        schema, codec, sync, pos = self._header(message, context)
        projected = self._read_projected(message, schema, codec, sync, pos)
        if projected is None:  # not for the projected reader: the full decoder says what is wrong, if anything
            return super().read(message, context, max_bytes)
        out = []
        for index, record in enumerate(projected):
            version = self._record_version(record, schema, context)
            row = self.to_canonical_row(DecodedAlert(record, version))
            try:
                validate(row, context)
            except BadMessage as error:
                raise error.with_context(survey=self.name, context=context) from None
            full = DeferredRecord(partial(self._full_record, message, context, index))
            out.append((DecodedAlert(full, version), row))
        return out

    def _full_record(self, message: bytes, context: MessageContext | None, index: int) -> dict[str, Any]:
        record = self.decode_alerts(message, context, None)[index].record
        assert isinstance(record, dict)  # decode_alerts builds plain dicts
        return record

    def _read_projected(
        self, message: bytes, schema: _WriterSchema, codec: bytes, sync: bytes, pos: int
    ) -> list[dict[str, Any]] | None:
        """The :data:`CANONICAL_PROJECTION` of every record of the container, or None if it cannot be read so."""
        reader = schema.projected_reader()
        if reader is None or codec not in (b"null", b"deflate"):
            return None
        size = len(message)
        records = []
        try:
            while pos < size:
                count, pos = read_long(message, pos)
                block_size, pos = read_long(message, pos)
                end = pos + block_size
                if count < 0 or block_size < 0 or end + 16 > size or message[end : end + 16] != sync:
                    return None
                if codec == b"null":
                    data, at, limit = message, pos, end
                else:
                    data, at = zlib.decompress(message[pos:end], -15), 0
                    limit = len(data)
                for _ in range(count):
                    record, at = reader(data, at)
                    records.append(record)
                if at != limit:
                    return None
                pos = end + 16
        except (*_DECODE_ERRORS, zlib.error):
            return None
        return records

    def detect_version(self, message: bytes, context: MessageContext | None = None) -> str:
        """Return the schema version of a ZTF message (from the writer schema, else from the record)."""
        check_size(message, None, survey=self.name, context=context)
        schema, _, _, _ = self._header(message, context)
        if schema.version is not None:
            return schema.version
        return self.decode_alerts(message, context, None)[0].schema_version

    # --- encoding -------------------------------------------------------------------------------------

    def _encoder(self, version: str) -> tuple[Any, bytes, bytes]:
        if version not in self._encoders:
            if version not in self.schema_versions:
                raise UnknownSchemaVersion(version, list(self.schema_versions), survey=self.name)
            schema = _load_schema(version)
            text = json.dumps(schema, separators=(",", ":")).encode()
            # A fixed sync marker per version makes encoding deterministic; readers only compare it in-file.
            sync = hashlib.blake2b(f"alertlake ztf {version}".encode(), digest_size=16).digest()
            header = b"".join(
                [
                    MAGIC,
                    _long_bytes(2),
                    _long_bytes(len(b"avro.schema")),
                    b"avro.schema",
                    _long_bytes(len(text)),
                    text,
                    _long_bytes(len(b"avro.codec")),
                    b"avro.codec",
                    _long_bytes(4),
                    b"null",
                    _long_bytes(0),
                    sync,
                ]
            )
            self._encoders[version] = (fastavro.parse_schema(schema, named_schemas={}), header, sync)
        return self._encoders[version]

    def encode(self, record: dict[str, Any], version: str) -> bytes:  # type: ignore[override]
        """Encode one alert as a ZTF Kafka message: an Avro container with the schema of ``version``."""
        parsed, header, sync = self._encoder(version)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, record)
        data = body.getvalue()
        return b"".join([header, _long_bytes(1), _long_bytes(len(data)), data, sync])

    # --- identity and simulation ----------------------------------------------------------------------

    def alert_id(self, record: Any) -> int:
        """Return ``candid``."""
        return int(record["candid"])

    def object_id(self, record: Any) -> str:
        """Return ``objectId``."""
        return str(record["objectId"])

    def remap(self, record: Any, copy: int, time_shift_days: float = 0.0) -> dict[str, Any]:
        """Return ``record`` as copy ``copy`` (new candids, ``objectId_<copy>``) shifted by ``time_shift_days``."""
        out = dict(record)
        candidate = dict(record["candidate"])
        out["candidate"] = candidate
        if copy:
            out["candid"] = copied_id(record["candid"], copy)
            candidate["candid"] = copied_id(candidate["candid"], copy)
            out["objectId"] = f"{record['objectId']}_{copy}"
        if time_shift_days:
            candidate["jd"] += time_shift_days
            for key in ("jdstarthist", "jdendhist"):
                if candidate.get(key) is not None:
                    candidate[key] += time_shift_days
        if record.get("prv_candidates"):
            history = []
            for prv in record["prv_candidates"]:
                prv = dict(prv)
                if copy and prv.get("candid") is not None:
                    prv["candid"] = copied_id(prv["candid"], copy)
                prv["jd"] += time_shift_days
                history.append(prv)
            out["prv_candidates"] = history
        if record.get("fp_hists"):
            out["fp_hists"] = [{**fp, "jd": fp["jd"] + time_shift_days} for fp in record["fp_hists"]]
        return out

    def remapper(self, alert: DecodedAlert, message: bytes) -> Remapper | None:
        """Rewrite only the ids and times of ``message`` (one alert, uncompressed container) for each copy."""
        try:
            schema, codec, sync, pos = self._header(message, None)
            count, start = read_long(message, pos)
            size, start = read_long(message, start)
            end = start + size
            reader = schema.remap_reader()
            if reader is None or codec != b"null" or count != 1 or message[end:] != sync:
                return None
            spans, stop = reader(message, start)
        except (BadMessage, *_DECODE_ERRORS):
            return None
        if stop != end:
            return None
        return _Remapper(message[:pos], message[start:end], sync, spans, start)

    # --- canonical mapping ----------------------------------------------------------------------------

    def to_canonical_row(self, alert: DecodedAlert) -> CanonicalRow:
        """Map a ZTF alert to the canonical columns (see ``docs/canonical-model.md``)."""
        record = alert.record
        c = record["candidate"]
        is_positive = c["isdiffpos"] in _POSITIVE
        mag, mag_err = c["magpsf"], c["sigmapsf"]
        flux, flux_err = mag_to_flux(mag, mag_err)
        if flux is not None and not is_positive:
            flux = -flux
        mjd = utc_jd_to_tai_mjd(c["jd"])
        drb = c.get("drb")
        ss_name = c.get("ssnamenr")
        has_ss = ss_name is not None and ss_name != "null"
        ss_distance = c.get("ssdistnr") if has_ss else None
        ss_mag = c.get("ssmagnr") if has_ss else None
        return {
            "survey": self.name,
            "alert_id": record["candid"],
            "object_id": record["objectId"],
            "schema_version": alert.schema_version,
            "ra": c["ra"],
            "dec": c["dec"],
            "mjd": mjd,
            "night": observing_night(mjd, self.observatory_longitude_deg),
            "band": _BANDS.get(c["fid"], str(c["fid"])),
            "flux": flux,
            "flux_err": flux_err,
            "mag": mag,
            "mag_err": mag_err,
            "is_positive": is_positive,
            "reliability": drb if drb is not None else c.get("rb"),
            "ss_object_id": ss_name if has_ss else None,
            "ss_distance_arcsec": ss_distance if ss_distance is not None and ss_distance >= 0 else None,
            "ss_mag": ss_mag if ss_mag is not None and ss_mag > -90 else None,  # ZTF writes -999 for none
            "history": _history(record),
        }


_PACK_FLOAT = {4: struct.Struct("<f").pack, 8: struct.Struct("<d").pack}  # by encoded size


class _Remapper:
    """``remap`` + ``encode`` of one alert as byte surgery: the record's other ~2,000 values are copied as they are."""

    def __init__(self, header: bytes, body: bytes, sync: bytes, spans: dict[str, Any], base: int) -> None:
        self.header, self.body, self.sync = header, body, sync
        self.object_id, self.alert_id = spans["objectId"][0], spans["candid"][0]
        # (start, end, kind, value) in the body; kind: "id" (a candid), "t" (a jd), "o" (the objectId)
        patches: list[tuple[int, int, str, Any]] = []

        def add(kind: str, span: tuple[Any, int, int] | None) -> None:
            if span is not None and span[0] is not None:
                patches.append((span[1] - base, span[2] - base, kind, span[0]))

        add("o", spans["objectId"])
        add("id", spans["candid"])
        candidate = spans["candidate"]
        add("id", candidate.get("candid"))
        for key in ("jd", "jdstarthist", "jdendhist"):
            add("t", candidate.get(key))
        for prv in spans.get("prv_candidates") or ():
            add("id", prv.get("candid"))
            add("t", prv.get("jd"))
        for fp in spans.get("fp_hists") or ():
            add("t", fp.get("jd"))
        patches.sort()
        self.patches = patches

    def __call__(self, copy: int, time_shift_days: float = 0.0) -> tuple[bytes, str, int]:
        body, pack = self.body, _PACK_FLOAT
        pieces = []
        last = 0
        for start, end, kind, value in self.patches:
            if kind == "t":
                if not time_shift_days:
                    continue
                new = pack[end - start](value + time_shift_days)
            elif not copy:
                continue
            elif kind == "id":
                new = _long_bytes(copied_id(value, copy))
            else:
                text = f"{value}_{copy}".encode()
                new = _long_bytes(len(text)) + text
            pieces.append(body[last:start])
            pieces.append(new)
            last = end
        pieces.append(body[last:])
        new_body = b"".join(pieces)
        message = b"".join([self.header, b"\x02", _long_bytes(len(new_body)), new_body, self.sync])
        if not copy:
            return message, self.object_id, self.alert_id
        return message, f"{self.object_id}_{copy}", copied_id(self.alert_id, copy)


def _history(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    # The hot loop of the mapping (~40 entries per alert): same arithmetic as canonical.mag_to_flux and
    # utc_jd_to_tai_mjd (the unit tests compare), with the lookups hoisted out of the loop.
    entries: list[dict[str, Any]] = []
    append = entries.append
    to_mjd, bands = utc_jd_to_tai_mjd, _BANDS
    for prv in record.get("prv_candidates") or ():
        fid = prv["fid"]
        band = bands.get(fid) or str(fid)
        mag = prv.get("magpsf")
        if mag is not None and prv.get("candid") is not None:
            mag_err = prv.get("sigmapsf")
            flux, flux_err = mag_to_flux(mag, mag_err)
            if flux is not None and prv.get("isdiffpos") not in _POSITIVE:
                flux = -flux
            append(
                {
                    "mjd": to_mjd(prv["jd"]),
                    "band": band,
                    "kind": "detection",
                    "flux": flux,
                    "flux_err": flux_err,
                    "mag": mag,
                    "mag_err": mag_err,
                    "limiting_mag": prv.get("diffmaglim"),
                }
            )
        else:
            append(
                {
                    "mjd": to_mjd(prv["jd"]),
                    "band": band,
                    "kind": "upper_limit",
                    "flux": None,
                    "flux_err": None,
                    "mag": None,
                    "mag_err": None,
                    "limiting_mag": prv.get("diffmaglim"),
                }
            )
    for fp in record.get("fp_hists") or ():
        dn, dn_err, zero_point = fp.get("forcediffimflux"), fp.get("forcediffimfluxunc"), fp.get("magzpsci")
        if dn is None or zero_point is None or dn <= -99999:  # -99999: ZTF's "no measurement"
            continue
        scale = 10.0 ** (-0.4 * (zero_point - 31.4))  # DN -> nJy at this image's AB zero point
        flux = dn * scale
        flux_err = dn_err * scale if dn_err is not None and dn_err > 0 else None
        mag, mag_err = flux_to_mag(flux, flux_err)
        fid = fp["fid"]
        append(
            {
                "mjd": to_mjd(fp["jd"]),
                "band": bands.get(fid) or str(fid),
                "kind": "forced",
                "flux": flux,
                "flux_err": flux_err,
                "mag": mag,
                "mag_err": mag_err,
                "limiting_mag": fp.get("diffmaglim"),
            }
        )
    entries.sort(key=_BY_MJD)
    return entries


_BY_MJD = itemgetter("mjd")


@cache
def _known_versions() -> tuple[str, ...]:
    versions = [p.parent.name for p in SCHEMA_DIR.glob("*/alert.avsc")]
    return tuple(sorted(versions, key=lambda v: tuple(int(part) for part in v.split("."))))


SURVEY = ZtfSurvey()
