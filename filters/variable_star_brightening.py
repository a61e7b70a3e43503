"""Known variable stars brightening: a VSX or GCVS star whose difference flux jumps above its recent level.

The difference flux is measured against the reference image, so a star's quiescent level can be negative or
positive; brightening is the current flux rising significantly above the median of its earlier detections in
the same band (outbursts of dwarf novae, flares, eclipses ending...).
"""

import numpy as np
import pandas as pd

from alertlake.filters import Filter, as_bool, as_float, history_column

#: How many earlier same-band detections define the star's recent level.
MIN_PREVIOUS = 2
#: Brightening must exceed this many times the alert's flux uncertainty.
MIN_SIGNIFICANCE = 5.0


def brightening(alerts: pd.DataFrame) -> "pd.Series[bool]":
    """Known variable, positive detection, flux above the median earlier same-band flux by >= 5 sigma."""
    history = history_column(alerts)
    band = alerts["band"].to_numpy(dtype=object)
    flux = as_float(alerts["flux"]).to_numpy()
    flux_err = as_float(alerts["flux_err"]).to_numpy()
    rising = np.zeros(len(alerts), dtype=bool)
    for i, entries in enumerate(history):
        previous = [
            e["flux"] for e in entries if e["kind"] == "detection" and e["band"] == band[i] and e["flux"] is not None
        ]
        if len(previous) >= MIN_PREVIOUS and np.isfinite(flux[i]) and np.isfinite(flux_err[i]):
            rising[i] = flux[i] - float(np.median(previous)) >= MIN_SIGNIFICANCE * flux_err[i]
    known = alerts["xmatch_vsx_type"].notna() | alerts["xmatch_gcvs_type"].notna()
    return (
        pd.Series(rising, index=alerts.index) & known & as_bool(alerts["is_positive"]) & as_bool(alerts["quality_pass"])
    )


FILTER = Filter(
    name="variable_star_brightening",
    description="Known variable stars (VSX or GCVS counterpart) brightening: quality-passed positive detection whose "
    "difference flux exceeds the median of its >= 2 earlier same-band detections by >= 5 sigma.",
    predicate=brightening,
    columns=(
        "band",
        "flux",
        "flux_err",
        "history",
        "is_positive",
        "quality_pass",
        "xmatch_vsx_type",
        "xmatch_gcvs_type",
    ),
)
