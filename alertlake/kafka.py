"""Kafka client factories configured from the settings (bootstrap servers and security in one place)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from alertlake.settings import Settings

# ZTF alerts with cutouts are ~70 KB and Rubin's up to ~82 KB; the broker allows 10 MiB messages.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


def survey_topic(settings: Settings, survey: str) -> str:
    """The Kafka topic a survey's alerts arrive on (the survey's own name, after the settings' prefix)."""
    from alertlake.surveys import get_survey

    return settings.topic_prefix + get_survey(survey).default_topic


def producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer (no duplicates on retry, order kept per partition) tuned for alert batches."""
    conf: dict[str, Any] = {
        **settings.kafka_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 4 * 1024 * 1024,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.kbytes": 512 * 1024,
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in ``group_id`` that starts at the earliest offset and commits explicitly."""
    conf: dict[str, Any] = {
        **settings.kafka_config(),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
    }
    conf.update(overrides)
    return Consumer(conf)


def fetch_values(
    settings: Settings, coords: Iterable[tuple[str, int, int]], timeout: float = 10.0
) -> dict[tuple[str, int, int], bytes | None]:
    """The value of the message at each Kafka coordinate (topic, partition, offset), read one at a time by a
    consumer that fetches little ahead: for a few scattered messages, much less than reading their whole offset
    range. ``None`` where the broker holds no such message (an offset out of its range, removed by retention, an
    unknown partition), none came within ``timeout``, or the value is null."""
    from confluent_kafka import TopicPartition

    fetcher = consumer(
        settings,
        f"alertlake-fetch-{uuid.uuid4().hex[:12]}",  # assigned, never committed: the group keeps no state
        **{
            "queued.min.messages": 1,
            "max.partition.fetch.bytes": 256 * 1024,
            "fetch.wait.max.ms": 50,
            # Once it holds queued.min.messages, the client waits this long before its next fetch (default 1 s):
            # with a new assignment per message, each took 1 s instead of 10 ms.
            "fetch.queue.backoff.ms": 1,
            "auto.offset.reset": "error",  # an offset out of range is reported, not replaced by the earliest
        },
    )
    found: dict[tuple[str, int, int], bytes | None] = {}
    held: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) -> offsets the broker holds
    try:
        for topic, partition, offset in sorted(set(coords)):
            found[(topic, partition, offset)] = None
            if (topic, partition) not in held:
                try:
                    held[(topic, partition)] = fetcher.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=timeout
                    )
                except KafkaException:  # no such topic or partition
                    held[(topic, partition)] = (0, 0)
            low, high = held[(topic, partition)]
            if not low <= offset < high:
                continue
            fetcher.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = fetcher.poll(min(0.5, timeout))
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._AUTO_OFFSET_RESET:  # removed meanwhile
                        break
                    continue  # transient (the client retries): wait until the deadline
                at = message.offset()
                if at == offset:
                    found[(topic, partition, offset)] = message.value()
                if at is not None and at >= offset:  # past it: the offset holds no message (compacted or removed)
                    break
    finally:
        fetcher.close()
    return found


def admin(settings: Settings) -> AdminClient:
    """An admin client for topic management."""
    return AdminClient(settings.kafka_config())


def ensure_topic(
    settings: Settings, name: str, partitions: int = 2, replication: int = 1, config: dict[str, str] | None = None
) -> None:
    """Create ``name`` if it does not exist yet (idempotent), and return once the broker's metadata shows it.
    ``config``: topic settings given at creation (``retention.ms`` ...); an existing topic keeps its own.

    The creation is acknowledged by the controller, and a busy broker's metadata can lag behind it: a client
    asking right away could be told the topic does not exist.
    """
    client = admin(settings)
    if name in client.list_topics(timeout=10).topics:
        return
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config or {})]
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create Kafka topic {topic!r}: {exc}") from exc
    deadline = time.monotonic() + 30
    while name not in client.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka topic {name!r} was created but does not show in the broker's metadata")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------- stream security
