"""Survey alert formats: one module per survey, each an implementation of :class:`Survey`.

A survey module (``ztf.py``, ``lsst.py``) declares its schemas by version, how to recognise the version of a
message, its wire format both ways, and the mapping from its native record to the canonical columns
(:mod:`alertlake.surveys.canonical`). A module becomes known to :func:`get_survey` by defining a
module-level ``SURVEY`` instance: adding a survey is adding one module, nothing else.

Nothing outside this package knows a survey's field names.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any, ClassVar, NamedTuple

from alertlake.surveys.canonical import CanonicalRow
from alertlake.surveys.errors import DEFAULT_MAX_MESSAGE_BYTES, BadMessage, MessageContext, validate

__all__ = ["DecodedAlert", "Remapper", "Survey", "copied_id", "get_survey", "survey_names", "surveys"]

_MASK64 = (1 << 64) - 1


def copied_id(old: int, copy: int) -> int:
    """Return the id that ``old`` gets in simulated copy number ``copy`` (``copy`` 0 keeps it).

    A splitmix64 mix of (old, copy) into a positive int64: deterministic, so every occurrence of an id in a
    copy maps alike, and collisions among a million ids are about as likely as 1 in 10^7.
    """
    if copy == 0:
        return old
    x = (old + copy * 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & 0x7FFF_FFFF_FFFF_FFFF


#: (copy, time_shift_days) -> (wire message, object id, alert id): see :meth:`Survey.remapper`.
Remapper = Callable[[int, float], tuple[bytes, str, int]]


class DecodedAlert(NamedTuple):
    """A native alert record and the schema version it was written with.

    ``record`` is a plain ``dict`` from :meth:`Survey.decode_alerts`; :meth:`Survey.read` may hand back a
    read-only mapping that decodes the record in full on first access (every field is still there).
    """

    record: Mapping[str, Any]
    schema_version: str


class Survey(ABC):
    """What every survey module implements. Instances are stateless apart from schema caches."""

    #: Short lower-case name, used as the ``survey`` canonical value and in table names.
    name: ClassVar[str]
    #: Kafka topic the survey's alerts arrive on unless settings say otherwise.
    default_topic: ClassVar[str]
    #: Observatory longitude (deg, east positive): defines the observing night, see ``canonical.observing_night``.
    observatory_longitude_deg: ClassVar[float]
    #: Top-level fields holding image stamps (dropped by ``without_cutouts`` for light scale tests).
    cutout_fields: ClassVar[tuple[str, ...]]
    #: Top-level native field of the alert id, and of the object id as the survey names it (for SQL users).
    alert_id_field: ClassVar[str]

    @abstractmethod
    def avro_schema(self, version: str) -> dict[str, Any]:
        """Return the Avro schema (JSON form, named types defined at first use) of alert version ``version``."""

    @abstractmethod
    def schemaless_body(self, message: bytes, version: str) -> bytes:
        """Return the Avro body of a message that ``avro_schema(version)`` decodes (for decoders in the JVM).

        Call it on a message that decoded as ``version``; raises :class:`BadMessage` if its layout differs.
        """

    def file_to_messages(self, data: bytes) -> list[bytes]:
        """Return the Kafka messages held in one alert file (default: the file is one message, as ZTF's)."""
        return [data]

    def without_cutouts(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Return a shallow copy of ``record`` with every image stamp set to null."""
        return {key: (None if key in self.cutout_fields else value) for key, value in record.items()}

    @property
    @abstractmethod
    def schema_versions(self) -> tuple[str, ...]:
        """Every schema version this module decodes, encodes and maps, oldest first."""

    @abstractmethod
    def detect_version(self, message: bytes, context: MessageContext | None = None) -> str:
        """Return the schema version of a wire-format message, or raise a :class:`BadMessage`."""

    @abstractmethod
    def decode_alerts(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> list[DecodedAlert]:
        """Decode one wire-format message into its native records (every field kept).

        Raises a :class:`~alertlake.surveys.errors.BadMessage` subclass naming the message and the problem.
        """

    @abstractmethod
    def encode(self, record: Mapping[str, Any], version: str) -> bytes:
        """Encode a native record in the survey's real wire format with the schema of ``version``."""

    @abstractmethod
    def to_canonical_row(self, alert: DecodedAlert) -> CanonicalRow:
        """Map one native record to the canonical columns (the survey's only mapping)."""

    @abstractmethod
    def alert_id(self, record: Mapping[str, Any]) -> int:
        """Return the survey's unique alert id of a native record."""

    @abstractmethod
    def object_id(self, record: Mapping[str, Any]) -> str:
        """Return the canonical object id of a native record."""

    @abstractmethod
    def remap(self, record: Mapping[str, Any], copy: int, time_shift_days: float = 0.0) -> dict[str, Any]:
        """Return a copy of ``record`` made into a distinct alert, for scaling a small sample into a big stream.

        ``copy`` 0 keeps the ids; any other value gives every alert, source and object id a new value that
        is the same function of (old id, copy) everywhere it appears, so histories and objects stay
        consistent within a copy and no two copies share an id. Observation times move by
        ``time_shift_days``. The input record is not modified.
        """

    def remapper(self, alert: DecodedAlert, message: bytes) -> Remapper | None:
        """Optional fast path of the simulator for one sample alert and its wire ``message``.

        Returns a function ``(copy, time_shift_days) -> (message, object id, alert id)`` whose message
        decodes to ``remap(alert.record, copy, time_shift_days)``, the ids being that record's, built without
        re-encoding the whole record. ``None`` (the default) when the survey has no such path for this message:
        the simulator then remaps and encodes.
        """
        return None

    def decode(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> dict[str, Any]:
        """Decode a message that carries exactly one alert and return its native record."""
        alerts = self.decode_alerts(message, context, max_bytes)
        if len(alerts) != 1:
            from alertlake.surveys.errors import CorruptAvro

            raise CorruptAvro(f"expected one alert per message, found {len(alerts)}", survey=self.name, context=context)
        record = alerts[0].record
        return record if isinstance(record, dict) else dict(record)

    def to_canonical(self, alerts: Iterable[DecodedAlert]) -> list[CanonicalRow]:
        """Map decoded alerts to canonical rows (see :mod:`alertlake.surveys.canonical`)."""
        return [self.to_canonical_row(alert) for alert in alerts]

    def read(
        self,
        message: bytes,
        context: MessageContext | None = None,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> list[tuple[DecodedAlert, CanonicalRow]]:
        """Decode, map and validate a message: what ingestion does before an alert may enter bronze.

        Raises a :class:`~alertlake.surveys.errors.BadMessage` whose ``reason`` goes to quarantine.
        """
        out = []
        for alert in self.decode_alerts(message, context, max_bytes):
            row = self.to_canonical_row(alert)
            try:
                validate(row, context)
            except BadMessage as error:
                raise error.with_context(survey=self.name, context=context) from None
            out.append((alert, row))
        return out


@cache
def surveys() -> dict[str, Survey]:
    """Return every survey module's ``SURVEY``, by name, found by scanning this package."""
    found: dict[str, Survey] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        survey = getattr(module, "SURVEY", None)
        if isinstance(survey, Survey):
            found[survey.name] = survey
    return dict(sorted(found.items()))


def survey_names() -> list[str]:
    """Return the names of all known surveys, sorted."""
    return list(surveys())


def get_survey(name: str) -> Survey:
    """Return the survey called ``name`` (e.g. ``ztf``, ``lsst``); raise ``KeyError`` listing known ones."""
    try:
        return surveys()[name.lower()]
    except KeyError:
        raise KeyError(f"unknown survey {name!r}; known surveys: {', '.join(surveys())}") from None
