"""Which Airflow API failures the client retries (pure logic; the client itself runs against the real Airflow in
``make demo`` and the Airflow UI test)."""

from __future__ import annotations

import pytest

from alertlake.airflow_client import AirflowError, transient

LOCKED = '{"detail":{"reason":"Database error","statement":"hidden","orig_error":"hidden","message":"Serious error"}}'


@pytest.mark.parametrize(
    ("status", "text", "retry"),
    [
        (500, LOCKED, True),  # SQLite metadata database locked by another writer
        (502, "", True),
        (503, "Service Unavailable", True),
        (504, "", True),
        (500, '{"detail":"Internal Server Error"}', False),  # a bug: retrying would not help
        (400, LOCKED, False),
        (404, '{"detail":"The Dag with dag_id: `x` was not found"}', False),
        (409, '{"detail":"conflict"}', False),
    ],
)
def test_transient(status: int, text: str, retry: bool) -> None:
    assert transient(status, text) is retry


def test_error_keeps_the_status() -> None:
    assert AirflowError("POST /dags/x/dagRuns: 409 conflict", 409).status == 409
    assert AirflowError("a run did not succeed").status is None
