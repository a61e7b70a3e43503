"""One typed settings object for every AlertLake process.

Every endpoint the broker talks to (Kafka, Spark, the lake, Trino, MLflow, Airflow) is read from the
environment with the prefix ``ALERTLAKE_`` (for example ``ALERTLAKE_KAFKA_BOOTSTRAP_SERVERS``). The
defaults describe the embedded single-machine stack that ``make services-up`` starts; pointing at a real
cluster means setting other values, never changing code.

``python -m alertlake.settings --export`` prints the resolved values as shell ``export`` lines, which is
how the service scripts in ``infra/`` share this single source of truth.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where every service lives and how to reach it. Read from ``ALERTLAKE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ALERTLAKE_", extra="ignore")

    # Local folders: downloads shared by every checkout, and per-checkout runtime state.
    cache_dir: Path = Field(default=Path.home() / ".cache" / "alertlake", description="Downloaded JVM parts")
    state_dir: Path = Field(default=REPO_ROOT / ".state", description="PID files, logs, service data")

    # Kafka: survey topics in, filter topics out.
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    # Outgoing streams for scientists: a SASL/SCRAM-SHA-512 listener on the broker's host, beside the
    # PLAINTEXT loopback listener above that internal jobs use (its anonymous principal is a super user).
    kafka_sasl_port: int = 9094
    kafka_admin_user: str = "admin"
    # Stream users (SCRAM passwords ``kafka_<user>`` in <state_dir>/secrets.json) -> topic name prefixes
    # they may READ; every other topic (survey topics such as ``ztf``, internal ones) is denied.
    kafka_stream_topic_grants: dict[str, list[str]] = {"scientist": ["alertlake."]}
    # Stream users -> consumer group name prefixes they may use (a group id must start with one).
    kafka_stream_group_grants: dict[str, list[str]] = {"scientist": ["scientist"]}
    # Prepended to every survey topic (e.g. "test-42-" or a tenant name); empty in production.
    topic_prefix: str = ""

    # Spark.
    spark_master: str = "local[2]"
    spark_driver_memory: str = "3g"
    # The real-time pipeline's bronze lander (jobs.lander): a Spark driver of its own, at this CPU priority.
    bronze_lander_memory: str = "2g"
    bronze_lander_nice: int = 19
    # The lander yields to a busy pipeline: it appends nothing while the pipeline was busy more than this share of
    # the last 30 s (its batches back to back: at capacity), unless its oldest marked batch waits longer than
    # bronze_lander_max_lag_s. Above 1: never yields (only its CPU priority keeps it behind).
    bronze_lander_yield_load: float = 0.8
    bronze_lander_max_lag_s: float = 600.0
    spark_shuffle_partitions: int = 4
    # JVM options of Spark's driver and executors. The parallel (throughput) collector: ingesting 200,000
    # alerts ran at 2,337 and 2,409 alerts/s with it against 2,154 and 2,059 with the default G1, side by side.
    spark_java_options: str = "-XX:+UseParallelGC"
    # Start the driver JVM from a class-data-sharing archive of Spark's classes (built once by `make install`
    # into <cache_dir>/spark-cds, for this JDK and jar set; ignored when absent). A session then started in
    # 8.4-11.5 s instead of 16.0-18.2 s on a slow 2-core machine, and its first Delta write and read took 16-19 s
    # instead of 23-26 s (alternating runs with and without).
    spark_class_archive: bool = True
    # Give each Spark task its SQL conf once (alertlake/spark_plugin.py: Spark 4.2 rebuilds it on every read, and
    # its Avro reader reads it for every field of every nested record). Needs the plugin jar `make install` builds.
    spark_task_conf_cache: bool = True
    # A local Spark (``local[...]``) reads and writes ``file://`` through AlertLake's LocalFileSystem.java, which
    # sets permissions and reads link status with java.nio: Hadoop's own class starts a ``chmod`` or ``readlink``
    # process per file created or renamed (about 28 a real-time micro-batch, 4-5 ms each, on the thread that runs
    # the stream). Needs the jar `make install` builds.
    spark_local_fs_without_processes: bool = True
    # Tasks Delta splits its log replay into (``spark.databricks.delta.snapshotPartitions``, Delta's default 50,
    # sized for clusters). Every commit with a transaction id (each bronze and silver micro-batch) replays the
    # log: on 2 cores, 50 tasks made a 2,000-row append to a partitioned table take 5.8 s (median of 25), 2 tasks
    # 1.9 s, 4 tasks 2.5 s (bench: 30 appends side by side, same machine). Raise it with the cluster's cores.
    spark_delta_snapshot_partitions: int = 2
    # Tasks of Spark's parallel file listing (``spark.sql.sources.parallelPartitionDiscovery.parallelism``,
    # default 10,000), which VACUUM uses: 10,000 tasks took 63 s to VACUUM a 40-row table here, 4 tasks 7 s.
    spark_listing_parallelism: int = 4
    # Rows per Arrow batch between Spark and its Python workers (``spark.sql.execution.arrow.maxRecordsPerBatch``,
    # Spark's default 10,000). Smaller batches were not clearly better here (docs/data-engineer.md, 2026-12-03):
    # Spark's default is kept, the knob is for other machines.
    spark_arrow_batch_rows: int = 10_000
    # Sample alerts an ingestion job runs through its batch path (into a temporary Delta table, see
    # jobs.ingest.warm_up) before its stream starts, so the first real micro-batches do not pay JIT
    # compilation; the real-time pipeline sends as many copies to a warm-up topic and runs its own query over
    # them (jobs.pipeline.rehearse). 0 turns the warm-up off.
    ingest_warm_up_alerts: int = 2000

    # The lake: a local folder or an object-store URI such as s3a://bucket/alertlake.
    # Empty means `<state_dir>/lake`.
    lake_root: str = ""

    # Trino (catalog `lake`).
    # Clients use HTTPS with password authentication; plain HTTP stays for health checks and internal traffic.
    trino_url: str = "https://127.0.0.1:8443"
    trino_http_url: str = "http://127.0.0.1:8088"
    trino_user: str = "engineer"
    # Unset: the local password of ``trino_user`` from <state_dir>/secrets.json (see ``trino_secret``).
    trino_password: SecretStr | None = None
    # PEM certificate clients trust for ``trino_url``; unset: the self-signed one made at set-up.
    trino_ca_file: Path | None = None
    trino_catalog: str = "lake"
    trino_heap: str = "3G"
    # Jobs register the lake tables they create in Trino's catalog when Trino answers. False for throw-away lakes
    # (tests, benchmarks, staging runs: ``--no-trino``), which must never appear in the shared catalog; the
    # platform DAG's sync registers the tables of the configured lake either way.
    trino_register: bool = True

    # MLflow tracking server and model registry.
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"

    # Airflow.
    airflow_url: str = "http://127.0.0.1:8080"
    airflow_user: str = "admin"
    airflow_parallelism: int = 4

    @property
    def lake_uri(self) -> str:
        """The lake root as a URI: ``file:///...`` for a local folder, unchanged for ``s3a://`` etc."""
        root = self.lake_root or str(self.state_dir / "lake")
        if "://" in root:
            return root.rstrip("/")
        return Path(root).resolve().as_uri()

    @property
    def lake_is_local(self) -> bool:
        """True when the lake is a folder on this machine."""
        return self.lake_uri.startswith("file:")

    @property
    def lake_path(self) -> Path:
        """The local folder of the lake; only meaningful when ``lake_is_local``."""
        if not self.lake_is_local:
            raise ValueError(f"lake root {self.lake_uri} is not a local folder")
        return Path(self.lake_uri.removeprefix("file://"))

    @property
    def kafka_host(self) -> str:
        """Host of the first bootstrap server."""
        return self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]

    @property
    def kafka_port(self) -> int:
        """Port of the first bootstrap server."""
        return int(self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    def kafka_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka connection properties (bootstrap and security) shared by producers and consumers."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_username:
            conf["sasl.username"] = self.kafka_username
        if self.kafka_password:
            conf["sasl.password"] = self.kafka_password.get_secret_value()
        return conf

    @property
    def kafka_sasl_bootstrap_servers(self) -> str:
        """``host:port`` of the SASL/SCRAM listener that serves the outgoing streams."""
        return f"{self.kafka_host}:{self.kafka_sasl_port}"

    def kafka_stream_config(self, user: str = "scientist", password: str | None = None) -> dict[str, str]:
        """librdkafka properties of a stream user on the SASL/SCRAM-SHA-512 listener.

        ``password`` defaults to the user's local password (``kafka_<user>`` in ``secrets.json``).
        """
        secret = password if password is not None else self.local_secret(f"kafka_{user}")
        if secret is None:
            raise ValueError(f"no password for Kafka user {user!r}: pass one or run `python infra/stack.py up kafka`")
        return {
            "bootstrap.servers": self.kafka_sasl_bootstrap_servers,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": secret,
        }

    @property
    def secrets_file(self) -> Path:
        """Passwords generated at set-up (``infra/stack.py``), kept in the state folder and never in git."""
        return self.state_dir / "secrets.json"

    def local_secret(self, key: str) -> str | None:
        """One generated password from ``secrets_file`` (``None`` if the file or the key is missing)."""
        try:
            data = json.loads(self.secrets_file.read_text())
        except (OSError, ValueError):
            return None
        value = data.get(key) if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def trino_secret(self, user: str | None = None) -> str | None:
        """Password of Trino ``user`` (default ``trino_user``).

        ``ALERTLAKE_TRINO_PASSWORD`` when it is set and ``user`` is the configured user, otherwise the local
        password ``trino_<user>`` generated at set-up; ``None`` when neither exists.
        """
        user = user or self.trino_user
        if self.trino_password is not None and user == self.trino_user:
            return self.trino_password.get_secret_value()
        return self.local_secret(f"trino_{user}")

    @property
    def trino_ca_path(self) -> Path:
        """The PEM certificate that clients trust for ``trino_url`` (``trino_ca_file`` or the local one)."""
        return self.trino_ca_file or self.state_dir / "trino" / "tls" / "trino.pem"

    def environment(self, secrets: bool = True) -> dict[str, str]:
        """Every setting as the environment variable that sets it: a child process (a shell script, a job's
        helper process) given these reads the same values, whatever this process's own environment said.
        Without ``secrets``, passwords are left out: a child reads them where this process did (its inherited
        environment, or the local secrets file), and they stay out of its ``/proc/<pid>/environ``."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (isinstance(value, SecretStr) and not secrets):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict | list):
                value = json.dumps(value)  # complex settings are read back from the environment as JSON
            env[f"ALERTLAKE_{name.upper()}"] = str(value)
        return env

    def export_lines(self) -> list[str]:
        """Shell ``export`` lines for every setting, so shell scripts read the same values."""
        lines = [f"export {key}={shlex.quote(value)}" for key, value in self.environment().items()]
        lines.append(f"export ALERTLAKE_LAKE_URI={shlex.quote(self.lake_uri)}")
        return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def job_settings(no_trino: bool) -> Settings:
    """The settings of a job's command line: :func:`get_settings`, with ``trino_register`` off when the job was
    given ``--no-trino`` (a throw-away lake), whatever the environment says."""
    settings = get_settings()
    return settings.model_copy(update={"trino_register": False}) if no_trino else settings


def main(argv: list[str] | None = None) -> int:
    """Print the settings, as JSON or as shell ``export`` lines (``--export``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--export", action="store_true", help="print shell export lines")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.export:
        print("\n".join(settings.export_lines()))
    else:
        print(settings.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
