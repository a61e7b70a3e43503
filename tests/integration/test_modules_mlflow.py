"""All five science modules registered in the real MLflow server, promoted, loaded by alias and run."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from alertlake import modules as registry
from alertlake.modules import OutputMismatch, ScienceModule
from alertlake.settings import Settings

pytestmark = pytest.mark.integration

NAMES = ["features", "sso", "xmatch", "anomaly", "supernova"]


@pytest.fixture(scope="module")
def registered(services: Settings) -> dict[str, registry.RegisteredVersion]:
    """Register every module (dependencies first) as champion; dependencies are built once and reused."""
    prepared: dict[str, ScienceModule] = {}
    versions = {}
    for cls in registry.execution_order([registry.get(n) for n in NAMES]):
        module = cls()
        versions[cls.name] = registry.register(module, alias="champion", prepared=prepared)
        prepared[cls.name] = module
    return versions


def test_register_promote_load_predict(registered: dict[str, registry.RegisteredVersion]) -> None:
    alerts = registry.sample_alerts()
    frame = alerts.copy()
    for cls in registry.execution_order([registry.get(n) for n in NAMES]):
        loaded = registry.load(cls.name)  # by alias: champion
        assert loaded.version == registered[cls.name].version
        assert loaded.uri == f"models:/{cls.name}/{loaded.version}"
        outputs, errors = registry.run_module_safely(loaded, frame[list(cls.inputs)])
        assert errors.isna().all(), f"{cls.name} failed: {errors.dropna().unique()}"
        frame = frame.join(outputs)
    assert frame["xmatch_vsx_type"].notna().sum() > 20
    assert frame["sso_flag"].sum() > 5
    assert frame["supernova_score"].between(0, 1).all()
    assert frame["anomaly_score"].between(0, 1).all()


def test_described_with_params_metrics_and_aliases(registered: dict[str, registry.RegisteredVersion]) -> None:
    info = registry.describe("supernova")
    assert info["aliases"]["champion"] == registered["supernova"].version
    latest = next(v for v in info["versions"] if v["version"] == registered["supernova"].version)
    assert latest["metrics"]["cv_roc_auc"] > 0.5
    assert "params_hash" in latest["params"]


def test_promotion_only_when_the_check_passes(registered: dict[str, registry.RegisteredVersion]) -> None:
    version = registered["sso"].version
    assert registry.promote("sso", version, alias="challenger", check=lambda name, v: True)
    assert registry.describe("sso")["aliases"]["challenger"] == version
    before = registry.describe("sso")["aliases"].get("champion")
    assert not registry.promote("sso", version, alias="champion", check=lambda name, v: False)
    assert registry.describe("sso")["aliases"].get("champion") == before
    assert registry.load("sso", version).version == version  # pinned version, as a replay does


def test_pyfunc_loads_with_mlflow_alone(registered: dict[str, registry.RegisteredVersion], tmp_path: Path) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/xmatch@champion", dst_path=str(tmp_path))  # not a new /tmp folder
    out = model.predict(registry.sample_alerts()[["ra", "dec"]])
    assert set(registry.get("xmatch").outputs) == set(out.columns)


class MisdeclaredModule(ScienceModule):
    """Declares a double, returns strings: registration must refuse it."""

    name: ClassVar[str] = "misdeclared"
    inputs: ClassVar[list[str]] = ["ra"]
    outputs: ClassVar[dict[str, str]] = {"misdeclared_score": "double"}

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"misdeclared_score": np.full(len(alerts), "high", dtype=object)}, index=alerts.index)


def test_misdeclared_module_is_rejected(services: Settings) -> None:
    from mlflow import MlflowClient

    with pytest.raises(OutputMismatch, match="module 'misdeclared': column 'misdeclared_score' is declared 'double'"):
        registry.register(MisdeclaredModule())
    client = MlflowClient(services.mlflow_tracking_uri)
    assert not client.search_registered_models("name='misdeclared'")
