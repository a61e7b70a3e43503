"""Top anomalies: the light curves the isolation forest finds most unusual.

The anomaly score is the isolation forest's (higher = easier to isolate). 0.6 keeps roughly the top 4 % of the
real shared sample, a stream a human can still look at.
"""

from alertlake.filters import Filter

FILTER = Filter(
    name="top_anomaly",
    description="Quality-passed alerts whose anomaly_score (isolation forest on light-curve features) is >= 0.6, "
    "about the top 4 % of alerts.",
    sql="quality_pass AND anomaly_score >= 0.6",
)
