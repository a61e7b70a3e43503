"""Quality cuts: every row says whether and why it passed."""

from __future__ import annotations

import pandas as pd

from alertlake import modules as registry
from alertlake.quality_cuts import Cut, QualityCuts, apply_quality_cuts, quality_cuts


def frame(**columns: list[object]) -> pd.DataFrame:
    """A small canonical-like frame."""
    return pd.DataFrame(columns)


def test_default_ztf_and_rubin_cuts() -> None:
    alerts = frame(survey=["ztf", "ztf", "ztf", "lsst", "lsst", "hsc"], reliability=[0.9, 0.3, None, 0.4, None, 1.0])
    out = quality_cuts(alerts)
    assert out["quality_pass"].tolist() == [True, False, False, False, True, False]
    assert out["quality_reason"].tolist() == [
        "",
        "reliability>=0.55",
        "reliability>=0.55",
        "reliability>=0.5",
        "",
        "no_quality_cuts_for_survey:hsc",
    ]


def test_bad_pixel_flag_applies_when_the_column_exists() -> None:
    alerts = frame(survey=["ztf", "ztf"], reliability=[0.9, 0.2], bad_pixel_flag=[True, False])
    out = quality_cuts(alerts)
    assert out["quality_reason"].tolist() == ["bad_pixel_flag==false", "reliability>=0.55"]


def test_cuts_are_configurable() -> None:
    config = QualityCuts(
        surveys={"ztf": [Cut(column="reliability", op=">=", value=0.95), Cut(column="mag", op="<=", value=19.0)]}
    )
    out = quality_cuts(frame(survey=["ztf", "ztf"], reliability=[0.9, 0.99], mag=[20.0, 18.0]), config)
    assert out["quality_reason"].tolist() == ["reliability>=0.95;mag<=19", ""]
    assert QualityCuts.model_validate_json(config.model_dump_json()) == config


def test_real_sample() -> None:
    sample = apply_quality_cuts(registry.sample_alerts())
    assert sample["quality_pass"].dtype == bool
    assert 0.5 < sample["quality_pass"].mean() < 1.0
    assert (sample["quality_reason"] == "").eq(sample["quality_pass"]).all()
