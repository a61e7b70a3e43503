"""First detection of a new object: nothing was ever detected there, yet the field was observed recently
deeply enough to have seen it at today's brightness.

The upper limit condition is what makes "new" meaningful: without a recent, deeper non-detection an empty
history only says the survey had not looked.
"""

import pandas as pd

from alertlake.filters import Filter, as_bool, as_float, history_entries

#: A non-detection counts when it is at most this many days before the alert.
RECENT_DAYS = 30.0
#: A known asteroid predicted this close is a likelier explanation than a new object (early ZTF alerts give
#: the distance in whole arcseconds, and asteroids 6-7" away with the alert's magnitude are common there).
SSO_EXCLUSION_ARCSEC = 30.0


def first_detection(alerts: pd.DataFrame) -> "pd.Series[bool]":
    """No detection in the history, and an upper limit in the last 30 days fainter than the alert's magnitude."""
    n = len(alerts)
    history = history_entries(alerts)
    mjd = as_float(alerts["mjd"]).to_numpy()[history.row]  # the alert's own values, per history entry
    mag = as_float(alerts["mag"]).to_numpy()[history.row]
    kind = history.field("kind")
    entry_mjd, limit = history.field("mjd"), history.field("limiting_mag")
    detected = history.per_row(kind == "detection", n) > 0
    deeper_recently = (
        (kind == "upper_limit") & (mjd - RECENT_DAYS <= entry_mjd) & (entry_mjd < mjd) & (limit > mag)
    )  # NaN (null) compares False
    new = ~detected & (history.per_row(deeper_recently, n) > 0)
    known = alerts["xmatch_vsx_type"].notna() | alerts["xmatch_gcvs_type"].notna()
    ss_distance = as_float(alerts["ss_distance_arcsec"])
    near_asteroid = alerts["ss_object_id"].notna() & ~(ss_distance > SSO_EXCLUSION_ARCSEC)
    return (
        pd.Series(new, index=alerts.index)
        & as_bool(alerts["quality_pass"])
        & as_bool(alerts["is_positive"])
        & ~as_bool(alerts["sso_flag"])
        & ~known
        & ~near_asteroid
    )


FILTER = Filter(
    name="new_object",
    description="First detection of a new object: quality-passed positive detection with no earlier detection "
    "in its history but a non-detection in the previous 30 days deeper than its current magnitude; not a "
    "known variable star, solar-system object or possible asteroid (a known one within 30 arcsec).",
    predicate=first_detection,
    columns=(
        "mjd",
        "mag",
        "history",
        "quality_pass",
        "is_positive",
        "sso_flag",
        "ss_object_id",
        "ss_distance_arcsec",
        "xmatch_vsx_type",
        "xmatch_gcvs_type",
    ),
)
