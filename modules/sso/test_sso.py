"""Solar-system flag from the survey's own association, on real ZTF and Rubin alerts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alertlake import modules as registry
from modules.sso.module import SsoModule


def test_flags_on_real_alerts(sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]) -> None:
    module = prepared("sso")
    out = module.predict(sample)
    registry.validate_outputs(module, sample, out)
    has = sample["ss_object_id"].notna()
    assert has.sum() >= 10
    assert not out.loc[~has, "sso_flag"].any()
    assert out.loc[~has, "sso_name"].isna().all()
    close = has & (sample["ss_distance_arcsec"] <= 5.0)
    assert out.loc[close, "sso_flag"].all()
    far = has & (sample["ss_distance_arcsec"] > 5.0)
    assert far.any() and not out.loc[far, "sso_flag"].any()
    assert (out.loc[has, "sso_name"] == sample.loc[has, "ss_object_id"].astype(str)).all()
    rubin_ss = sample["object_id"].str.startswith("ss_")
    assert rubin_ss.any() and out.loc[rubin_ss, "sso_flag"].all()


def test_threshold_and_missing_distance_are_configurable() -> None:
    alerts = pd.DataFrame({"ss_object_id": ["1234", "5678", None, "null"], "ss_distance_arcsec": [3.0, np.nan, 1.0, 1]})
    default = SsoModule().predict(alerts)
    assert default["sso_flag"].tolist() == [True, True, False, False]
    strict = SsoModule({"max_distance_arcsec": 2.0, "trust_association_without_distance": False}).predict(alerts)
    assert strict["sso_flag"].tolist() == [False, False, False, False]
    assert default["sso_name"].tolist() == ["1234", "5678", None, None]
