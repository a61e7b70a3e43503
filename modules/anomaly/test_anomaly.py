"""The anomaly score: reproducible fit, sensible range, and an extreme light curve scores as anomalous."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alertlake import modules as registry
from modules.anomaly.module import AnomalyModule


def test_scores_on_real_alerts(with_features: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]) -> None:
    module = prepared("anomaly")
    out = module.predict(with_features[module.inputs])
    registry.validate_outputs(module, with_features, out)
    assert out["anomaly_score"].between(0, 1).all()
    assert 0 < out["anomaly_flag"].mean() < 0.25


def test_fit_is_reproducible(with_features: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]) -> None:
    again = AnomalyModule().prepare()
    a = prepared("anomaly").predict(with_features[again.inputs])
    b = again.predict(with_features[again.inputs])
    pd.testing.assert_frame_equal(a, b)


def test_extreme_light_curve_is_more_anomalous(
    with_features: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    module = prepared("anomaly")
    typical = with_features[module.inputs].median().to_frame().T
    extreme = typical.copy()
    extreme["features_amplitude_mag"] = 6.0
    extreme["features_std_mag"] = 3.0
    extreme["features_rise_rate_mag_per_day"] = -5.0
    extreme["features_chi2_mag"] = 1e5
    frame = pd.concat([typical, extreme], ignore_index=True)
    frame["features_n_det"] = frame["features_n_det"].astype(np.int32)
    scores = module.predict(frame)["anomaly_score"]
    assert scores[1] > scores[0] + 0.1
