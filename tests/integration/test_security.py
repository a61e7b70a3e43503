"""Access control on the real services: Trino users and rules, Kafka SASL/SCRAM stream users and ACLs.

Everything comes from the settings and the passwords generated at set-up (``<state_dir>/secrets.json``),
so the tests run against whichever stack the ``ALERTLAKE_*`` environment points at.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer
from trino.exceptions import TrinoQueryError, TrinoUserError

from alertlake import kafka, trino
from alertlake.health import kafka_ok, trino_ok
from alertlake.settings import Settings

pytestmark = pytest.mark.integration

FINK_PYTHON = Path.home() / ".cache" / "alertlake" / "fink-client-venv" / "bin" / "python"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "alert",
    "namespace": "alertlake.test",
    "fields": [{"name": "alert_id", "type": "string"}, {"name": "mag", "type": "double"}],
}


@pytest.fixture(scope="module")
def services(settings: Settings) -> Settings:
    """Only Kafka and Trino are needed here; fail clearly when either is down."""
    down = [name for name, ok in (("kafka", kafka_ok), ("trino", trino_ok)) if not ok(settings)]
    if down:
        pytest.fail(f"services down: {', '.join(down)}; start them with `make services-up`")
    return settings


# --------------------------------------------------------------------------------------------- Trino
@pytest.fixture(scope="module")
def trino_tables(services: Settings) -> Iterator[dict[str, str]]:
    """Small tables made by the engineer in silver, gold and bronze (dropped afterwards)."""
    tag = uuid.uuid4().hex[:8]
    catalog = services.trino_catalog
    names = {
        "silver": f"{catalog}.silver.sectest_{tag}",
        "gold": f"{catalog}.gold.sectest_{tag}",
        "bronze": f"{catalog}.bronze.sectest_{tag}",
    }
    for schema in ("silver", "gold", "bronze"):
        trino.query(services, f"CREATE SCHEMA IF NOT EXISTS {catalog}.{schema}")
    trino.query(services, f"CREATE TABLE {names['silver']} AS SELECT 'a1' AS alert_id, 18.5 AS mag")
    trino.query(services, f"CREATE TABLE {names['gold']} AS SELECT 'o1' AS object_id, 'SN' AS class")
    trino.query(services, f"CREATE TABLE {names['bronze']} AS SELECT 'a1' AS alert_id, X'00' AS payload")
    yield names
    for name in names.values():
        trino.query(services, f"DROP TABLE IF EXISTS {name}")


def denied(settings: Settings, sql: str, user: str = "scientist") -> str:
    """Run ``sql`` as ``user`` expecting Trino's access denial; returns its message."""
    with pytest.raises(TrinoUserError) as info:
        trino.query(settings, sql, user=user)
    assert info.value.error_name == "PERMISSION_DENIED", info.value
    assert info.value.message.startswith("Access Denied: "), info.value.message
    return str(info.value.message)


def test_trino_clients_use_https_with_passwords(services: Settings) -> None:
    """Default URL is HTTPS, the local password of the configured user works, wrong ones are refused."""
    assert services.trino_url.startswith("https://")
    assert services.trino_ca_path.exists(), "the set-up should have exported Trino's certificate"
    assert trino.query(services, "SELECT current_user") == [(services.trino_user,)]
    assert trino.query(services, "SELECT current_user", user="scientist") == [("scientist",)]
    with pytest.raises(Exception, match=r"401|Unauthorized|[Aa]uthenticat"):
        trino.query(services, "SELECT 1", user="scientist", password="not-the-password")
    # Plain HTTP stays for health checks only: statements there are refused without authentication.
    resp = requests.post(
        f"{services.trino_http_url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "engineer"}, timeout=10
    )
    assert resp.status_code in (401, 403), resp.text[:300]


