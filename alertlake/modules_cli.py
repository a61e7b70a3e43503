"""Plain functions behind ``alertlake modules list | register | promote | describe`` (wired into the typer CLI).

Each returns data (for ``--json``) and never prints; the CLI renders it with rich.
"""

from __future__ import annotations

from typing import Any

from alertlake import modules as registry


def list_modules() -> list[dict[str, Any]]:
    """Every module found under ``modules/``: name, note, inputs, outputs, dependencies, params, in run order."""
    classes = registry.execution_order(list(registry.all_modules().values()))
    return [
        {
            "name": cls.name,
            "version_note": cls.version_note,
            "depends_on": cls.depends_on(),
            "inputs": list(cls.inputs),
            "outputs": dict(cls.outputs),
            "params": cls.Params().model_dump(mode="json"),
        }
        for cls in classes
    ]


def register_module(name: str, alias: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register module ``name`` (default params unless ``params``) as a new MLflow version, optionally aliased."""
    version = registry.register(registry.get(name)(params), alias=alias)
    return {
        "name": version.name,
        "version": version.version,
        "run_id": version.run_id,
        "uri": version.uri,
        "alias": alias,
    }


def promote_module(name: str, version: int, alias: str = "champion") -> dict[str, Any]:
    """Point ``alias`` at ``version`` (a manual promotion; the promotion DAG passes its own check to
    :func:`alertlake.modules.promote`)."""
    moved = registry.promote(name, version, alias=alias)
    return {"name": name, "version": version, "alias": alias, "promoted": moved}


def describe_module(name: str) -> dict[str, Any]:
    """What MLflow knows of module ``name``: aliases and every version with its params and metrics."""
    return registry.describe(name)
