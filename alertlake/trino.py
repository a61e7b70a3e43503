"""Trino access: DB-API connections and registration of the lake's Delta tables in catalog ``lake``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import trino
from trino.auth import BasicAuthentication

from alertlake.lake import LAYERS, split_name, table_uri
from alertlake.settings import Settings

log = logging.getLogger("alertlake.trino")


class _PinnedVerifySession(requests.Session):
    """A requests session whose ``verify`` wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

    requests lets those variables replace a session's ``verify`` for every request, which would drop the
    local Trino certificate whenever a system CA bundle is configured in the environment.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["verify"] = self.verify
        return merged


def connect(settings: Settings, user: str | None = None, password: str | None = None, schema: str | None = None) -> Any:
    """A ``trino.dbapi`` connection to the catalog ``lake`` as ``user`` (default: the settings' user).

    Over HTTPS (the default ``trino_url``) the client authenticates with ``password``, by default the
    configured or locally generated password of ``user`` (``Settings.trino_secret``), and trusts the
    certificate in ``settings.trino_ca_path`` when that file exists (else the system's CAs).
    """
    from urllib.parse import urlparse

    url = urlparse(settings.trino_url)
    who = user or settings.trino_user
    secure = url.scheme == "https"
    # Local passwords are only sent over HTTPS; an explicit one over HTTP makes the client refuse clearly.
    secret = password or (settings.trino_secret(who) if secure else None)
    session: requests.Session | None = None
    if secure and settings.trino_ca_path.exists():
        session = _PinnedVerifySession()
        session.verify = str(settings.trino_ca_path)
    return trino.dbapi.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or (443 if secure else 80),
        http_scheme=url.scheme or "http",
        user=who,
        auth=BasicAuthentication(who, secret) if secret else None,
        http_session=session,
        catalog=settings.trino_catalog,
        schema=schema,
    )


def query(settings: Settings, sql: str, params: Any = None, **connect_args: Any) -> list[tuple[Any, ...]]:
    """Run one statement and return all its rows."""
    conn = connect(settings, **connect_args)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _trino_location(settings: Settings, uri: str) -> str:
    # Trino's native local file system is mounted as local:// at / (see the catalog file in infra/stack.py).
    if uri.startswith("file://"):
        return "local://" + uri.removeprefix("file://")
    return uri.replace("s3a://", "s3://", 1)


def register_table(settings: Settings, name: str) -> bool:
    """Make the Delta table ``layer.table`` queryable as ``lake.layer.table``; False if it already was."""
    layer, table = split_name(name)
    catalog = settings.trino_catalog
    query(settings, f"CREATE SCHEMA IF NOT EXISTS {catalog}.{layer}")
    existing = {row[0] for row in query(settings, f"SHOW TABLES FROM {catalog}.{layer}")}
    location = _trino_location(settings, table_uri(settings, name))
    if table in existing:
        if registered_location(settings, name) == location:
            return False
        # Registered elsewhere (an old lake root) or its files are gone: point it at this lake.
        query(settings, f"CALL {catalog}.system.unregister_table(schema_name => '{layer}', table_name => '{table}')")
    # CALL takes no prepared-statement parameters; layer and table were validated by split_name.
    query(
        settings,
        f"CALL {catalog}.system.register_table(schema_name => '{layer}', table_name => '{table}', "
        f"table_location => {sql_string(location)})",
    )
    return True


def register_tables(settings: Settings, names: Sequence[str]) -> None:
    """Expose the lake tables ``names`` in Trino, as the jobs do when they create them. Never raises: a Trino
    that is down or refuses only delays serving (the platform DAG registers every table later). Nothing is
    asked when ``settings.trino_register`` is off (a throw-away lake: tests, benchmarks, ``--no-trino``)."""
    from alertlake.health import trino_ok

    if not settings.trino_register:
        return
    if not settings.lake_is_local:
        log.info("lake at %s: its tables are registered in Trino by the platform DAG", settings.lake_uri)
        return
    try:
        up = trino_ok(settings)
    except Exception as exc:  # noqa: BLE001 - serving lag must not stop a job
        up, reason = False, f" ({exc})"
    else:
        reason = ""
    if not up:
        log.warning(
            "Trino not reachable at %s%s: tables will be registered by the platform DAG", settings.trino_url, reason
        )
        return
    for name in names:
        try:
            if register_table(settings, name):
                log.info("registered %s.%s in Trino", settings.trino_catalog, name)
        except Exception as exc:  # noqa: BLE001 - serving lag must not stop a job
            log.warning("could not register %s in Trino (the platform DAG will): %s", name, exc)


def registered_location(settings: Settings, name: str) -> str | None:
    """Where Trino reads ``layer.table`` from (``None`` when Trino cannot read the table's metadata)."""
    layer, table = split_name(name)
    try:
        ddl = str(query(settings, f"SHOW CREATE TABLE {settings.trino_catalog}.{layer}.{table}")[0][0])
    except Exception:  # noqa: BLE001 - a table whose files are gone cannot be described: treat as unknown
        return None
    for line in ddl.splitlines():
        if line.strip().startswith("location = "):
            return line.split("=", 1)[1].strip().strip(",").strip("'")
    return None


def local_tables(settings: Settings) -> list[str]:
    """Every Delta table (``layer.table``) found under a local lake root."""
    root = settings.lake_path
    found = []
    for layer in LAYERS:
        for log_dir in sorted((root / layer).glob("*/_delta_log")):
            if any(log_dir.glob("*.json")):
                found.append(f"{layer}.{Path(log_dir).parent.name}")
    return found


def sync_tables(settings: Settings) -> list[str]:
    """Register every lake table Trino does not know yet; returns the newly registered names."""
    return [name for name in local_tables(settings) if register_table(settings, name)]