def test_scientist_reads_silver_and_gold(services: Settings, trino_tables: dict[str, str]) -> None:
    assert trino.query(services, f"SELECT alert_id, mag FROM {trino_tables['silver']}", user="scientist") == [
        ("a1", 18.5)
    ]
    assert trino.query(services, f"SELECT class FROM {trino_tables['gold']}", user="scientist") == [("SN",)]
    schemas = {row[0] for row in trino.query(services, f"SHOW SCHEMAS FROM {services.trino_catalog}", user="scientist")}
    assert {"silver", "gold"} <= schemas


def test_scientist_cannot_write(services: Settings, trino_tables: dict[str, str]) -> None:
    silver, catalog = trino_tables["silver"], services.trino_catalog
    assert "Cannot insert into table" in denied(services, f"INSERT INTO {silver} VALUES ('a2', 19.0)")
    assert "Cannot delete from table" in denied(services, f"DELETE FROM {silver}")
    assert "Cannot create table" in denied(services, f"CREATE TABLE {silver}_copy AS SELECT * FROM {silver}")
    assert "Cannot drop table" in denied(services, f"DROP TABLE {silver}")
    assert "Cannot create schema" in denied(services, f"CREATE SCHEMA {catalog}.scientist_scratch")
    message = denied(
        services,
        f"CALL {catalog}.system.register_table(schema_name => 'silver', table_name => 'sneaky', "
        "table_location => 'local:///tmp/sneaky')",
    )
    assert "Cannot execute procedure" in message


def test_scientist_cannot_read_raw_quarantine_bytes(services: Settings) -> None:
    """``bronze.quarantine``: reason and coordinates readable, the ``raw`` bytes column denied."""
    from deltalake import write_deltalake

    from alertlake.lake import delta_location, table_exists
    from jobs.ingest import QUARANTINE, QUARANTINE_SCHEMA

    catalog = services.trino_catalog
    quarantine = f"{catalog}.{QUARANTINE}"
    if not table_exists(services, QUARANTINE):
        # A fresh lake, no ingest job run yet: create the table empty with the ingest job's schema (the job
        # appends to it as to its own), then register it in Trino as the job or the platform DAG would.
        write_deltalake(delta_location(services, QUARANTINE), QUARANTINE_SCHEMA.empty_table(), mode="append")
    trino.register_tables(services, [QUARANTINE])
    assert "Cannot select from" in denied(services, f"SELECT raw FROM {quarantine}")
    assert "Cannot select from" in denied(services, f"SELECT * FROM {quarantine}")
    assert trino.query(services, f"SELECT count(*) FROM {quarantine}", user="scientist")[0][0] >= 0
    columns = [row[0] for row in trino.query(services, f"DESCRIBE {quarantine}", user="scientist")]
    assert "raw" not in columns  # the denied column is hidden from the scientist's view of the table
    assert trino.query(services, f"SELECT count(raw) FROM {quarantine}")[0][0] >= 0  # the engineer reads it


def test_scientist_cannot_read_other_bronze_tables(services: Settings, trino_tables: dict[str, str]) -> None:
    """Bronze holds the raw survey payloads: engineer-only (silver has the same alerts, validated)."""
    assert "Cannot select from table" in denied(services, f"SELECT alert_id FROM {trino_tables['bronze']}")
    assert trino.query(services, f"SELECT alert_id FROM {trino_tables['bronze']}") == [("a1",)]


def allowed(settings: Settings, sql: str, user: str = "engineer") -> None:
    """Run ``sql`` as ``user``: it may fail for reasons of the connector, never for lack of privileges."""
    try:
        trino.query(settings, sql, user=user)
    except TrinoQueryError as exc:
        assert exc.error_name != "PERMISSION_DENIED", exc.message


