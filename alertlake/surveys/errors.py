"""Why a message could not become an alert: one exception class per reason, each with a machine code.

Every message read from a survey topic ends in bronze or in ``bronze.quarantine``. The quarantine row
stores :attr:`BadMessage.reason` (a stable code to group and count on) and ``str(error)`` (a sentence a
person can act on: which message, what is wrong). Codes:

==========================  ==========================================================================
``empty_message``           zero bytes
``oversize``                larger than the per-message limit (default 2 MiB, see ``DEFAULT_MAX_MESSAGE_BYTES``)
``not_avro``                does not start like the survey's wire format (random bytes, JSON, ...)
``truncated_avro``          starts right but ends before the Avro data does
``corrupt_avro``            complete but not decodable (bad sync marker, trailing bytes, bad varint)
``unknown_schema_id``       Confluent frame whose schema id no known schema has (Rubin)
``unknown_schema_version``  self-described schema version this broker has no mapping for (ZTF)
``wrong_schema``            valid Avro, but of another record type than the survey's alert
``missing_field``           a field the canonical model needs is absent or null
``bad_coordinates``         ra/dec NaN or out of range
``duplicate_alert_id``      an alert id already stored (found downstream, by the bronze MERGE)
==========================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

#: Largest message a survey topic accepts before the alert is even decoded. ZTF alerts are ~60 KiB and
#: Rubin's are bounded by their cutouts (~100 KiB); 2 MiB leaves room for long histories while keeping a
#: single poisoned message from costing a whole micro-batch its memory.
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class MessageContext:
    """Where a message came from, so an error can say which message it is about."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    source: str | None = None  # a file path, or any other human-readable origin

    def describe(self) -> str:
        """Return a short phrase naming the message, e.g. ``topic 'ztf' partition 0 offset 42``."""
        parts = []
        if self.topic is not None:
            parts.append(f"topic {self.topic!r}")
        if self.partition is not None:
            parts.append(f"partition {self.partition}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        if self.source is not None:
            parts.append(f"from {self.source}")
        return " ".join(parts) if parts else "(origin not given)"


class BadMessage(ValueError):
    """A message that cannot become a valid alert. ``reason`` is the machine code stored in quarantine."""

    reason: ClassVar[str] = "bad_message"

    def __init__(self, detail: str, *, survey: str | None = None, context: MessageContext | None = None) -> None:
        self.detail = detail
        self.survey = survey
        self.context = context or MessageContext()
        super().__init__(self._render())

    def _render(self) -> str:
        who = f"{self.survey} message" if self.survey else "message"
        return f"{who} {self.context.describe()}: {self.detail} [{self.reason}]"

    def with_context(self, *, survey: str | None = None, context: MessageContext | None = None) -> BadMessage:
        """Return a copy of this error that names ``survey`` and ``context`` (kept when not given)."""
        clone = type(self).__new__(type(self))
        clone.detail = self.detail
        clone.survey = survey or self.survey
        clone.context = context or self.context
        ValueError.__init__(clone, clone._render())
        for name, value in vars(self).items():
            if name not in {"detail", "survey", "context"}:
                setattr(clone, name, value)
        return clone


class EmptyMessage(BadMessage):
    """The message has no bytes at all."""

    reason = "empty_message"


class Oversize(BadMessage):
    """The message is larger than the per-message limit."""

    reason = "oversize"


class NotAvro(BadMessage):
    """The bytes do not begin like the survey's wire format."""

    reason = "not_avro"


class TruncatedAvro(BadMessage):
    """The bytes start like Avro but end before the data does."""

    reason = "truncated_avro"


class CorruptAvro(BadMessage):
    """The bytes are complete but cannot be decoded (bad sync marker, garbage, trailing bytes)."""

    reason = "corrupt_avro"


class UnknownSchemaId(BadMessage):
    """A Confluent-framed message names a schema id no known schema version has."""

    reason = "unknown_schema_id"

    def __init__(
        self, schema_id: int, known: list[int], *, survey: str | None = None, context: MessageContext | None = None
    ) -> None:
        self.schema_id = schema_id
        super().__init__(
            f"schema id {schema_id} is not a known schema (known ids: {', '.join(map(str, sorted(known)))})",
            survey=survey,
            context=context,
        )


class UnknownSchemaVersion(BadMessage):
    """A self-describing message declares a schema version this broker has no mapping for."""

    reason = "unknown_schema_version"

    def __init__(
        self, version: str, known: list[str], *, survey: str | None = None, context: MessageContext | None = None
    ) -> None:
        self.version = version
        super().__init__(
            f"schema version {version!r} is not supported (known versions: {', '.join(known)}); "
            "add its schema and check the canonical mapping before replaying the quarantined messages",
            survey=survey,
            context=context,
        )


class WrongSchema(BadMessage):
    """Valid Avro, but not the survey's alert record."""

    reason = "wrong_schema"


class MissingField(BadMessage):
    """A field the canonical model needs is absent from the schema or null in the record."""

    reason = "missing_field"

    def __init__(self, field: str, detail: str, *, survey: str | None = None, context: MessageContext | None = None):
        self.field = field
        super().__init__(f"field {field!r} {detail}", survey=survey, context=context)


class BadCoordinates(BadMessage):
    """Right ascension or declination is NaN or out of range."""

    reason = "bad_coordinates"


class DuplicateAlertId(BadMessage):
    """The alert id was already stored. Raised downstream, where earlier alerts are known."""

    reason = "duplicate_alert_id"


#: Every reason code, for the quarantine table's documentation and for tests.
REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (
        EmptyMessage,
        Oversize,
        NotAvro,
        TruncatedAvro,
        CorruptAvro,
        UnknownSchemaId,
        UnknownSchemaVersion,
        WrongSchema,
        MissingField,
        BadCoordinates,
        DuplicateAlertId,
    )
)


def check_size(message: bytes, max_bytes: int | None, *, survey: str, context: MessageContext | None) -> None:
    """Raise :class:`EmptyMessage` or :class:`Oversize` before any decoding is attempted."""
    if not message:
        raise EmptyMessage("the message is empty (0 bytes)", survey=survey, context=context)
    if max_bytes is not None and len(message) > max_bytes:
        raise Oversize(
            f"the message is {len(message):,} bytes, over the {max_bytes:,}-byte limit", survey=survey, context=context
        )


def validate(row: Mapping[str, Any], context: MessageContext | None = None) -> None:
    """Reject a canonical row that no science module can use.

    Raises :class:`MissingField` when a required canonical column is null or empty, and
    :class:`BadCoordinates` when ``ra`` is not a finite number in [0, 360) or ``dec`` not in [-90, 90].
    """
    from alertlake.surveys.canonical import REQUIRED_COLUMNS  # canonical imports nothing from here; avoids a cycle

    survey = row.get("survey") or None
    for name in REQUIRED_COLUMNS:
        value = row.get(name)
        if value is None or value == "":
            raise MissingField(name, "is required by the canonical model but is null", survey=survey, context=context)
    ra, dec = row["ra"], row["dec"]
    if not (isinstance(ra, (int, float)) and math.isfinite(ra) and 0.0 <= ra < 360.0):
        raise BadCoordinates(f"ra={ra!r} is not a finite angle in [0, 360) deg", survey=survey, context=context)
    if not (isinstance(dec, (int, float)) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise BadCoordinates(f"dec={dec!r} is not a finite angle in [-90, 90] deg", survey=survey, context=context)
