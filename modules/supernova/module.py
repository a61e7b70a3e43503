"""Supernova classifier: probability that the alert's object is a supernova rather than a star, variable star
or AGN, from its light-curve features (the ``features`` module's outputs).

The model is a random forest trained by :mod:`modules.supernova.train` on the labelled alerts of the shared
sample (spectroscopic TNS classes and SIMBAD classes attached by Fink). It is trained again at registration
(same data, same seed, so the same model) and shipped as an MLflow artifact; weights are never committed. The
training metrics are logged with every registered version; read the caveats in ``train.py`` before trusting
the score: the training sample is tiny.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd

from alertlake.modules import BuildResult, ModuleError, ModuleParams, ScienceModule
from modules.features.module import FeaturesModule


class SupernovaParams(ModuleParams):
    """Model hyper-parameters (see ``train.TrainingParams``) and the score above which an alert is flagged."""

    n_estimators: int = 300
    max_depth: int = 6
    min_samples_leaf: int = 2
    seed: int = 42
    threshold: float = 0.5


class SupernovaModule(ScienceModule):
    """Random-forest supernova-versus-other score over light-curve features."""

    name: ClassVar[str] = "supernova"
    version_note: ClassVar[str] = "random forest on light-curve features, trained on TNS/SIMBAD-labelled ZTF alerts"
    inputs: ClassVar[list[str]] = list(FeaturesModule.outputs)
    outputs: ClassVar[dict[str, str]] = {"supernova_score": "double", "supernova_flag": "boolean"}
    Params: ClassVar[type[ModuleParams]] = SupernovaParams

    def __init__(self, params: ModuleParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.model: Any = None
        self.feature_columns: list[str] = []

    def build(self, workdir: Path) -> BuildResult:
        """Train on the labelled shared sample and save the model (``model.joblib``)."""
        from modules.supernova.train import TrainingParams, fit

        assert isinstance(self.params, SupernovaParams)
        p = self.params
        result = fit(
            TrainingParams(
                n_estimators=p.n_estimators,
                max_depth=p.max_depth,
                min_samples_leaf=p.min_samples_leaf,
                seed=p.seed,
                threshold=p.threshold,
            )
        )
        path = workdir / "model.joblib"
        joblib.dump({"model": result.model, "feature_columns": result.feature_columns}, path)
        return BuildResult(
            artifacts={"model": path},
            metrics=result.metrics,
            tags={"alertlake.data.training": str([d["path"] for d in result.data])},
        )

    def load(self, artifacts: dict[str, Path]) -> None:  # type: ignore[override]
        """Read the trained model."""
        if "model" not in artifacts:
            raise ModuleError("supernova: artifact 'model' missing")
        saved = joblib.load(artifacts["model"])
        self.model, self.feature_columns = saved["model"], saved["feature_columns"]

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """Supernova probability and flag per alert."""
        if self.model is None:
            raise ModuleError("supernova: predict called before load (no model)")
        assert isinstance(self.params, SupernovaParams)
        if len(alerts) == 0:
            return self.empty_outputs(alerts.index)
        x = alerts[self.feature_columns].astype(float)
        score = self.model.predict_proba(x)[:, 1].astype(np.float64)
        return pd.DataFrame(
            {"supernova_score": score, "supernova_flag": score >= self.params.threshold}, index=alerts.index
        )
