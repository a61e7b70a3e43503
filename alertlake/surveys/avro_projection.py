"""Projected Avro decoding: read only the fields a caller needs from a schemaless body, skip the rest.

``fastavro`` builds a Python object for every value of a record. A ZTF alert has ~2,100 of them (about 40
previous candidates of ~55 fields each), while the canonical mapping reads ~40. :func:`compile_projection`
turns a writer schema and a *projection* into a specialised pure-Python reader (generated source, compiled
once per distinct writer schema) that decodes the projected fields exactly as ``fastavro`` would and steps
over the others.

A projection maps field names to ``True`` (decode the whole value) or to a nested projection (the field is a
record, an array or map of records, or a union of those: apply the nested projection to each record).
Fields the writer schema does not have are simply absent from the result.

Skipped values are still *checked*: union and enum indexes must be in range, booleans 0 or 1, lengths
non-negative and inside the buffer, strings valid UTF-8. The reader raises :class:`ProjectionError` (or
``IndexError``/``struct.error`` at the end of the buffer) on anything else. A caller that needs the exact
``fastavro`` diagnosis decodes the message again with ``fastavro`` when the projected reader fails.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Union

Projection = Mapping[str, Union[bool, "Projection"]]
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class ProjectionError(ValueError):
    """The bytes do not follow the writer schema (bad union index, negative length, ...)."""


class UnsupportedSchema(Exception):
    """The schema uses a feature the projected reader does not reproduce (e.g. a logical type to decode)."""


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """One zig-zag varint at ``pos``; (value, next position). IndexError past the end, a
    :class:`ProjectionError` (a ValueError) when longer than 10 bytes."""
    byte = buf[pos]
    pos += 1
    value = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ProjectionError("varint longer than 10 bytes")
    return (value >> 1) ^ -(value & 1), pos


def _fail(what: str, pos: int) -> ProjectionError:
    return ProjectionError(f"{what} at byte {pos}")


class _Compiler:
    """Generates the source of one reader function for a schema and a projection."""

    def __init__(self, spans: bool = False) -> None:
        self.spans = spans  # primitive values as (value, start, end) byte positions
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}  # full name -> named schema (record, enum, fixed)
        self.consts: dict[str, Any] = {}  # constants the generated code refers to
        self.counter = 0

    def var(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def const(self, value: Any) -> str:
        name = self.var("K")
        self.consts[name] = value
        return name

    # --- names ----------------------------------------------------------------------------------

    def resolve(self, schema: Any, namespace: str | None) -> tuple[Any, str | None]:
        """Return (schema with named references replaced by their definition, its namespace)."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema, namespace
            for candidate in (schema, f"{namespace}.{schema}" if namespace else schema):
                if candidate in self.names:
                    definition = self.names[candidate]
                    return definition, definition.get("_namespace")
            raise UnsupportedSchema(f"unknown named type {schema!r}")
        if isinstance(schema, dict) and schema.get("type") in ("record", "error", "enum", "fixed"):
            name = str(schema["name"])
            ns = schema.get("namespace", namespace)
            if "." in name:
                full, ns = name, name.rsplit(".", 1)[0]
            else:
                full = f"{ns}.{name}" if ns else name
            if full not in self.names:
                self.names[full] = {**schema, "_namespace": ns}
            return self.names[full], ns
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"] if "logicalType" not in schema else schema, namespace
        return schema, namespace

    # --- code -----------------------------------------------------------------------------------

    def long(self, ind: int, out: str | None) -> None:
        """Read a varint into ``out`` (or step over it)."""
        if out is None:
            self.emit(ind, "if b[p] < 128: p += 1")
            self.emit(ind, "else: _, p = read_long(b, p)")
        else:
            self.emit(ind, "x = b[p]")
            self.emit(ind, f"if x < 128: {out} = (x >> 1) ^ -(x & 1); p += 1")
            self.emit(ind, f"else: {out}, p = read_long(b, p)")

    def length(self, ind: int) -> None:
        """Read a byte length into ``n`` and the end of the bytes into ``q``."""
        self.long(ind, "n")
        self.emit(ind, "q = p + n")
        self.emit(ind, "if n < 0 or q > len(b): raise _fail('bad length', p)")

    def value(self, schema: Any, namespace: str | None, keep: Any, out: str | None, ind: int) -> None:
        """Emit code reading one value of ``schema`` at ``p`` into ``out`` (skip it when ``out`` is None).

        ``keep`` is True (the whole value) or a projection (for records, possibly inside arrays/maps/unions).
        """
        schema, namespace = self.resolve(schema, namespace)
        if isinstance(schema, dict) and "logicalType" in schema and out is not None:
            raise UnsupportedSchema(f"logical type {schema['logicalType']!r} in a decoded field")
        if isinstance(schema, list):
            self.union(schema, namespace, keep, out, ind)
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        if self.spans and out is not None and kind not in ("null", "record", "error", "array", "map"):
            start = self.var("s")
            self.emit(ind, f"{start} = p")
            self.spans = False
            self.value(schema, namespace, keep, out, ind)
            self.spans = True
            self.emit(ind, f"{out} = ({out}, {start}, p)")
            return
        if kind == "null":
            if out is not None:
                self.emit(ind, f"{out} = None")
        elif kind == "boolean":
            self.emit(ind, "x = b[p]; p += 1")
            self.emit(ind, "if x > 1: raise _fail('bad boolean', p)")
            if out is not None:
                self.emit(ind, f"{out} = x == 1")
        elif kind in ("int", "long", "enum"):
            if kind == "enum":
                out_index = self.var("i")
                self.long(ind, out_index)
                symbols = self.const(tuple(schema["symbols"]))
                self.emit(ind, f"if not 0 <= {out_index} < {len(schema['symbols'])}: raise _fail('bad enum', p)")
                if out is not None:
                    self.emit(ind, f"{out} = {symbols}[{out_index}]")
            else:
                self.long(ind, out)
        elif kind in ("float", "double"):
            size, unpack = (4, "_unpack_f") if kind == "float" else (8, "_unpack_d")
            if out is not None:
                self.emit(ind, f"{out} = {unpack}(b, p)[0]")
            self.emit(ind, f"p += {size}")
        elif kind in ("string", "bytes"):
            self.length(ind)
            if kind == "string":
                self.emit(ind, f"{out if out is not None else '_'} = b[p:q].decode()")  # skipped too: checks UTF-8
            elif out is not None:
                self.emit(ind, f"{out} = b[p:q]")
            self.emit(ind, "p = q")
        elif kind == "fixed":
            if out is not None:
                self.emit(ind, f"{out} = b[p:p + {int(schema['size'])}]")
            self.emit(ind, f"p += {int(schema['size'])}")
            self.emit(ind, "if p > len(b): raise _fail('fixed past the end', p)")
        elif kind in ("record", "error"):
            self.record(schema, namespace, keep, out, ind)
        elif kind in ("array", "map"):
            self.container(schema, namespace, keep, out, ind)
        else:
            raise UnsupportedSchema(f"type {kind!r}")

    def union(self, branches: list[Any], namespace: str | None, keep: Any, out: str | None, ind: int) -> None:
        # Writers encode a union index as a one-byte varint (index i -> byte 2i). Anything else (a negative
        # index, a needlessly long varint) is refused: the caller then asks fastavro for its verdict.
        if len(branches) > 63:
            raise UnsupportedSchema("a union of more than 63 branches")
        self.emit(ind, "x = b[p]")
        for i, branch in enumerate(branches):
            self.emit(ind, f"{'if' if i == 0 else 'elif'} x == {2 * i}:")
            body_start = len(self.lines)
            self.value(branch, namespace, keep, out, ind + 1)
            first = self.lines[body_start] if len(self.lines) > body_start else ""
            step = "    " * (ind + 1) + "p += "
            if first.startswith(step) and first[len(step) :].isdigit():
                self.lines[body_start] = f"{step}{int(first[len(step) :]) + 1}"
            else:
                self.lines.insert(body_start, f"{step}1")
        self.emit(ind, "else: raise _fail('bad union index', p)")

    def pattern(self, schema: Any, namespace: str | None) -> str | None:
        """A regular expression (latin-1 text) that steps over one value of ``schema``, if one can."""
        schema, namespace = self.resolve(schema, namespace)
        if isinstance(schema, list):
            if len(schema) > 63:
                return None
            parts = [self.pattern(branch, namespace) for branch in schema]
            if any(part is None for part in parts):
                return None
            return "(?:" + "|".join(f"\\x{2 * i:02x}{part}" for i, part in enumerate(parts)) + ")"
        kind = schema if isinstance(schema, str) else schema.get("type")
        return {
            "null": "",
            "boolean": "[\\x00\\x01]",
            "int": "[\\x80-\\xff]{0,4}[\\x00-\\x7f]",
            "long": "[\\x80-\\xff]{0,9}[\\x00-\\x7f]",
            "float": ".{4}",
            "double": ".{8}",
            "fixed": f".{{{int(schema['size'])}}}" if kind == "fixed" else None,
        }.get(kind)

    def skip_run(self, patterns: list[str], ind: int) -> None:
        """Emit one regular-expression match stepping over consecutive skipped values."""
        if not patterns:
            return
        regex = self.const(re.compile("".join(patterns).encode("latin-1"), re.DOTALL).match)
        self.emit(ind, f"m = {regex}(b, p)")
        self.emit(ind, "if m is None: raise _fail('bad value', p)")
        self.emit(ind, "p = m.end()")
        patterns.clear()

    def record(self, schema: dict[str, Any], namespace: str | None, keep: Any, out: str | None, ind: int) -> None:
        kept: list[tuple[str, str]] = []
        run: list[str] = []
        for field in schema["fields"]:
            name = field["name"]
            sub = keep if keep is True else (keep.get(name) if out is not None else None)
            if not sub:
                pattern = self.pattern(field["type"], namespace)
                if pattern is not None:
                    run.append(pattern)
                    continue
            self.skip_run(run, ind)
            target = self.var() if sub else None
            self.value(field["type"], namespace, sub if sub else None, target, ind)
            if target is not None:
                kept.append((name, target))
        self.skip_run(run, ind)
        if out is not None:
            self.emit(ind, f"{out} = {{{', '.join(f'{name!r}: {var}' for name, var in kept)}}}")

    def container(self, schema: dict[str, Any], namespace: str | None, keep: Any, out: str | None, ind: int) -> None:
        is_map = schema["type"] == "map"
        items = schema["values"] if is_map else schema["items"]
        count, item, key = self.var("c"), self.var(), self.var("k")
        if out is not None:
            self.emit(ind, f"{out} = {{}}" if is_map else f"{out} = []")
        self.emit(ind, "while True:")
        self.long(ind + 1, count)
        self.emit(ind + 1, f"if {count} == 0: break")
        self.emit(ind + 1, f"if {count} < 0:")
        self.emit(ind + 2, f"{count} = -{count}")
        self.long(ind + 2, None)  # the block's byte size
        self.emit(ind + 1, f"for _ in range({count}):")
        before = len(self.lines)
        if is_map:
            self.value("string", namespace, True, key if out is not None else None, ind + 2)
        self.value(items, namespace, keep, item if out is not None else None, ind + 2)
        if out is not None:
            self.emit(ind + 2, f"{out}[{key}] = {item}" if is_map else f"{out}.append({item})")
        if len(self.lines) == before:
            self.emit(ind + 2, "pass")


