"""``trino_register`` off: no job asks Trino anything about a throw-away lake (pure logic, a local HTTP stub)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alertlake.settings import Settings


@pytest.fixture
def trino_stub() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering like a started Trino coordinator on ``/v1/info``; records every request path."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"starting": false}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()


def test_registration_off_never_contacts_trino(trino_stub: tuple[str, list[str]], tmp_path: Path) -> None:
    from alertlake import quality
    from alertlake.trino import register_tables

    url, seen = trino_stub
    off = Settings(lake_root=str(tmp_path), trino_http_url=url, trino_url=url, trino_register=False)
    register_tables(off, ["bronze.ztf_alerts"])
    quality._register_in_trino(off, quality.BATCHES)
    assert seen == []

    # The same stub is asked when registration is on (so the check above is not vacuous); the registration
    # itself then fails against the stub, which the jobs log and carry on from.
    on = off.model_copy(update={"trino_register": True})
    register_tables(on, ["bronze.ztf_alerts"])
    assert "/v1/info" in seen


def test_no_trino_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's ``--no-trino`` wins over ``ALERTLAKE_TRINO_REGISTER=true``; without it the environment decides."""
    from alertlake.settings import get_settings, job_settings

    try:
        monkeypatch.setenv("ALERTLAKE_TRINO_REGISTER", "true")
        get_settings.cache_clear()
        assert job_settings(no_trino=False).trino_register is True
        assert job_settings(no_trino=True).trino_register is False
        assert get_settings().trino_register is True  # the process-wide settings are left as they were
        monkeypatch.setenv("ALERTLAKE_TRINO_REGISTER", "false")
        get_settings.cache_clear()
        assert job_settings(no_trino=False).trino_register is False
    finally:
        get_settings.cache_clear()
