"""The canonical model: declared once, documented from the code, rows from every survey fit its schema."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pytest

from alertlake.surveys import get_survey, survey_names
from alertlake.surveys.canonical import (
    COLUMN_NAMES,
    REQUIRED_COLUMNS,
    SCHEMA,
    flux_to_mag,
    mag_to_flux,
    markdown_table,
    observing_night,
    to_table,
    utc_jd_to_tai_mjd,
)
from alertlake.surveys.errors import BadCoordinates, MissingField, validate
from alertlake.surveys.samples import sample_messages

DOC = Path(__file__).resolve().parents[2] / "docs" / "canonical-model.md"


def test_doc_table_matches_the_code() -> None:
    text = DOC.read_text()
    begin, end = "<!-- canonical-table:begin -->\n", "<!-- canonical-table:end -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == markdown_table(), (
        "docs/canonical-model.md is stale: regenerate with "
        "`python -c 'from alertlake.surveys.canonical import markdown_table; print(markdown_table())'`"
    )


def test_required_columns() -> None:
    for name in ("survey", "alert_id", "object_id", "ra", "dec", "mjd", "night", "band", "schema_version"):
        assert name in REQUIRED_COLUMNS
    for name in (
        "flux",
        "flux_err",
        "mag",
        "mag_err",
        "reliability",
        "is_positive",
        "ss_object_id",
        "ss_distance_arcsec",
        "ss_mag",
        "history",
    ):
        assert name in COLUMN_NAMES


def test_registry_finds_both_surveys() -> None:
    assert survey_names() == ["lsst", "ztf"]
    assert get_survey("ZTF").name == "ztf"
    with pytest.raises(KeyError, match="known surveys: lsst, ztf"):
        get_survey("ptf")


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_rows_of_every_real_sample_fit_the_arrow_schema(survey: str) -> None:
    impl = get_survey(survey)
    rows = [
        impl.to_canonical_row(a) for s in sample_messages(survey, real_only=True) for a in impl.decode_alerts(s.message)
    ]
    for row in rows:
        assert tuple(row) == COLUMN_NAMES
        validate(row)
    table = to_table(rows)
    assert table.schema == SCHEMA
    assert table.num_rows == len(rows)
    assert pa.compute.min(table["ra"]).as_py() >= 0


def test_observing_night() -> None:
    # Rubin, 2025-12-31 at 04:00 UTC (01:00 in Chile): still the night of the 30th.
    assert observing_night(61040.1667, -70.7494) == "2025-12-30"
    # 23:30 UTC the same evening (20:30 local) already belongs to the night of the 31st...
    assert observing_night(61040.979, -70.7494) == "2025-12-31"
    # ...and so does 09:00 UTC next morning: one night, one value, across UTC midnight.
    assert observing_night(61041.375, -70.7494) == "2025-12-31"
    assert observing_night(math.nan, 0.0) is None
    assert observing_night(1e12, 0.0) is None


def test_photometry_conversions() -> None:
    assert flux_to_mag(3631e9, None)[0] == pytest.approx(0.0, abs=1e-3)  # 3631 Jy is AB 0
    mag, err = flux_to_mag(-1000.0, 100.0)
    assert mag == pytest.approx(31.4 - 7.5) and err == pytest.approx(0.10857, rel=1e-4)
    assert flux_to_mag(0.0, 1.0) == (None, None)
    flux, flux_err = mag_to_flux(23.9, 0.1)
    assert flux == pytest.approx(1000.0) and flux_err == pytest.approx(92.1034, rel=1e-4)
    assert utc_jd_to_tai_mjd(2460000.5) == pytest.approx(60000.0 + 37 / 86400)


def test_validate_rejects() -> None:
    row = {name: 1 for name in COLUMN_NAMES} | {"ra": 10.0, "dec": 5.0, "survey": "ztf"}
    validate(row)
    with pytest.raises(BadCoordinates, match="ra=nan"):
        validate(row | {"ra": math.nan})
    with pytest.raises(BadCoordinates, match=re.escape("ra=360.0")):
        validate(row | {"ra": 360.0})
    with pytest.raises(BadCoordinates, match=re.escape("dec=-90.5")):
        validate(row | {"dec": -90.5})
    with pytest.raises(MissingField, match="'object_id'") as info:
        validate(row | {"object_id": ""})
    assert info.value.reason == "missing_field" and info.value.field == "object_id"