def compile_projection(schema: Mapping[str, Any], projection: Projection | bool, spans: bool = False) -> Reader:
    """Return ``read(buf, pos) -> (projected record, end position)`` for records of writer ``schema``.

    ``projection`` True decodes every field (the record ``fastavro`` would return). With ``spans``, every
    decoded value that is not a record, array, map or null is returned as ``(value, start, end)``: where its
    encoding lies in ``buf`` (after the union index), for callers that rewrite a few values in place.

    ``schema`` is the writer schema in JSON form (as found in a container header). Raises
    :class:`UnsupportedSchema` when the projected reader cannot reproduce ``fastavro``'s output.
    """
    if schema.get("type") not in ("record", "error"):
        raise UnsupportedSchema("the top-level schema is not a record")
    compiler = _Compiler(spans)
    compiler.emit(1, "p = pos")
    compiler.value(dict(schema), None, projection, "out", 1)
    compiler.emit(1, "return out, p")
    source = "def read(b, pos):\n" + "\n".join(compiler.lines) + "\n"
    namespace: dict[str, Any] = {
        "read_long": read_long,
        "_fail": _fail,
        "_unpack_f": struct.Struct("<f").unpack_from,
        "_unpack_d": struct.Struct("<d").unpack_from,
        **compiler.consts,
    }
    exec(compile(source, "<avro projection>", "exec"), namespace)  # noqa: S102 - source generated from the schema
    reader: Reader = namespace["read"]
    return reader


class DeferredRecord(Mapping[str, Any]):
    """A read-only record decoded in full only when first looked into (``decode`` is called once).

    What :meth:`Survey.read` returns next to a canonical row decoded from a projection: ingestion keeps only
    the row and the raw message, so most records are never built; any other caller sees every field.
    """

    __slots__ = ("_decode", "_record")

    def __init__(self, decode: Callable[[], dict[str, Any]]) -> None:
        self._decode: Callable[[], dict[str, Any]] | None = decode
        self._record: dict[str, Any] | None = None

    def materialize(self) -> dict[str, Any]:
        """Return the full record as a plain ``dict`` (decoding it on first use)."""
        if self._record is None:
            assert self._decode is not None
            self._record = self._decode()
            self._decode = None
        return self._record

    @property
    def is_decoded(self) -> bool:
        """Whether the full record has been decoded yet."""
        return self._record is not None

    def __getitem__(self, key: str) -> Any:
        return self.materialize()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.materialize())

    def __len__(self) -> int:
        return len(self.materialize())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeferredRecord):
            other = other.materialize()
        return self.materialize() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DeferredRecord({self.materialize()!r})" if self.is_decoded else "DeferredRecord(<not decoded yet>)"

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self.materialize(), memo)
