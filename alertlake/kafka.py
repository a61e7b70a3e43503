"""Kafka client factories configured from the settings (bootstrap servers and security in one place)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from alertlake.settings import Settings

# ZTF alerts with cutouts are ~70 KB and Rubin's up to ~82 KB; the broker allows 10 MiB messages.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


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


def admin(settings: Settings) -> AdminClient:
    """An admin client for topic management."""
    return AdminClient(settings.kafka_config())


def ensure_topic(settings: Settings, name: str, partitions: int = 2, replication: int = 1) -> None:
    """Create ``name`` if it does not exist yet (idempotent)."""
    client = admin(settings)
    if name in client.list_topics(timeout=10).topics:
        return
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication)])
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create Kafka topic {topic!r}: {exc}") from exc
