"""Early supernova candidates: supernova-like objects first detected at most 10 days ago.

Early spectra are what constrain a supernova's progenitor, so this stream is small and prompt: a high
supernova score on a young light curve, nothing known at that position.
"""

from alertlake.filters import Filter

FILTER = Filter(
    name="early_sn_candidate",
    description="Young supernova candidates: supernova_score >= 0.5 and first detected <= 10 days before this "
    "alert (features_days_since_first_det), quality-passed positive detection, no known variable star, not a "
    "solar-system object.",
    sql=(
        "quality_pass AND is_positive AND supernova_score >= 0.5 AND features_days_since_first_det <= 10 "
        "AND NOT coalesce(sso_flag, false) AND xmatch_vsx_type IS NULL AND xmatch_gcvs_type IS NULL"
    ),
)
