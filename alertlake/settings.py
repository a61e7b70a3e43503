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

    # Spark.
    spark_master: str = "local[2]"
    spark_driver_memory: str = "3g"
    spark_shuffle_partitions: int = 4

    # The lake: a local folder or an object-store URI such as s3a://bucket/alertlake.
    # Empty means `<state_dir>/lake`.
    lake_root: str = ""

    # Trino (catalog `lake`).
    trino_url: str = "http://127.0.0.1:8088"
    trino_user: str = "engineer"
    trino_password: SecretStr | None = None
    trino_catalog: str = "lake"
    trino_heap: str = "3G"

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

    def export_lines(self) -> list[str]:
        """Shell ``export`` lines for every setting, so shell scripts read the same values."""
        lines = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            lines.append(f"export ALERTLAKE_{name.upper()}={shlex.quote(str(value))}")
        lines.append(f"export ALERTLAKE_LAKE_URI={shlex.quote(self.lake_uri)}")
        return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


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
