"""Cheap reachability checks of the services AlertLake depends on (used by infra, DAGs and tests)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from alertlake.settings import Settings


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0, check: Callable[[bytes], bool] = lambda _: True) -> bool:
    """True when ``url`` answers 200 and ``check`` accepts the body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - configured service URLs only
            return bool(resp.status == 200 and check(resp.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def kafka_ok(settings: Settings, timeout: float = 2.0) -> bool:
    """True when the Kafka cluster answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    if settings.kafka_security_protocol == "PLAINTEXT" and not port_open(settings.kafka_host, settings.kafka_port):
        return False  # saves librdkafka from logging a refused connection every few milliseconds
    try:
        conf = {**settings.kafka_config(), "socket.timeout.ms": int(timeout * 1000), "log_level": 0}
        AdminClient(conf).list_topics(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def mlflow_ok(settings: Settings) -> bool:
    """True when the MLflow tracking server answers its health endpoint."""
    return http_ok(f"{settings.mlflow_tracking_uri}/health")


def trino_ok(settings: Settings) -> bool:
    """True when the Trino coordinator has finished starting.

    Asks ``/v1/info`` (no authentication needed) on the plain-HTTP port kept for health and internal traffic;
    clients use ``trino_url`` (HTTPS with passwords).
    """
    return http_ok(f"{settings.trino_http_url}/v1/info", check=lambda body: json.loads(body).get("starting") is False)


def airflow_ok(settings: Settings) -> bool:
    """True when every Airflow component (database, scheduler, triggerer, DAG processor) reports healthy."""

    def all_healthy(body: bytes) -> bool:
        health = json.loads(body)
        return all(part.get("status") == "healthy" for part in health.values() if isinstance(part, dict))

    return http_ok(f"{settings.airflow_url}/api/v2/monitor/health", check=all_healthy)


CHECKS: dict[str, Callable[[Settings], bool]] = {
    "kafka": kafka_ok,
    "mlflow": mlflow_ok,
    "trino": trino_ok,
    "airflow": airflow_ok,
}
"""Service name -> health check, in start order."""
