"""Supernova candidates: real, positive detections the supernova classifier scores as supernova-like.

Known variable stars (VSX or GCVS counterpart) and solar-system objects are left out: their light curves can
mimic a rise, and other streams serve them.
"""

from alertlake.filters import Filter

FILTER = Filter(
    name="sn_candidate",
    description="Supernova candidates: quality-passed positive detections with supernova_flag set (random-forest "
    "score >= its threshold), no known variable-star counterpart and no solar-system association.",
    sql=(
        "quality_pass AND is_positive AND supernova_flag AND NOT coalesce(sso_flag, false) "
        "AND xmatch_vsx_type IS NULL AND xmatch_gcvs_type IS NULL"
    ),
)
