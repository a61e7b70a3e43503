"""Avro schemas as Arrow types, and one lossless Arrow schema per survey spanning all its schema versions.

Bronze keeps every alert in its native shape. A survey's schema versions differ (fields added, renamed,
widened), so the bronze table's schema is the *union* of every version: every field of every version,
nullable, with numeric types widened where versions disagree. A record of any version fits it without loss.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pyarrow as pa

from alertlake.surveys import get_survey

_PRIMITIVES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
# Widening order for numbers when two versions disagree (ZTF changed some ints to longs over the years).
_NUMERIC_RANK = {pa.int32(): 0, pa.int64(): 1, pa.float32(): 2, pa.float64(): 3}


class SchemaConflict(ValueError):
    """Two schema versions give one field types that cannot both be stored without loss."""


def arrow_type(avro: Any, named: dict[str, pa.DataType] | None = None, namespace: str = "") -> pa.DataType:
    """The Arrow type of an Avro type (JSON form). Unions with null become nullable; named types resolve."""
    named = {} if named is None else named
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        for key in (avro, f"{namespace}.{avro}" if namespace else avro, avro.rsplit(".", 1)[-1]):
            if key in named:
                return named[key]
        raise SchemaConflict(f"unknown Avro named type {avro!r}")
    if isinstance(avro, list):
        members = [m for m in avro if m != "null"]
        if len(members) != 1:
            raise SchemaConflict(f"Avro union {avro!r} has {len(members)} non-null branches; only T|null is supported")
        return arrow_type(members[0], named, namespace)
    kind = avro["type"]
    if kind == "record":
        name = avro["name"]
        space = avro.get("namespace", name.rsplit(".", 1)[0] if "." in name else namespace)
        fields = [pa.field(f["name"], arrow_type(f["type"], named, space)) for f in avro["fields"]]
        struct = pa.struct(fields)
        full = name if "." in name else (f"{space}.{name}" if space else name)
        named[full] = named[name.rsplit(".", 1)[-1]] = struct
        return struct
    if kind == "array":
        return pa.list_(arrow_type(avro["items"], named, namespace))
    if kind == "map":
        return pa.map_(pa.string(), arrow_type(avro["values"], named, namespace))
    if kind == "enum":
        named[avro["name"]] = pa.string()
        return pa.string()
    if kind == "fixed":
        named[avro["name"]] = pa.binary()
        return pa.binary()
    return arrow_type(kind, named, namespace)  # {"type": "long", "logicalType": ...}: the underlying type


def merge_types(a: pa.DataType, b: pa.DataType, path: str = "") -> pa.DataType:
    """The narrowest type holding every value of ``a`` and of ``b`` (fields of structs are unioned)."""
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields: dict[str, pa.DataType] = {}
        lowered: dict[str, str] = {}
        for struct in (a, b):
            for i in range(struct.num_fields):
                f = struct.field(i)
                # Spark and Trino match column names case-insensitively: two spellings would collide.
                if f.name.lower() in lowered and lowered[f.name.lower()] != f.name:
                    raise SchemaConflict(f"{path}{f.name} and {path}{lowered[f.name.lower()]} differ only in case")
                lowered[f.name.lower()] = f.name
                fields[f.name] = merge_types(fields[f.name], f.type, f"{path}{f.name}.") if f.name in fields else f.type
        return pa.struct([pa.field(name, t) for name, t in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type, path + "[]."))
    if a in _NUMERIC_RANK and b in _NUMERIC_RANK:
        wider = a if _NUMERIC_RANK[a] >= _NUMERIC_RANK[b] else b
        if pa.types.is_floating(wider) and pa.types.is_integer(a if wider is b else b) and wider == pa.float32():
            return pa.float64()  # an int64 in a float32 would lose digits
        return wider
    raise SchemaConflict(f"field {path.rstrip('.') or '<root>'} is {a} in one version and {b} in another")


@cache
def native_schema(survey_name: str) -> pa.Schema:
    """Bronze's native columns for ``survey_name``: the union of every schema version it knows."""
    survey = get_survey(survey_name)
    merged: pa.DataType = pa.null()
    for version in survey.schema_versions:
        merged = merge_types(merged, arrow_type(survey.avro_schema(version)))
    return pa.schema([merged.field(i) for i in range(merged.num_fields)])