def test_engineer_can_do_everything(services: Settings, trino_tables: dict[str, str]) -> None:
    silver, catalog = trino_tables["silver"], services.trino_catalog
    copy = f"{silver}_copy"
    trino.query(services, f"CREATE TABLE {copy} AS SELECT * FROM {silver}", user="engineer")
    try:
        assert trino.query(services, f"SELECT alert_id FROM {copy}", user="engineer") == [("a1",)]
        # Changes to existing tables on a local lake may be refused by the Delta connector, but never denied.
        allowed(services, f"COMMENT ON TABLE {copy} IS 'security test'")
        allowed(services, f"INSERT INTO {copy} VALUES ('a2', 19.0)")
        allowed(services, f"DELETE FROM {copy} WHERE alert_id = 'a2'")
        allowed(services, f"CREATE SCHEMA IF NOT EXISTS {catalog}.views")
        allowed(
            services,
            f"CALL {catalog}.system.register_table(schema_name => 'silver', table_name => 'sectest_absent', "
            "table_location => 'local:///nonexistent/alertlake-sectest')",
        )
    finally:
        trino.query(services, f"DROP TABLE {copy}", user="engineer")


# --------------------------------------------------------------------------------------------- Kafka
def stream_user(settings: Settings) -> tuple[str, str, str]:
    """(user, one granted topic prefix, one granted group prefix) of the first configured stream user."""
    user = (
        "scientist"
        if "scientist" in settings.kafka_stream_topic_grants
        else next(iter(settings.kafka_stream_topic_grants))
    )
    return user, settings.kafka_stream_topic_grants[user][0], settings.kafka_stream_group_grants[user][0]


@pytest.fixture(scope="module")
def granted_topic(services: Settings) -> str:
    """A fresh filter topic (``<prefix>ztf.sectest_<id>``) holding three Fink-style messages."""
    _, prefix, _ = stream_user(services)
    topic = f"{prefix}ztf.sectest_{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(services, topic, partitions=1)
    producer = kafka.producer(services)
    key = json.dumps(SCHEMA).encode()
    for i in range(3):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMA), {"alert_id": f"a{i}", "mag": 18.0 + i})
        producer.produce(topic, value=buf.getvalue(), key=key)
    assert producer.flush(30) == 0
    return topic


def scientist_consumer(settings: Settings, group: str, password: str | None = None, **extra: Any) -> Consumer:
    user, _, _ = stream_user(settings)
    conf: dict[str, Any] = {
        **settings.kafka_stream_config(user, password),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **extra,
    }
    return Consumer(conf)