STREAM_TOPIC_OPERATIONS = ("READ", "DESCRIBE")
"""What a stream user may do on its granted topic prefixes (no WRITE, CREATE, DELETE, ALTER)."""
STREAM_GROUP_OPERATIONS = ("READ", "DESCRIBE")
"""What a stream user may do on consumer groups with its granted prefixes (join, commit, describe)."""


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Delete ``names`` (those that exist) and wait for the broker to confirm."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        for future in client.delete_topics(doomed, operation_timeout=timeout).values():
            future.result()


def stream_acls(settings: Settings) -> dict[str, set[tuple[str, str, str]]]:
    """The ACLs each stream user should have: user -> {(resource type, prefix, operation)}, all PREFIXED ALLOW.

    Built from ``kafka_stream_topic_grants`` and ``kafka_stream_group_grants``; with the broker's
    ``allow.everyone.if.no.acl.found=false``, anything not listed here is denied.
    """
    users = set(settings.kafka_stream_topic_grants) | set(settings.kafka_stream_group_grants)
    wanted: dict[str, set[tuple[str, str, str]]] = {user: set() for user in users}
    for user, prefixes in settings.kafka_stream_topic_grants.items():
        wanted[user] |= {("TOPIC", p, op) for p in prefixes for op in STREAM_TOPIC_OPERATIONS}
    for user, prefixes in settings.kafka_stream_group_grants.items():
        wanted[user] |= {("GROUP", p, op) for p in prefixes for op in STREAM_GROUP_OPERATIONS}
    return wanted


def ensure_stream_security(settings: Settings, passwords: dict[str, str], timeout: float = 30.0) -> list[str]:
    """Create or update the SCRAM-SHA-512 users and make their ACLs exactly the configured grants.

    ``passwords`` maps each user (the admin and every stream user) to its password. Runs through the internal
    listener (``settings.kafka_config()``), whose principal is a super user. Idempotent: passwords are
    re-applied, missing ACLs created and ACLs of these users that are no longer granted deleted. Returns a
    line per change for the log.
    """
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    client = admin(settings)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in sorted(passwords.items())
    ]
    for user, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result(timeout=timeout)
        except Exception as exc:
            raise RuntimeError(f"could not set the SCRAM-SHA-512 credentials of Kafka user {user!r}: {exc}") from exc

    changes: list[str] = []
    for user, wanted in sorted(stream_acls(settings).items()):
        if user not in passwords:
            raise ValueError(f"no password for Kafka stream user {user!r}")
        principal = f"User:{user}"
        any_of_user = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name
            ResourcePatternType.ANY,
            principal,
            None,  # type: ignore[arg-type]  # None matches any host
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        existing: list[Any] = client.describe_acls(any_of_user).result(timeout=timeout)
        have: set[tuple[str, str, str]] = set()
        stale: list[Any] = []
        for b in existing:
            key = (b.restype.name, b.name, b.operation.name)
            exact = (
                b.host == "*"
                and b.resource_pattern_type == ResourcePatternType.PREFIXED
                and b.permission_type == AclPermissionType.ALLOW
            )
            if key in wanted and exact:
                have.add(key)
            else:
                stale.append(b)
        missing = sorted(wanted - have)
        if missing:
            bindings = [
                AclBinding(
                    ResourceType[rtype],
                    name,
                    ResourcePatternType.PREFIXED,
                    principal,
                    "*",
                    AclOperation[op],
                    AclPermissionType.ALLOW,
                )
                for rtype, name, op in missing
            ]
            for future in client.create_acls(bindings).values():
                future.result(timeout=timeout)
            changes += [f"granted {op} on {rtype} {name}* to {user}" for rtype, name, op in missing]
        if stale:
            filters = [
                AclBindingFilter(
                    b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
                )
                for b in stale
            ]
            for future in client.delete_acls(filters).values():
                future.result(timeout=timeout)
            changes += [
                f"revoked {b.permission_type.name} {b.operation.name} on {b.restype.name} {b.name} from {user}"
                for b in stale
            ]
    return changes