def _avro_of_arrow(t: pa.DataType, name: str, defined: set[str]) -> Any:
    """An Avro type reading to the Arrow type ``t`` (records named after ``name`` where the writer has none)."""
    for avro, arrow in _PRIMITIVES.items():
        if t == arrow:
            return avro
    if pa.types.is_list(t):
        return {"type": "array", "items": _nullable(_avro_of_arrow(t.value_type, name + "_item", defined))}
    if pa.types.is_map(t):
        return {"type": "map", "values": _nullable(_avro_of_arrow(t.item_type, name + "_value", defined))}
    if pa.types.is_struct(t):
        record = _unique(name, defined)
        fields = [
            {"name": f.name, "type": _nullable(_avro_of_arrow(f.type, f"{record}_{f.name}", defined)), "default": None}
            for f in t
        ]
        return {"type": "record", "name": record, "fields": fields}
    raise SchemaConflict(f"no Avro type reads to {t}")


def _unique(name: str, defined: set[str]) -> str:
    candidate, i = name, 1
    while candidate in defined:
        candidate, i = f"{name}_{i}", i + 1
    defined.add(candidate)
    return candidate


def _nullable(avro: Any) -> Any:
    members = [m for m in avro if m != "null"] if isinstance(avro, list) else [avro]
    return ["null", *members]


def _reader(writer: Any, target: pa.DataType, named: dict[str, Any], defined: set[str], space: str) -> Any:
    """The Avro reader type resolving ``writer`` (an Avro type) to the Arrow type ``target``."""
    if isinstance(writer, list):
        members = [m for m in writer if m != "null"]
        return _nullable(_reader(members[0], target, named, defined, space))
    if isinstance(writer, str):
        if writer in _PRIMITIVES:
            return _avro_of_arrow(target, writer, defined)  # Avro promotes int -> long -> float -> double
        for key in (writer, f"{space}.{writer}" if space else writer):
            if key in named:
                return _reader(named[key], target, named, defined, space)
        raise SchemaConflict(f"unknown Avro named type {writer!r}")
    kind = writer["type"]
    if kind == "record":
        name = writer["name"]
        own = writer.get("namespace", name.rsplit(".", 1)[0] if "." in name else space)
        full = name if "." in name else (f"{own}.{name}" if own else name)
        named[full] = named[name] = writer
        if full in defined:  # a record used twice (ZTF's three cutouts): declared once, then referenced
            return full
        defined.add(full)
        have = {f["name"]: f["type"] for f in writer["fields"]}
        fields = []
        for f in target:
            if f.name in have:
                ftype = _nullable(_reader(have[f.name], f.type, named, defined, own))
            else:
                ftype = _nullable(_avro_of_arrow(f.type, f"{full}_{f.name}", defined))
            fields.append({"name": f.name, "type": ftype, "default": None})
        return {"type": "record", "name": full, "fields": fields}  # the writer's name: Avro pairs them by it
    if kind == "array":
        return {"type": "array", "items": _reader(writer["items"], target.value_type, named, defined, space)}
    if kind == "map":
        return {"type": "map", "values": _reader(writer["values"], target.item_type, named, defined, space)}
    if kind in ("enum", "fixed"):
        return writer  # Spark reads enums as strings and fixed as binary, as the union has them
    return _reader(kind, target, named, defined, space)  # {"type": "long", "logicalType": ...}: the plain type


@cache
def reader_schema(survey_name: str, version: str) -> str:
    """The Avro reader schema (JSON) that resolves a ``version`` alert straight to :func:`native_schema`.

    Avro's own schema resolution does the conforming: fields the version lacks read as null (each reader
    field is nullable with default null), numbers are promoted (int -> long -> float -> double), logical
    types read as their plain type (timestamp-micros stays a long of microseconds, as the union keeps it).
    Records keep the writer's names, which is how Avro pairs them. Spark's ``from_avro`` takes it as its
    ``avroSchema`` option, so one decode per alert yields the bronze row's native columns.
    """
    survey = get_survey(survey_name)
    union = pa.struct(list(native_schema(survey_name)))
    return json.dumps(_reader(survey.avro_schema(version), union, {}, set(), ""))