def first_error(consumer: Consumer, timeout: float = 30.0) -> KafkaError:
    """The first error a consumer's poll reports (fails if it reads messages or nothing happens instead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        error = msg.error()
        assert error is not None, f"read a message from {msg.topic()} that should have been denied"
        return error
    pytest.fail(f"no error within {timeout:.0f}s")


def test_scientist_reads_granted_filter_topic(services: Settings, granted_topic: str) -> None:
    _, _, group_prefix = stream_user(services)
    consumer = scientist_consumer(services, f"{group_prefix}-sectest-{uuid.uuid4().hex[:8]}")
    try:
        consumer.subscribe([granted_topic])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(values) < 3 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value() or b"")
            consumer.commit(message=msg, asynchronous=False)  # the group prefix is granted: commits work too
        assert len(values) == 3
        decoded = [fastavro.schemaless_reader(io.BytesIO(v), fastavro.parse_schema(SCHEMA)) for v in values]
        assert sorted(d["alert_id"] for d in decoded) == ["a0", "a1", "a2"]  # type: ignore[index,call-overload]
    finally:
        consumer.close()


def test_scientist_denied_survey_topic(services: Settings) -> None:
    """A survey topic (e.g. ``ztf``) is not granted: a clear TOPIC_AUTHORIZATION_FAILED error."""
    _, _, group_prefix = stream_user(services)
    survey = kafka.survey_topic(services, "ztf")
    kafka.ensure_topic(services, survey)
    consumer = scientist_consumer(services, f"{group_prefix}-sectest-{uuid.uuid4().hex[:8]}")
    try:
        consumer.subscribe([survey])
        error = first_error(consumer)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
        assert "authorization failed" in error.str().lower()
    finally:
        consumer.close()


def test_scientist_cannot_write_to_filter_topic(services: Settings, granted_topic: str) -> None:
    user, _, _ = stream_user(services)
    errors: list[KafkaError | None] = []
    producer = Producer(
        {**services.kafka_stream_config(user), "message.timeout.ms": 15000, "enable.idempotence": False}
    )
    producer.produce(granted_topic, b"forged", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    assert errors, "no delivery report"
    error = errors[0]
    assert error is not None, "the scientist could write to a filter topic"
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_scientist_needs_granted_group_prefix(services: Settings, granted_topic: str) -> None:
    consumer = scientist_consumer(services, f"other-{uuid.uuid4().hex[:8]}")
    try:
        consumer.subscribe([granted_topic])
        error = first_error(consumer)
        assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    finally:
        consumer.close()


def test_wrong_password_fails_clearly(services: Settings) -> None:
    """A wrong SCRAM password is reported as an authentication error naming the credentials and mechanism."""
    errors: list[KafkaError] = []
    consumer = scientist_consumer(
        services, "scientist-sectest-wrong", password="wrong-password", error_cb=errors.append, log_level=0
    )
    try:
        consumer.subscribe([f"{stream_user(services)[1]}sectest-wrong-password"])
        deadline = time.monotonic() + 30
        while not errors and time.monotonic() < deadline:
            consumer.poll(0.5)
    finally:
        consumer.close()
    assert errors, "no error reported for a wrong password"
    error = errors[0]
    assert error.code() == KafkaError._AUTHENTICATION, error
    assert "invalid credentials" in error.str() and "SCRAM-SHA-512" in error.str(), error.str()


FINK_SCRIPT = """
import json, sys
from fink_client.consumer import AlertConsumer, AlertError
args = json.loads(sys.argv[1])
config = {"username": args["user"], "password": args["password"], "group.id": args["group"],
          "bootstrap.servers": args["servers"]}
result = {"alerts": [], "error": None}
consumer = AlertConsumer([args["topic"]], config, survey="ztf")
try:
    for _ in range(60):
        try:
            topic, alert, key = consumer.poll(timeout=1)
        except AlertError as exc:
            result["error"] = str(exc)
            break
        if alert is not None:
            result["alerts"].append(alert["alert_id"])
        if len(result["alerts"]) >= args["expect"]:
            break
finally:
    consumer._consumer.close()
print(json.dumps(result))
"""


def run_fink(settings: Settings, topic: str, expect: int, password: str | None = None) -> dict[str, Any]:
    """Consume ``topic`` with fink-client's ``AlertConsumer`` (username/password config) in its own venv."""
    user, _, group_prefix = stream_user(settings)
    stream = settings.kafka_stream_config(user, password)
    args = {
        "user": user,
        "password": stream["sasl.password"],
        "group": f"{group_prefix}-fink-{uuid.uuid4().hex[:8]}",
        "servers": settings.kafka_sasl_bootstrap_servers,
        "topic": topic,
        "expect": expect,
    }
    result = subprocess.run(
        [str(FINK_PYTHON), "-c", FINK_SCRIPT, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.skipif(not FINK_PYTHON.exists(), reason=f"fink-client venv not found at {FINK_PYTHON}")
def test_fink_client_reads_granted_topic(services: Settings, granted_topic: str) -> None:
    result = run_fink(services, granted_topic, expect=3)
    assert result["error"] is None
    assert sorted(result["alerts"]) == ["a0", "a1", "a2"]


@pytest.mark.skipif(not FINK_PYTHON.exists(), reason=f"fink-client venv not found at {FINK_PYTHON}")
def test_fink_client_denied_survey_topic(services: Settings) -> None:
    survey = kafka.survey_topic(services, "ztf")
    kafka.ensure_topic(services, survey)
    result = run_fink(services, survey, expect=1)
    assert result["alerts"] == []
    assert "TOPIC_AUTHORIZATION_FAILED" in (result["error"] or ""), result
