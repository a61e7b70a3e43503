"""The supernova classifier: labels, reproducible training, honest (out-of-fold) metrics, typed outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alertlake import modules as registry
from modules.supernova.train import TrainingParams, fit, label, load_labelled


def test_labels() -> None:
    assert label("(TNS) SN Ia", None) == 1
    assert label(None, "(TNS) SLSN-I") == 1
    assert label(None, "(SIMBAD) Candidate_SN*") == 1
    assert label(None, "Mira") == 0
    assert label(None, "YSO_Candidate") == 0
    assert label(None, "(SIMBAD) QSO") == 0
    for unlabelled in (
        "Unknown",
        "Galaxy",
        "(TNS) Afterglow",
        "SN candidate",
        "Early SN Ia candidate",
        "Fail 500",
        "(TNS) Impostor-SN",
    ):
        assert label(None, unlabelled) is None, unlabelled


def test_training_data_is_real_and_grouped_by_object() -> None:
    alerts, y, data = load_labelled()
    assert len(alerts) == len(y) > 150
    assert alerts["alert_id"].is_unique
    assert 40 <= y.sum() <= len(y) - 40  # both classes well represented
    assert all(len(d["sha256"]) == 64 for d in data)


def test_training_is_reproducible_and_better_than_chance() -> None:
    params = TrainingParams(n_estimators=50)
    a, b = fit(params), fit(params)
    assert a.metrics == b.metrics
    # Out-of-fold over objects, on ~190 alerts: a loose bound, the point is "learns something", not a benchmark.
    assert a.metrics["cv_roc_auc"] > 0.65
    x = pd.DataFrame(np.zeros((1, len(a.feature_columns))), columns=a.feature_columns)
    assert np.array_equal(a.model.predict_proba(x), b.model.predict_proba(x))


def test_predict_on_real_alerts(with_features: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]) -> None:
    module = prepared("supernova")
    out = module.predict(with_features[module.inputs])
    registry.validate_outputs(module, with_features, out)
    assert out["supernova_score"].between(0, 1).all()
    assert out["supernova_flag"].any() and not out["supernova_flag"].all()
