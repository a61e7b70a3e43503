"""Parquet dictionaries for string columns only: the table properties Spark's Parquet writer gets from Delta."""

from __future__ import annotations

import pyarrow as pa

from alertlake.lake import STREAMED_TABLE_PROPERTIES, dictionaries_for_strings_only
from jobs.enrich import silver_properties, silver_schema


def test_strings_get_dictionaries_at_any_depth_and_nothing_else() -> None:
    schema = pa.schema(
        [
            pa.field("survey", pa.string()),
            pa.field("ra", pa.float64()),
            pa.field("history", pa.list_(pa.struct([("band", pa.string()), ("mag", pa.float32())]))),
            pa.field("cut", pa.struct([("reason", pa.large_string()), ("ok", pa.bool_())])),
            pa.field("tags", pa.map_(pa.string(), pa.int64())),
        ]
    )
    assert dictionaries_for_strings_only(schema) == {
        "parquet.enable.dictionary": "false",
        "parquet.enable.dictionary#survey": "true",
        "parquet.enable.dictionary#history.list.element.band": "true",
        "parquet.enable.dictionary#cut.reason": "true",
        "parquet.enable.dictionary#tags.key_value.key": "true",
    }


def test_silver_keeps_the_streamed_properties_and_lists_every_string_column() -> None:
    schema = silver_schema([])
    properties = silver_properties(schema)
    assert STREAMED_TABLE_PROPERTIES.items() <= properties.items()
    assert properties["parquet.enable.dictionary"] == "false"
    on = {k.split("#", 1)[1] for k, v in properties.items() if "#" in k and v == "true"}
    strings = {f.name for f in schema if pa.types.is_string(f.type)}
    assert strings <= on
    assert {"history.list.element.band", "history.list.element.kind"} <= on
    assert not {"ra", "mjd", "history.list.element.mjd", "history.list.element.mag"} & on
