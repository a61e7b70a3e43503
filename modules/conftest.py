"""Fixtures shared by the science modules' tests: the real sample alerts, and modules built once per session."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from alertlake import modules as registry


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    """The real shared sample alerts (ZTF and Rubin) as canonical rows with quality columns."""
    return registry.sample_alerts()


@pytest.fixture(scope="session")
def prepared() -> Callable[[str], registry.ScienceModule]:
    """``prepared(name)``: the module ``name`` with default params, built and loaded once per session."""
    cache: dict[str, registry.ScienceModule] = {}

    def get(name: str) -> registry.ScienceModule:
        if name not in cache:
            cache[name] = registry.get(name)().prepare()
        return cache[name]

    return get


@pytest.fixture(scope="session")
def with_features(sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]) -> pd.DataFrame:
    """The sample alerts with the features module's outputs joined."""
    return sample.join(prepared("features").predict(sample))
