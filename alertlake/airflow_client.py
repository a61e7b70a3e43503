"""A small client of Airflow's REST API (v2): trigger a DAG run, wait for it, read its task states."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from alertlake.settings import Settings


class AirflowError(RuntimeError):
    """Airflow answered with an error, or a run did not succeed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status Airflow answered, when it did


def transient(status: int, text: str) -> bool:
    """Whether an API failure is worth retrying: the API server restarting (502-504), or its metadata database
    busy. The local stack keeps Airflow's metadata in SQLite, where a write waits at most 5 s for another
    writer's lock; under load (scheduler, DAG processor and running tasks all writing) a request then fails
    with 500 "Database error" (seen once on a ``make demo`` triggering a DAG run)."""
    return status in (502, 503, 504) or (status == 500 and "Database error" in text)


@dataclass
class AirflowClient:
    """Authenticated access to the Airflow API at ``settings.airflow_url``."""

    settings: Settings
    password: str
    _token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            resp = requests.post(
                f"{self.settings.airflow_url}/auth/token",
                json={"username": self.settings.airflow_user, "password": self.password},
                timeout=30,
            )
            if resp.status_code >= 300:
                raise AirflowError(
                    f"Airflow login as {self.settings.airflow_user} failed: {resp.status_code} {resp.text}"
                )
            self._token = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def call(self, method: str, path: str, retries: int = 4, **kwargs: Any) -> Any:
        """One API call, retried (``retries`` times, waiting 2, 4, 6... s) while the failure is :func:`transient`;
        raises :class:`AirflowError` with Airflow's message on failure."""
        for attempt in range(retries + 1):
            resp = requests.request(
                method, f"{self.settings.airflow_url}/api/v2{path}", headers=self._headers(), timeout=60, **kwargs
            )
            if resp.status_code < 300:
                return resp.json() if resp.content else None
            if attempt == retries or not transient(resp.status_code, resp.text):
                raise AirflowError(f"{method} {path}: {resp.status_code} {resp.text[:500]}", resp.status_code)
            time.sleep(2 * (attempt + 1))
        return None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the DAG processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", f"/dags/{dag_id}")
                return
            except AirflowError:
                if time.monotonic() > deadline:
                    raise AirflowError(f"DAG {dag_id} did not appear in Airflow within {timeout:.0f}s") from None
                time.sleep(3)

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG so its runs (manual or asset-triggered) execute."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now; returns its run id.

        The run id is chosen here, so a retried request cannot start a second run: if an attempt that failed had
        in fact created it, the retry is refused as a conflict (409) and the run is there."""
        run_id = f"manual__{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S}_{uuid.uuid4().hex[:8]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            run = self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)
        except AirflowError as exc:
            if exc.status != 409:
                raise
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return str(run["dag_run_id"])

    def latest_run(self, dag_id: str) -> dict[str, Any] | None:
        """The newest run of ``dag_id`` (or None)."""
        runs = self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 1})
        return runs["dag_runs"][0] if runs["dag_runs"] else None

    def wait(self, dag_id: str, run_id: str, timeout: float = 1800) -> dict[str, Any]:
        """Wait for a run to finish; raises with the failed tasks if it did not succeed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
            time.sleep(5)
        else:
            raise AirflowError(f"{dag_id} run {run_id} still running after {timeout:.0f}s")
        if run["state"] != "success":
            tasks = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            failed = [t["task_id"] for t in tasks if t["state"] not in ("success", "skipped")]
            raise AirflowError(f"{dag_id} run {run_id} {run['state']}; tasks not successful: {failed}")
        return dict(run)
