"""Fixtures for tests against the real local services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from alertlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark(services: Settings) -> Iterator[SparkSession]:
    """One Spark session (Delta, Kafka, Avro) shared by the integration tests."""
    from alertlake.spark import build_spark

    session = build_spark(services, "alertlake-tests", {"spark.ui.enabled": "false"})
    yield session
    session.stop()
