"""Light-curve features checked against direct numpy computations on real alerts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from alertlake import modules as registry
from alertlake.surveys.canonical import SCHEMA


def band_curve(alert: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The alert's band light curve computed the slow, obvious way: (times, magnitudes), sorted."""
    points = [
        (h["mjd"], 0, h["mag"])
        for h in alert["history"]
        if h["kind"] == "detection"
        and h["band"] == alert["band"]
        and (h["flux"] or 0) > 0
        and h["mag"] is not None
        and np.isfinite(h["mag"])
    ]
    if alert["is_positive"] and pd.notna(alert["mag"]):
        points.append((alert["mjd"], 1, alert["mag"]))
    points.sort(key=lambda p: (p[0], p[1]))  # stable: at equal times history order, the alert itself last
    return np.array([p[0] for p in points]), np.array([p[2] for p in points])


def test_features_match_direct_computation(
    sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    module = prepared("features")
    out = module.predict(sample)
    registry.validate_outputs(module, sample, out)
    checked = 0
    for i, alert in sample.iterrows():
        t, m = band_curve(alert)
        row = out.loc[i]  # type: ignore[call-overload]
        assert row["features_n_det"] == len(t)
        if len(t) == 0:
            assert np.isnan(row["features_amplitude_mag"])
            continue
        assert np.isclose(row["features_amplitude_mag"], (m.max() - m.min()) / 2, atol=1e-9)
        assert np.isclose(row["features_duration_days"], t[-1] - t[0], atol=1e-9)
        if len(t) >= 2:
            assert np.isclose(row["features_std_mag"], m.std(ddof=1), atol=1e-9)
            dt = t[-1] - t[-2]
            if dt > 0:
                assert np.isclose(row["features_rise_rate_mag_per_day"], (m[-1] - m[-2]) / dt, rtol=1e-9)
            checked += 1
        else:
            assert np.isnan(row["features_std_mag"])
        dets = [h for h in alert["history"] if h["kind"] == "detection"]
        assert row["features_n_det_all_bands"] == len(dets) + int(pd.notna(alert["mag"]))
        assert row["features_n_upper_limits"] == sum(h["kind"] == "upper_limit" for h in alert["history"])
    assert checked > 50


def test_slope_is_the_weighted_linear_fit(
    sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    out = prepared("features").predict(sample)
    fitted = out["features_slope_mag_per_day"].notna()
    assert fitted.sum() > 30
    for i in out.index[fitted][:20]:
        alert = sample.loc[i]
        entries = [
            h
            for h in alert["history"]
            if h["kind"] == "detection" and h["band"] == alert["band"] and (h["flux"] or 0) > 0
        ]
        t = np.array([h["mjd"] for h in entries] + ([alert["mjd"]] if alert["is_positive"] else []))
        m = np.array([h["mag"] for h in entries] + ([alert["mag"]] if alert["is_positive"] else []))
        e = np.array([h["mag_err"] or 0.01 for h in entries] + ([alert["mag_err"]] if alert["is_positive"] else []))
        slope = np.polyfit(t - t.mean(), m, 1, w=1 / np.maximum(e, 0.01))[0]
        assert np.isclose(out.loc[i, "features_slope_mag_per_day"], slope, rtol=1e-6, atol=1e-9)


def test_arrow_input_from_spark_gives_the_same_features(
    sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    """mapInPandas hands history over as numpy arrays of dicts and float32 columns; the results must agree."""
    module = prepared("features")
    arrow_frame = pa.Table.from_pandas(sample[list(SCHEMA.names)], schema=SCHEMA, preserve_index=False).to_pandas()
    assert isinstance(arrow_frame["history"].iloc[0], np.ndarray)
    a = module.predict(sample).reset_index(drop=True)
    b = module.predict(arrow_frame)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-4)


def test_empty_and_null_history(prepared: Callable[[str], registry.ScienceModule]) -> None:
    module = prepared("features")
    alerts = pd.DataFrame(
        {
            "mjd": [60000.0, 60001.0],
            "band": ["g", "r"],
            "mag": [18.0, None],
            "mag_err": [0.1, None],
            "is_positive": [True, False],
            "history": [None, []],
        },
        index=[10, 11],
    )
    out = module.predict(alerts)
    registry.validate_outputs(module, alerts, out)
    assert out["features_n_det"].tolist() == [1, 0]
    assert out.loc[10, "features_amplitude_mag"] == 0.0
    assert out.loc[10, "features_days_since_first_det"] == 0.0
    assert out["features_days_since_first_det"].isna().tolist() == [False, True]
    empty = module.predict(alerts.iloc[:0])
    assert list(empty.columns) == list(module.outputs) and len(empty) == 0
