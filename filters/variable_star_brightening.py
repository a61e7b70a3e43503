"""Known variable stars brightening: a VSX or GCVS star whose difference flux jumps above its recent level.

The difference flux is measured against the reference image, so a star's quiescent level can be negative or
positive; brightening is the current flux rising significantly above the median of its earlier detections in
the same band (outbursts of dwarf novae, flares, eclipses ending...).
"""

import numpy as np
import pandas as pd

from alertlake.filters import Filter, as_bool, as_float, history_entries

#: How many earlier same-band detections define the star's recent level.
MIN_PREVIOUS = 2
#: Brightening must exceed this many times the alert's flux uncertainty.
MIN_SIGNIFICANCE = 5.0


def brightening(alerts: pd.DataFrame) -> "pd.Series[bool]":
    """Known variable, positive detection, flux above the median earlier same-band flux by >= 5 sigma."""
    n = len(alerts)
    flux = as_float(alerts["flux"]).to_numpy()
    flux_err = as_float(alerts["flux_err"]).to_numpy()
    known = (alerts["xmatch_vsx_type"].notna() | alerts["xmatch_gcvs_type"].notna()).to_numpy()
    candidate = (
        known
        & as_bool(alerts["is_positive"]).to_numpy()
        & as_bool(alerts["quality_pass"]).to_numpy()
        & np.isfinite(flux)
        & np.isfinite(flux_err)
    )
    rising = np.zeros(n, dtype=bool)
    history = history_entries(alerts)
    if not candidate.any() or not len(history.row):
        return pd.Series(rising, index=alerts.index, dtype=bool)
    band = alerts["band"].to_numpy(dtype=object)
    entry_flux = history.field("flux")
    previous = (
        candidate[history.row]
        & (history.field("kind") == "detection")
        & (history.field("band") == band[history.row])
        & ~np.isnan(entry_flux)
    )
    # Median of each alert's earlier same-band fluxes: sort them by (alert, flux), take the middle one or two.
    rows, values = history.row[previous], entry_flux[previous]
    order = np.lexsort((values, rows))
    rows, values = rows[order], values[order]
    count = np.bincount(rows, minlength=n)[:n]
    start = np.cumsum(count) - count
    enough = np.nonzero(count >= MIN_PREVIOUS)[0]
    low = start[enough] + (count[enough] - 1) // 2
    high = start[enough] + count[enough] // 2
    median = (values[low] + values[high]) / 2
    rising[enough] = flux[enough] - median >= MIN_SIGNIFICANCE * flux_err[enough]
    return pd.Series(rising & candidate, index=alerts.index)


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
