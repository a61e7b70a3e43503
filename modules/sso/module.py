"""Solar-system objects: is the alert a known asteroid or comet, according to the survey's own association?

Both surveys associate alerts with known solar-system objects and send the result: ZTF ``ssnamenr`` and
``ssdistnr`` (distance to the nearest known object's predicted position, searched within 30''), Rubin
``ssObjectId`` with the ephemeris offset. The survey mappings put them in the canonical ``ss_object_id``,
``ss_distance_arcsec``, ``ss_mag``. An alert is flagged when a known object is associated and its predicted
position is within ``max_distance_arcsec`` (5'' by default, Fink's ``roid`` threshold for a known object).
Rubin sometimes associates an object without an offset: the pipeline's association is then trusted
(``trust_association_without_distance``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from alertlake.modules import ModuleParams, ScienceModule


class SsoParams(ModuleParams):
    """How close a known object must be, and whether a survey association without a distance counts."""

    max_distance_arcsec: float = 5.0
    trust_association_without_distance: bool = True


class SsoModule(ScienceModule):
    """Flag, distance and name of the known solar-system object the survey associated with the alert."""

    name: ClassVar[str] = "sso"
    version_note: ClassVar[str] = "known SSO within a distance, from the survey's own association"
    inputs: ClassVar[list[str]] = ["ss_object_id", "ss_distance_arcsec"]
    outputs: ClassVar[dict[str, str]] = {
        "sso_flag": "boolean",
        "sso_distance_arcsec": "double",
        "sso_name": "string",
    }
    Params: ClassVar[type[ModuleParams]] = SsoParams

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """Flag alerts associated with a known solar-system object close enough to its predicted position."""
        assert isinstance(self.params, SsoParams)
        names = alerts["ss_object_id"].astype("string").str.strip()
        names = names.mask(names.isin(["", "null", "None"]))
        has_object = names.notna().to_numpy()
        distance = alerts["ss_distance_arcsec"].to_numpy(dtype=float, na_value=np.nan)
        distance = np.where(has_object & (distance >= 0), distance, np.nan)
        close = distance <= self.params.max_distance_arcsec
        if self.params.trust_association_without_distance:
            close |= has_object & np.isnan(distance)
        return pd.DataFrame(
            {
                "sso_flag": has_object & close,
                "sso_distance_arcsec": distance,
                "sso_name": np.asarray(names.astype(object).where(names.notna(), None), dtype=object),
            },
            index=alerts.index,
        )
