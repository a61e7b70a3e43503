"""Anomaly score: how unusual an alert's light curve is, by an isolation forest over the light-curve features.

The forest is fitted at registration, with a fixed seed, on the features of the real shared sample alerts
(ZTF and Rubin), so the same data and parameters give the same forest. The score is the isolation-forest
anomaly score of Liu et al. (2008) in (0, 1): higher is more anomalous, about 0.5 is ordinary, near 1 is
isolated quickly. ``anomaly_flag`` marks scores above ``threshold``.

Features are log-compressed where their range spans orders of magnitude (counts, chi2, rates) so that a single
huge value doesn't dominate the random splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from alertlake.modules import BuildResult, ModuleError, ModuleParams, ScienceModule
from modules.features.module import FeaturesModule

#: Features with heavy tails, compressed by sign(x) log1p(|x|) before fitting.
_LOG_COMPRESSED = (
    "features_n_det",
    "features_chi2_mag",
    "features_slope_mag_per_day",
    "features_slope_sigma",
    "features_rise_rate_mag_per_day",
    "features_duration_days",
    "features_n_det_all_bands",
    "features_n_neg_det",
    "features_n_upper_limits",
    "features_days_since_first_det",
)


class AnomalyParams(ModuleParams):
    """Isolation-forest settings and the flag threshold."""

    n_estimators: int = 200
    max_samples: int = 256
    seed: int = 42
    threshold: float = 0.6


def prepare_features(
    frame: pd.DataFrame, columns: list[str], fill: pd.Series | None = None
) -> tuple[np.ndarray, pd.Series]:
    """The forest's input matrix: log-compressed features, missing values replaced by ``fill`` (training medians;
    computed here when ``fill`` is None). Returns the matrix and the fill values used."""
    x = frame[columns].astype(float).copy()
    for col in columns:
        if col in _LOG_COMPRESSED:
            x[col] = np.sign(x[col]) * np.log1p(np.abs(x[col]))
    if fill is None:
        fill = x.median().fillna(0.0)
    # Median imputation keeps a missing feature (too few points) from looking extreme on its own.
    return x.fillna(fill).to_numpy(), fill


class AnomalyModule(ScienceModule):
    """Isolation-forest anomaly score over the light-curve features (higher = more anomalous)."""

    name: ClassVar[str] = "anomaly"
    version_note: ClassVar[str] = "isolation forest on log-compressed light-curve features, fitted on the shared sample"
    inputs: ClassVar[list[str]] = list(FeaturesModule.outputs)
    outputs: ClassVar[dict[str, str]] = {"anomaly_score": "double", "anomaly_flag": "boolean"}
    Params: ClassVar[type[ModuleParams]] = AnomalyParams

    def __init__(self, params: ModuleParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.forest: IsolationForest | None = None
        self.fill: pd.Series | None = None

    def build(self, workdir: Path) -> BuildResult:
        """Fit the forest on the features of the real shared sample and save it (``forest.joblib``)."""
        from alertlake.modules import sample_alerts

        assert isinstance(self.params, AnomalyParams)
        alerts = sample_alerts()
        features = FeaturesModule().predict(alerts)
        x, fill = prepare_features(features, list(self.inputs))
        forest = IsolationForest(
            n_estimators=self.params.n_estimators,
            max_samples=min(self.params.max_samples, len(x)),
            random_state=self.params.seed,
            n_jobs=1,
        ).fit(x)
        path = workdir / "forest.joblib"
        joblib.dump({"forest": forest, "fill": fill}, path)
        scores = -forest.score_samples(x)
        return BuildResult(
            artifacts={"forest": path},
            metrics={
                "training_alerts": float(len(x)),
                "training_score_median": float(np.median(scores)),
                "training_flagged_fraction": float(np.mean(scores > self.params.threshold)),
            },
            tags={
                "alertlake.data.training": "shared sample: real ZTF and Rubin alerts (alertlake.modules.sample_alerts)"
            },
        )

    def load(self, artifacts: dict[str, Path]) -> None:  # type: ignore[override]
        """Read the fitted forest and its fill values."""
        if "forest" not in artifacts:
            raise ModuleError("anomaly: artifact 'forest' missing")
        saved = joblib.load(artifacts["forest"])
        self.forest, self.fill = saved["forest"], saved["fill"]

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """Anomaly score and flag per alert."""
        if self.forest is None:
            raise ModuleError("anomaly: predict called before load (no forest)")
        assert isinstance(self.params, AnomalyParams)
        if len(alerts) == 0:
            return self.empty_outputs(alerts.index)
        x, _ = prepare_features(alerts, list(self.inputs), self.fill)
        score = -self.forest.score_samples(x)
        return pd.DataFrame(
            {"anomaly_score": score.astype(np.float64), "anomaly_flag": score > self.params.threshold},
            index=alerts.index,
        )
