"""Rubin: every version shipped by lsst-alert-packet decodes, round-trips and maps; real v10 alerts too."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from lsst.alert.packet import Schema

from alertlake.surveys import get_survey
from alertlake.surveys.errors import UnknownSchemaId, UnknownSchemaVersion, validate
from alertlake.surveys.lsst import alert_schema, schema_id, schema_root
from alertlake.surveys.samples import sample_messages

LSST = get_survey("lsst")
VERSIONS = list(LSST.schema_versions)
REAL = sample_messages("lsst", real_only=True)


def test_every_packaged_version_is_known() -> None:
    packaged = sorted(f"{p.parent.parent.name}.{p.parent.name}" for p in schema_root().glob("*/*/lsst.v*.alert.avsc"))
    assert sorted(VERSIONS) == packaged
    assert {"3.0", "7.3", "10.0", "11.1"} <= set(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_id_follows_the_package(version: str) -> None:
    major, minor = version.split(".")
    schema = Schema.from_file(str(schema_root() / major / minor / f"lsst.v{major}_{minor}.alert.avsc"))
    assert schema_id(version) == schema.get_schema_id() == int(major) * 100 + int(minor)
    assert LSST.schema_ids[schema_id(version)] == version  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_alert_round_trip(version: str) -> None:
    path = schema_root() / version.replace(".", "/") / "sample_data" / "fakeAlert.avro"
    expected: Any = next(iter(fastavro.reader(path.open("rb"))))
    (sample,) = [s for s in sample_messages("lsst", version) if not s.real]
    assert sample.message[0] == 0
    assert struct.unpack(">I", sample.message[1:5])[0] == schema_id(version)
    alert = LSST.decode_alerts(sample.message)[0]
    assert alert.record == expected
    assert alert.schema_version == version == LSST.detect_version(sample.message)
    assert LSST.encode(alert.record, version) == sample.message
    row = LSST.to_canonical_row(alert)
    assert row["alert_id"] == expected.get("diaSourceId", expected.get("alertId"))


def test_real_alerts_decode_and_round_trip() -> None:
    assert len(REAL) == 30
    for sample in REAL:
        container = next(iter(fastavro.reader(sample.path.open("rb"))))
        alert = LSST.decode_alerts(sample.message)[0]
        assert alert.record == container and alert.schema_version == "10.0"
        assert LSST.encode(alert.record, "10.0") == sample.message
        validate(LSST.to_canonical_row(alert))


@pytest.mark.parametrize(
    "sample", REAL[::6] + [s for s in REAL if "169813007065940020" in s.path.name], ids=lambda s: s.path.stem
)
def test_canonical_mapping_field_by_field(sample) -> None:
    alert = LSST.decode_alerts(sample.message)[0]
    raw, ds = alert.record, alert.record["diaSource"]
    row = LSST.to_canonical_row(alert)
    assert row["survey"] == "lsst" and row["schema_version"] == "10.0"
    assert row["alert_id"] == raw["diaSourceId"] == ds["diaSourceId"]
    expected_object = str(ds["diaObjectId"]) if ds["diaObjectId"] else f"ss_{ds['ssObjectId']}"
    assert row["object_id"] == expected_object
    assert row["ra"] == ds["ra"] and row["dec"] == ds["dec"]
    assert row["mjd"] == ds["midpointMjdTai"]
    assert row["band"] == ds["band"]
    assert row["flux"] == ds["psfFlux"] and row["flux_err"] == ds["psfFluxErr"]
    assert row["mag"] == pytest.approx(31.4 - 2.5 * math.log10(abs(ds["psfFlux"])))
    assert row["mag_err"] == pytest.approx(2.5 / math.log(10) * ds["psfFluxErr"] / abs(ds["psfFlux"]))
    assert row["is_positive"] is (not ds["isNegative"])
    assert row["reliability"] == ds["reliability"]
    if raw["ssSource"]:
        assert row["ss_object_id"] == str(ds["ssObjectId"])
        assert row["ss_distance_arcsec"] == raw["ssSource"]["ephOffset"]
    else:
        assert row["ss_object_id"] is None
    prv = (raw["prvDiaSources"] or []) + (raw["prvDiaForcedSources"] or [])
    assert len(row["history"]) == len(prv)
    assert sorted(h["flux"] for h in row["history"]) == sorted(p["psfFlux"] for p in prv)


def test_negative_and_solar_system_alerts_are_in_the_sample() -> None:
    rows = [LSST.to_canonical_row(LSST.decode_alerts(s.message)[0]) for s in REAL]
    assert any(r["is_positive"] is False for r in rows)
    assert sum(r["object_id"].startswith("ss_") for r in rows) == 3
    assert {r["night"] for r in rows if r["mjd"] < 61100} == {"2025-12-31"}


def test_old_field_names_map() -> None:
    """v3.0 uses midPointTai, decl, filterName, psFlux and alertId."""
    alert = LSST.decode_alerts(sample_messages("lsst", "3.0")[0].message)[0]
    ds = alert.record["diaSource"]
    row = LSST.to_canonical_row(alert)
    assert (row["dec"], row["mjd"], row["band"], row["flux"]) == (
        ds["decl"],
        ds["midPointTai"],
        ds["filterName"],
        ds["psFlux"],
    )
    assert row["alert_id"] == alert.record["alertId"]


def test_v7_nondetection_limits_become_upper_limits() -> None:
    record = LSST.decode(sample_messages("lsst", "7.4")[0].message)
    limits: list[dict[str, Any]] = [{"ccdVisitId": 1, "midpointMjdTai": 60000.25, "band": "g", "diaNoise": 120.0}]
    record["prvDiaNondetectionLimits"] = limits  # the fake alert has none
    alert = LSST.decode_alerts(LSST.encode(record, "7.4"))[0]
    assert alert.record["prvDiaNondetectionLimits"] == limits
    row = LSST.to_canonical_row(alert)
    uppers = [h for h in row["history"] if h["kind"] == "upper_limit"]
    assert len(uppers) == len(limits) > 0
    assert uppers[0]["limiting_mag"] == pytest.approx(31.4 - 2.5 * math.log10(5 * limits[0]["diaNoise"]))


def test_remap_makes_distinct_consistent_copies() -> None:
    record = LSST.decode(REAL[3].message)
    copy = LSST.remap(record, copy=5, time_shift_days=-2.5)
    assert copy["diaSourceId"] == copy["diaSource"]["diaSourceId"] != record["diaSourceId"]
    assert copy["diaObject"]["diaObjectId"] == copy["diaSource"]["diaObjectId"] != record["diaSource"]["diaObjectId"]
    assert copy["prvDiaSources"][0]["diaObjectId"] == copy["diaSource"]["diaObjectId"]
    assert copy["diaSource"]["midpointMjdTai"] == record["diaSource"]["midpointMjdTai"] - 2.5
    assert LSST.decode(LSST.encode(copy, "10.0")) == copy
    assert LSST.remap(record, copy=0) == record


def test_unknown_schema_id_and_version_are_named() -> None:
    with pytest.raises(UnknownSchemaId, match="schema id 1234"):
        LSST.decode(struct.pack(">bI", 0, 1234) + b"\x00" * 10)
    with pytest.raises(UnknownSchemaVersion, match=r"'12\.0'"):
        LSST.encode({}, "12.0")


def test_container_bytes_equal_the_wire_body() -> None:
    sample = REAL[0]
    record = LSST.decode(sample.message)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, alert_schema("10.0"), record)
    assert sample.message[5:] == body.getvalue()
