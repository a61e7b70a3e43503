"""The projected reader behind ``ZtfSurvey.read``: same rows, same records, same errors as the full path."""

from __future__ import annotations

import io
import json
import math
import random
from typing import Any, cast

import fastavro
import pytest

from alertlake.surveys import Survey, get_survey
from alertlake.surveys.avro_projection import DeferredRecord, ProjectionError, compile_projection, read_long
from alertlake.surveys.badmessages import bad_messages
from alertlake.surveys.errors import BadMessage, MessageContext
from alertlake.surveys.samples import sample_messages, ztf_undecodable_files
from alertlake.surveys.ztf import CANONICAL_PROJECTION

ZTF = get_survey("ztf")
SAMPLES = sample_messages("ztf")
VERSIONS = sorted({s.version for s in SAMPLES}, key=lambda v: tuple(map(int, v.split("."))))


def _identical(a: Any, b: Any) -> bool:
    """Equal values of the same type, NaN equal to NaN (rows hold floats straight from the alerts)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _body(message: bytes) -> tuple[dict[str, Any], int, int]:
    """(writer schema JSON, start, end) of the single record of a ZTF container."""
    schema, _, _, pos = ZTF._header(message, None)  # type: ignore[attr-defined]
    _, pos = read_long(message, pos)
    size, pos = read_long(message, pos)
    return json.loads(schema.raw), pos, pos + size


def test_the_samples_cover_every_version() -> None:
    assert VERSIONS == ["1.5", "1.8", "3.0", "3.1", "3.2", "3.3", "4.02"]


@pytest.mark.parametrize("version", VERSIONS)
def test_read_gives_the_rows_and_records_of_the_full_path(version: str) -> None:
    for sample in sample_messages("ztf", version):
        fast = ZTF.read(sample.message)
        full = Survey.read(ZTF, sample.message)  # decode_alerts (fastavro) + to_canonical_row + validate
        assert len(fast) == len(full) == 1
        (alert, row), (full_alert, full_row) = fast[0], full[0]
        assert _identical(row, full_row), sample.path
        assert alert.schema_version == full_alert.schema_version == version
        assert isinstance(alert.record, DeferredRecord) and not alert.record.is_decoded
        reference = next(iter(fastavro.reader(io.BytesIO(sample.message))))
        assert alert.record == reference  # every field, exactly as fastavro decodes it
        assert alert.record.is_decoded


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_reader_decodes_like_fastavro(version: str) -> None:
    for sample in sample_messages("ztf", version):
        schema, start, end = _body(sample.message)
        body = io.BytesIO(sample.message[start:end])
        reference = cast(dict[str, Any], fastavro.schemaless_reader(body, schema, None))
        record, stop = compile_projection(schema, True)(sample.message, start)
        assert stop == end and _identical(record, reference), sample.path
        projected, stop = compile_projection(schema, CANONICAL_PROJECTION)(sample.message, start)
        assert stop == end
        assert projected["candid"] == reference["candid"]
        assert projected["candidate"] == {
            k: v for k, v in reference["candidate"].items() if k in projected["candidate"]
        }


GENERIC = {
    "type": "record",
    "name": "top",
    "namespace": "t",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "colour", "type": {"type": "enum", "name": "colour", "symbols": ["red", "green", "blue"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "digest", "size": 4}},
        {"name": "tags", "type": {"type": "map", "values": ["null", "long", "string"]}},
        {"name": "blob", "type": ["null", "bytes"]},
        {"name": "again", "type": ["null", "digest"]},
        {"name": "n", "type": "int"},
        {"name": "x", "type": ["float", "null"]},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "item",
                    "fields": [
                        {"name": "a", "type": "double"},
                        {"name": "b", "type": ["null", "int"]},
                        {"name": "c", "type": ["null", "string"]},
                        {"name": "d", "type": {"type": "array", "items": "long"}},
                    ],
                },
            },
        },
        {"name": "last", "type": "string"},
    ],
}


def _random_record(rng: random.Random) -> dict[str, Any]:
    return {
        "flag": rng.random() < 0.5,
        "colour": rng.choice(["red", "green", "blue"]),
        "digest": rng.randbytes(4),
        "tags": {f"k{i}": rng.choice([None, rng.randint(-(2**62), 2**62), "é" * rng.randint(0, 70)]) for i in range(3)},
        "blob": rng.choice([None, rng.randbytes(rng.randint(0, 300))]),
        "again": rng.choice([None, rng.randbytes(4)]),
        "n": rng.randint(-(2**31), 2**31 - 1),
        "x": rng.choice([None, 1.5, -2.25]),
        "items": [
            {
                "a": rng.uniform(-1e9, 1e9),
                "b": rng.choice([None, rng.randint(-1000, 1000)]),
                "c": rng.choice([None, "x" * rng.randint(0, 200)]),
                "d": [rng.randint(-(2**40), 2**40) for _ in range(rng.randint(0, 3))],
            }
            for _ in range(rng.randint(0, 4))
        ],
        "last": "fin",
    }


def test_every_avro_type_full_and_projected() -> None:
    parsed = fastavro.parse_schema(GENERIC, named_schemas={})
    full = compile_projection(GENERIC, True)
    projected = compile_projection(GENERIC, {"colour": True, "items": {"b": True, "d": True}, "last": True})
    rng = random.Random(7)
    for _ in range(200):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, _random_record(rng))
        data = b"junk" + buffer.getvalue()
        reference = cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(data[4:]), parsed, None))
        record, end = full(data, 4)
        assert end == len(data) and _identical(record, reference)
        some, end = projected(data, 4)
        assert end == len(data)
        assert some == {
            "colour": reference["colour"],
            "items": [{"b": i["b"], "d": i["d"]} for i in reference["items"]],
            "last": reference["last"],
        }


def test_skipped_values_are_still_checked() -> None:
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "s", "type": ["null", "string"]}, {"name": "k", "type": "int"}],
    }
    read = compile_projection(schema, {"k": True})
    assert read(b"\x00\x04", 0) == ({"k": 2}, 2)
    assert read(b"\x02\x04ab\x06", 0) == ({"k": 3}, 5)
    with pytest.raises(ProjectionError, match="bad union index"):
        read(b"\x04\x04", 0)
    with pytest.raises(UnicodeDecodeError):
        read(b"\x02\x04\xff\xfe\x06", 0)  # invalid UTF-8 in a skipped string
    with pytest.raises(ProjectionError, match="bad length"):
        read(b"\x02\x40ab", 0)


def _flip(message: bytes, offset: int) -> bytes:
    return message[:offset] + bytes([message[offset] ^ 0xFF]) + message[offset + 1 :]


@pytest.mark.parametrize("version", VERSIONS)
def test_errors_are_those_of_the_full_path(version: str) -> None:
    good = sample_messages("ztf", version)[0].message
    _, start, end = _body(good)
    bad = [s.message for s in bad_messages("ztf", good) if not s.detected_downstream]
    bad += [_flip(good, start + k) for k in (0, 40, (end - start) // 3, (end - start) // 2)]
    bad += [path.read_bytes() for path in ztf_undecodable_files()]
    context = MessageContext(topic="ztf", partition=1, offset=2)
    for message in bad:
        try:
            expected: Any = Survey.read(ZTF, message, context)
        except BadMessage as error:
            expected = (type(error), str(error))
        try:
            got: Any = ZTF.read(message, context)
        except BadMessage as error:
            got = (type(error), str(error))
        if isinstance(expected, tuple):
            assert got == expected
        else:  # a flipped byte the schema still decodes: same alert
            assert _identical(got[0][1], expected[0][1]) and got[0][0].record == expected[0][0].record
