"""Solar-system objects: alerts the survey associated with a known asteroid or comet close to its ephemeris."""

from alertlake.filters import Filter

FILTER = Filter(
    name="solar_system",
    description="Alerts associated with a known solar-system object within the sso module's distance cut "
    "(sso_flag); sso_name carries the object's designation.",
    sql="sso_flag",
)
