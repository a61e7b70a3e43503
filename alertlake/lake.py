"""Names and locations of the lake's tables: one place that maps ``layer.table`` to a Delta path."""

from __future__ import annotations

import datetime as dt

from alertlake.settings import Settings

LAYERS = ("bronze", "silver", "gold", "quality")
"""The lake's schemas, as Trino shows them (``lake.bronze.*`` ...)."""


def split_name(name: str) -> tuple[str, str]:
    """``"bronze.ztf_alerts"`` -> ``("bronze", "ztf_alerts")``, with a clear error for anything else."""
    layer, _, table = name.partition(".")
    if not table or "." in table or not table.replace("_", "").isalnum():
        raise ValueError(f"table name {name!r} must look like '<layer>.<table>' with layer in {LAYERS}")
    if layer not in LAYERS and not layer.startswith("test_"):
        raise ValueError(f"unknown layer {layer!r} in table name {name!r}; expected one of {LAYERS}")
    return layer, table


def table_uri(settings: Settings, name: str) -> str:
    """The Delta table location of ``layer.table`` under the lake root (``file://`` or object-store URI)."""
    layer, table = split_name(name)
    return f"{settings.lake_uri}/{layer}/{table}"


def checkpoint_uri(settings: Settings, job: str) -> str:
    """Where a streaming job keeps its checkpoint (beside the tables, so it moves with the lake)."""
    return f"{settings.lake_uri}/_checkpoints/{job}"


def asset_uri(name: str) -> str:
    """The Airflow Asset URI of lake table ``layer.table`` (DAGs schedule on these to follow data)."""
    layer, table = split_name(name)
    return f"alertlake://lake/{layer}/{table}"


def night_window(survey: str, night: str) -> tuple[dt.datetime, dt.datetime]:
    """UTC start and end of observing night ``night`` at the survey's observatory (local noon to noon)."""
    from alertlake.surveys import get_survey

    longitude = get_survey(survey).observatory_longitude_deg
    local_noon = dt.datetime.fromisoformat(night).replace(hour=12, tzinfo=dt.UTC)
    start = local_noon - dt.timedelta(hours=longitude / 15.0)
    return start, start + dt.timedelta(days=1)
