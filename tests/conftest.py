"""Shared fixtures: the settings, and a guard that real services are up for integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from alertlake.health import CHECKS
from alertlake.settings import Settings

#: The JVMs the tests start (this session's Spark, and every job process and DAG task, which inherit it) live for
#: a minute or two on a few hundred alerts: the JIT's optimising tier (C2) costs them more CPU than it saves on 2
#: cores. With the quick tier only, a pipeline run over 696 alerts in batches of 300 (fresh lake, as the kill test
#: runs it) took 121/116 s instead of 149/134 s, in turn. Jobs themselves keep the default: they run for hours.
os.environ.setdefault("ALERTLAKE_SPARK_JAVA_OPTIONS", Settings().spark_java_options + " -XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the tests run against (the same environment variables as production code)."""
    return Settings()


#: Marks of the Kafka topics tests create (each also has a random part), deleted when the session ends.
TEST_TOPIC_MARKS = ("fault-", "dagtest-", "test-enrich-", "test.smoke.", "sectest_", "test-reconcile-", ".test-")


def _topics(settings: Settings) -> set[str]:
    from alertlake.kafka import admin

    return set(admin(settings).list_topics(timeout=10).topics)


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[Settings]:
    """Fails with a clear message when a local service is down instead of timing out deep in a client.

    At the end of the session, deletes the Kafka topics the tests created (the fault test alone fills one
    with 50,000 alerts, about 1.5 GB), leaving every topic that existed before.
    """
    down = [name for name, check in CHECKS.items() if not check(settings)]
    if down:
        pytest.fail(f"services down: {', '.join(down)}; start them with `make services-up`")
    before = _topics(settings)
    yield settings
    from alertlake.kafka import delete_topics

    created = sorted(t for t in _topics(settings) - before if any(mark in t for mark in TEST_TOPIC_MARKS))
    delete_topics(settings, created)
