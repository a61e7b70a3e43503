"""Browser test of the Airflow UI: headless Chromium logs in, sees every DAG, and a screenshot is kept.

Chromium is Debian's ``chromium`` package, driven over the Chrome DevTools Protocol with the ``websockets``
client that Airflow already depends on: no WebDriver, no browser download. The REST API (with a token from
``POST /auth/token``) checks the same facts without the UI: no import errors, every file of ``dags/`` has its
DAGs listed, and the latest finished run of every DAG succeeded. The screenshot goes to
``test-artifacts/airflow_ui.png`` (also on failure, to see what the browser saw).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from alertlake.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "test-artifacts"
DAGS_DIR = REPO_ROOT / "dags"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1000",
    "--remote-debugging-port=0",
]


class Browser:
    """A headless Chromium page driven over the DevTools protocol (only the few commands the test needs)."""

    def __init__(self, binary: str) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="alertlake-chromium-")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = self._devtools_port()
        pages = [
            t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"
        ]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _devtools_port(self, timeout: float = 30.0) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            seen.append(line)
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                return int(match.group(1))
        raise RuntimeError("Chromium did not start its DevTools endpoint:\n" + "".join(seen[-20:]))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result (events received meanwhile are skipped)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        """Navigate to ``url`` (the caller waits for what it needs to see)."""
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value, or a TimeoutError showing the page text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        raise TimeoutError(f"waited {timeout:.0f} s for {expression!r}; page {self.url()} shows:\n{text[:2000]}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` as keyboard input (so React sees real input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def url(self) -> str:
        """The page's current address."""
        return str(self.evaluate("location.href"))

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the viewport."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        """Stop Chromium and remove its throw-away profile."""
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def airflow_password(services: Settings) -> str:
    """The admin password generated at set-up (``airflow_admin`` in the state folder's secrets file)."""
    path = services.state_dir / "secrets.json"
    try:
        return str(json.loads(path.read_text())["airflow_admin"])
    except (OSError, KeyError, ValueError) as exc:
        pytest.fail(f"no Airflow admin password in {path} ({exc}); run `make services-up`")


@pytest.fixture(scope="module")
def api(services: Settings, airflow_password: str) -> requests.Session:
    """A session on Airflow's REST API with a bearer token obtained from ``POST /auth/token``."""
    resp = requests.post(
        f"{services.airflow_url}/auth/token",
        json={"username": services.airflow_user, "password": airflow_password},
        timeout=30,
    )
    assert resp.status_code in (200, 201), f"login to {services.airflow_url} failed: {resp.status_code} {resp.text}"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
    return session


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian package ``chromium``)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (done by `make install`)")
    page = Browser(binary)
    yield page
    page.close()


def dag_files() -> set[str]:
    """Names of the DAG files in ``dags/``."""
    return {p.name for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_")}


def listed_dags(services: Settings, api: requests.Session, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Every DAG the API lists, once each file of ``dags/`` has been parsed (the processor rescans every 30 s)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = api.get(f"{services.airflow_url}/api/v2/dags", params={"limit": 1000}, timeout=30)
        resp.raise_for_status()
        dags = list(resp.json()["dags"])
        files = {Path(d["fileloc"]).name for d in dags}
        if dag_files() <= files or time.monotonic() > deadline:
            return dags
        time.sleep(5)


def test_no_import_errors_and_every_dag_file_listed(services: Settings, api: requests.Session) -> None:
    """The REST API shows zero import errors and at least one DAG from every file of ``dags/``."""
    dags = listed_dags(services, api)
    resp = api.get(f"{services.airflow_url}/api/v2/importErrors", timeout=30)
    resp.raise_for_status()
    errors = resp.json()
    assert errors["total_entries"] == 0, "import errors:\n" + "\n".join(
        f"{e['filename']}: {e['stack_trace'][-500:]}" for e in errors["import_errors"]
    )
    files = {Path(d["fileloc"]).name for d in dags}
    assert dag_files() <= files, f"DAG files with no DAG listed: {sorted(dag_files() - files)}"
    assert not [d["dag_id"] for d in dags if d.get("has_import_errors")]


def test_latest_finished_runs_succeeded(services: Settings, api: requests.Session) -> None:
    """For every DAG that has run (the demo runs them), its latest finished run succeeded."""
    failed = []
    latest_first: dict[str, str | int] = {"order_by": "-run_after", "limit": 20}
    for dag in listed_dags(services, api):
        resp = api.get(
            f"{services.airflow_url}/api/v2/dags/{dag['dag_id']}/dagRuns",
            params=latest_first,
            timeout=30,
        )
        resp.raise_for_status()
        finished = [r for r in resp.json()["dag_runs"] if r["state"] in ("success", "failed")]
        if finished and finished[0]["state"] != "success":
            failed.append(f"{dag['dag_id']} run {finished[0]['dag_run_id']}")
    assert not failed, f"latest finished runs that failed: {failed}"


def test_ui_login_lists_every_dag(
    services: Settings, api: requests.Session, browser: Browser, airflow_password: str
) -> None:
    """Log in through the UI's form, open the DAG list, see every DAG id; screenshot as the test artifact."""
    dag_ids = sorted(d["dag_id"] for d in listed_dags(services, api))
    shot = ARTIFACTS / "airflow_ui.png"
    try:
        browser.goto(f"{services.airflow_url}/auth/login/")
        browser.wait_for("document.querySelector('input[name=username]') !== null")
        browser.type_into("input[name=username]", services.airflow_user)
        browser.type_into("input[name=password]", airflow_password)
        browser.wait_for("!document.querySelector('button[type=submit]').disabled", timeout=10)
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        browser.wait_for("!location.pathname.startsWith('/auth/login')", timeout=30)

        browser.goto(f"{services.airflow_url}/dags")
        shown = json.dumps(dag_ids)
        browser.wait_for(f"{shown}.every(id => document.body.innerText.includes(id))", timeout=60)
        text = browser.evaluate("document.body.innerText")
        assert "Sign in" not in text
        browser.screenshot(shot)
    except Exception:
        browser.screenshot(ARTIFACTS / "airflow_ui_failure.png")
        raise
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
