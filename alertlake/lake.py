"""Names and locations of the lake's tables: one place that maps ``layer.table`` to a Delta path."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from alertlake.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    import pyarrow as pa
    from deltalake import CommitProperties

log = logging.getLogger(__name__)

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


def delta_location(settings: Settings, name: str) -> str:
    """Location of table ``name`` for delta-rs (a local path, or the object-store URI)."""
    return delta_location_of(table_uri(settings, name))


def delta_location_of(uri: str) -> str:
    """A Spark table URI (``file://``, ``s3a://``) as delta-rs names the same location."""
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return uri.replace("s3a://", "s3://", 1)


def table_exists(settings: Settings, name: str) -> bool:
    """True when the Delta table ``name`` exists, asked of the storage itself (delta-rs) each time."""
    return table_exists_at(table_uri(settings, name))


def table_exists_at(uri: str) -> bool:
    """True when a Delta table exists at the Spark URI ``uri``, asked of the storage itself (delta-rs).

    Spark's ``DeltaTable.isDeltaTable`` is not for polling: it caches the table's log on its first call, and
    a table created afterwards by another process stays invisible to that Spark session. Nor is it cheap: it
    loads the table's snapshot, which for a table without checksum files (those delta-rs appends to, such as
    ``gold.filter_hits``) is a Spark job, 4 s of a job's start on a slow machine.
    """
    from deltalake import DeltaTable

    return bool(DeltaTable.is_deltatable(delta_location_of(uri)))


#: Delta properties of the tables a stream appends to every second or two (bronze, silver): a checkpoint every
#: 100 commits, not 10. Spark writes the checkpoint inside the commit that reaches it, which for these wide
#: schemas took 3-5 s on bronze and turned a 9 s silver write into 30 s: one batch in ten stalled the stream.
#: Readers replay at most 99 small JSON commits instead of 9.
STREAMED_TABLE_PROPERTIES = {"delta.checkpointInterval": "100"}


def dictionaries_for_strings_only(schema: pa.Schema) -> dict[str, str]:
    """Table properties giving Parquet dictionary pages to the string columns of ``schema`` only (nested ones too).

    Delta hands a table's ``parquet.*`` properties to Spark's Parquet writer, per column as well
    (``parquet.enable.dictionary#<column path>``). A dictionary pays for strings that repeat (survey, band, a
    history entry's kind); for measurements, almost all distinct, the writer hashes every value into a dictionary
    it then drops for plain encoding. Columns added later (a new module's outputs) get no dictionary.
    """
    import pyarrow as pa

    properties = {"parquet.enable.dictionary": "false"}

    def visit(path: str, t: pa.DataType) -> None:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            properties[f"parquet.enable.dictionary#{path}"] = "true"
        elif pa.types.is_struct(t):
            for f in t:
                visit(f"{path}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            visit(f"{path}.list.element", t.value_type)  # Spark writes Parquet's three-level lists
        elif pa.types.is_map(t):
            visit(f"{path}.key_value.key", t.key_type)
            visit(f"{path}.key_value.value", t.item_type)

    for f in schema:
        visit(f.name, f.type)
    return properties


def nullable(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field nullable, nested ones too: the schema Spark gives a table it creates from a
    DataFrame (it writes every column as nullable), so a table created here is the one Spark would create."""
    import pyarrow as pa

    def field(f: pa.Field) -> pa.Field:
        return pa.field(f.name, kind(f.type), nullable=True, metadata=f.metadata)

    def kind(t: pa.DataType) -> pa.DataType:
        if pa.types.is_struct(t):
            return pa.struct([field(t.field(i)) for i in range(t.num_fields)])
        if pa.types.is_large_list(t):
            return pa.large_list(field(t.value_field))
        if pa.types.is_list(t):
            return pa.list_(field(t.value_field))
        if pa.types.is_map(t):
            return pa.map_(kind(t.key_type), field(t.item_field))
        return t

    return pa.schema([field(f) for f in schema], metadata=schema.metadata)


def ensure_table(
    uri: str, schema: pa.Schema, partition: str | None = None, properties: dict[str, str] | None = None
) -> None:
    """Create the Delta table at the Spark URI ``uri`` with ``schema`` (all nullable, as Spark writes), its
    ``partition`` column and table ``properties``, unless it exists, so readers see it at once.

    Created by delta-rs, not Spark: the first commit is the same (same protocol, schema, partitioning and
    properties as a Spark append of no rows, deletion vectors off), and it costs milliseconds, where Spark
    spent a job per table, 13-18 s of a job's first start on a fresh lake on a slow machine. Spark's first load of
    such a table, which has no checksum file until Spark's first commit to it, is a small job (0.5-7 s, once).
    Another process creating the same table at the same moment is not an error. Properties outside Delta's
    own ``delta.*`` (such as ``parquet.*``, which Spark's Delta writer hands to Parquet) are kept as given."""
    from deltalake import DeltaTable

    if table_exists_at(uri):
        return
    config = {"delta.enableDeletionVectors": "false", **(properties or {})}
    try:
        DeltaTable.create(
            delta_location_of(uri),
            schema=nullable(schema),
            partition_by=[partition] if partition else None,
            configuration=config,
            # delta-rs refuses any key Delta does not define (parquet.* too): checked when all keys are delta.*.
            raise_if_key_not_exists=all(key.startswith("delta.") for key in config),
        )
    except Exception:
        if not table_exists_at(uri):
            raise


def read_columns(
    settings: Settings, name: str, columns: list[str], filters: list[tuple[str, str, Any]] | None = None
) -> pa.Table:
    """Columns of Delta table ``name`` (rows matching ``filters``, pyarrow-style) read with delta-rs.

    For the small key lookups of a micro-batch: milliseconds where a Spark read costs a job and, first in a
    process, seconds of Delta log loading.
    """
    from deltalake import DeltaTable

    return DeltaTable(delta_location(settings, name)).to_pyarrow_table(columns=columns, filters=filters)


def append_once(
    settings: Settings,
    name: str,
    table: pa.Table,
    app_id: str,
    version: int,
    partition_by: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Append ``table`` to Delta table ``name`` with delta-rs, at most once per (``app_id``, ``version``)
    (:func:`commit_once`). Far cheaper than a Spark write for the small tables of a micro-batch (no job, no task).
    """
    from deltalake import write_deltalake

    location = delta_location(settings, name)

    def append(properties: CommitProperties) -> None:
        write_deltalake(location, table, mode="append", partition_by=partition_by, commit_properties=properties)

    return commit_once(settings, name, app_id, version, append, metadata)


def commit_once(
    settings: Settings,
    name: str,
    app_id: str,
    version: int,
    commit: Callable[[CommitProperties], None],
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Run ``commit`` (a delta-rs write to table ``name`` with the properties given) at most once per
    (``app_id``, ``version``).

    The commit carries a Delta transaction action (the same one Spark's ``txnAppId``/``txnVersion`` writes), so a
    re-run of an already committed version is a no-op (returns False); concurrent commits by other writers are
    retried. ``metadata`` goes into the commit (``DESCRIBE HISTORY`` shows it).
    """
    from deltalake import CommitProperties, DeltaTable, Transaction

    location = delta_location(settings, name)
    properties = CommitProperties(
        custom_metadata={"userMetadata": json.dumps(metadata)} if metadata else None,
        app_transactions=[Transaction(app_id=app_id, version=version)],
    )

    def not_yet() -> bool:
        if DeltaTable.is_deltatable(location):
            done = DeltaTable(location).transaction_version(app_id)
            if done is not None and done >= version:
                log.info("%s: %s version %d already committed", name, app_id, version)
                return False
        return True

    return commit_retrying(name, lambda: commit(properties), not_yet)


def commit_retrying(name: str, commit: Callable[[], None], still_wanted: Callable[[], bool] = lambda: True) -> bool:
    """Run ``commit`` (a delta-rs write to table ``name``), again when another writer's commit won (up to five
    attempts), as long as ``still_wanted()`` before each attempt; whether it committed."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(5):
        if not still_wanted():
            return False
        try:
            commit()
            return True
        except CommitFailedError:
            if attempt == 4:
                raise
            log.info("concurrent commit on %s, retrying", name)
    return False


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
