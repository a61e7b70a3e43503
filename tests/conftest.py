"""Shared fixtures: the settings, and a guard that real services are up for integration tests."""

from __future__ import annotations

import pytest

from alertlake.health import CHECKS
from alertlake.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the tests run against (the same environment variables as production code)."""
    return Settings()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Fails with a clear message when a local service is down instead of timing out deep in a client."""
    down = [name for name, check in CHECKS.items() if not check(settings)]
    if down:
        pytest.fail(f"services down: {', '.join(down)}; start them with `make services-up`")
    return settings
