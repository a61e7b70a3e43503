"""Install, start, check and stop AlertLake's local services as plain processes (no Docker).

    python infra/stack.py install              # JVM parts from Maven Central into the cache (idempotent)
    python infra/stack.py up [SERVICE ...]     # start (installing first if needed) and wait until healthy
    python infra/stack.py status               # health, URL and resident memory of each service
    python infra/stack.py down [SERVICE ...]   # stop; leaves nothing running

Services: kafka (KRaft broker+controller), mlflow, trino, airflow. Everything binds to 127.0.0.1; PID
files, logs and data live in the state folder (``ALERTLAKE_STATE_DIR``), downloads in the cache
(``ALERTLAKE_CACHE_DIR``). Endpoints come from ``alertlake.settings`` so the scripts and the code agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from alertlake.settings import Settings  # noqa: E402

KAFKA_VERSION = "4.1.1"
SPARK_VERSION = "4.2.0"
TRINO_VERSION = "476"
TRINO_PLUGINS = ("delta-lake", "password-authenticators", "tpch")
TRINO_USERS = ("engineer", "scientist")
"""Trino's password-file users; their passwords (``trino_<user>``) are generated into secrets.json."""
LOCK_FILE = REPO / "infra" / "jvm-lock.sha256"
# Trino only loads the plugins we need: fewer classes, faster start, less memory.


class StackError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why and what to do."""


# --------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[alertlake] {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _java_major(home: Path) -> int | None:
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.exists():
        return None
    for line in release.read_text().splitlines():
        if line.startswith("JAVA_VERSION="):
            return int(line.split("=", 1)[1].strip('"').split(".")[0])
    return None


def java_home(min_major: int) -> Path:
    """A JDK of at least ``min_major``: JAVA_HOME if it fits, else the *oldest* fitting JDK in /usr/lib/jvm.

    The oldest, because each service is tested on the lowest Java it supports (Kafka and Spark on 17,
    Trino on 24+): a newer JDK beside it is not an upgrade they asked for.
    """
    if os.environ.get("JAVA_HOME"):
        home = Path(os.environ["JAVA_HOME"])
        if (_java_major(home) or 0) >= min_major:
            return home
    found = [(major, home) for home in Path("/usr/lib/jvm").glob("*") if (major := _java_major(home))]
    fitting = sorted((major, str(home)) for major, home in found if major >= min_major)
    if not fitting:
        raise StackError(f"no JDK >= {min_major} found (set JAVA_HOME or install one under /usr/lib/jvm)")
    return Path(fitting[0][1])


def mvn(settings: Settings, *args: str) -> None:
    """Run Maven with the cache's own local repository and strict checksum verification (-C)."""
    cmd = ["mvn", "-B", "-q", "-C", f"-Dmaven.repo.local={settings.cache_dir / 'm2'}", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=settings.cache_dir)
    if result.returncode != 0:
        raise StackError(f"Maven failed: {' '.join(cmd)}\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def read_lock() -> dict[str, str]:
    if not LOCK_FILE.exists():
        return {}
    out = {}
    for line in LOCK_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            out[name.strip()] = digest
    return out


def verify(files: dict[str, Path], update: bool) -> None:
    """Check every downloaded artifact against infra/jvm-lock.sha256 (or record them with --update-lock)."""
    lock = read_lock()
    if update:
        lock.update({name: sha256(path) for name, path in files.items()})
        body = "".join(f"{digest}  {name}\n" for name, digest in sorted(lock.items()))
        LOCK_FILE.write_text(
            "# sha256 of every JVM artifact AlertLake downloads; written by `stack.py install --update-lock`\n" + body
        )
        return
    for name, path in files.items():
        if name not in lock:
            raise StackError(f"{name} is not in {LOCK_FILE.name}; run `python infra/stack.py install --update-lock`")
        if sha256(path) != lock[name]:
            path.unlink()
            raise StackError(f"checksum mismatch for {name} ({path}); the file was removed, run install again")


# --------------------------------------------------------------------------------------------- install
def kafka_dir(s: Settings) -> Path:
    return s.cache_dir / f"kafka-{KAFKA_VERSION}"


def spark_jars_dir(s: Settings) -> Path:
    return s.cache_dir / f"spark-{SPARK_VERSION}-jars"


def trino_dir(s: Settings) -> Path:
    return s.cache_dir / f"trino-server-{TRINO_VERSION}"


def trino_cli(s: Settings) -> Path:
    return s.cache_dir / f"trino-cli-{TRINO_VERSION}.jar"


def _copy_dependencies(s: Settings, pom: str, dest: Path, skip: Callable[[str], bool], update: bool) -> None:
    stamp = dest / ".complete"
    if stamp.exists():
        return
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"resolving {pom} from Maven Central into {dest}")
    mvn(s, "-f", str(REPO / "infra" / "maven" / pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}")
    for jar in list(tmp.glob("*.jar")):
        if skip(jar.name):
            jar.unlink()
    verify({f"{dest.name}/{j.name}": j for j in sorted(tmp.glob("*.jar"))}, update)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    stamp.touch()


def _artifact_base(jar_name: str) -> str:
    """``jackson-core-2.13.5.jar`` -> ``jackson-core``: the artifact name without its version."""
    parts = jar_name.removesuffix(".jar").split("-")
    keep = []
    for part in parts:
        if part[:1].isdigit():
            break
        keep.append(part)
    return "-".join(keep)


def install_kafka(s: Settings, update: bool = False) -> None:
    _copy_dependencies(s, "kafka.pom.xml", kafka_dir(s) / "lib", lambda _: False, update)


def install_spark_jars(s: Settings, update: bool = False) -> None:
    import pyspark

    # Only jars pyspark lacks: a second copy of e.g. jackson or parquet in another version breaks Spark.
    # The jackson modules and RoaringBitmap's shims must match the versions pyspark bundles, so they go too.
    bundled = {_artifact_base(j.name) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}

    def skip(name: str) -> bool:
        base = _artifact_base(name)
        return base in bundled or base.startswith("jackson-") or base == "shims"

    _copy_dependencies(s, "spark.pom.xml", spark_jars_dir(s), skip, update)


def install_spark_plugin(s: Settings) -> None:
    """AlertLake's JVM classes (alertlake/spark_plugin.py), compiled once per source and Spark version."""
    from alertlake import spark_plugin

    if not spark_plugin.wanted(s) or spark_plugin.built(s) is not None:
        return
    log(f"compiling AlertLake's JVM classes ({', '.join(source.name for source in spark_plugin.SOURCES)})")
    log(f"Spark plugin: {spark_plugin.build(s)}")


def install_class_archive(s: Settings) -> None:
    """Spark drivers start from a class-data-sharing archive (see alertlake/class_archive.py): built once per JDK
    and jar set, about a minute."""
    from alertlake import class_archive

    if not s.spark_class_archive or class_archive.current(s) is not None:
        return
    log("building the Spark driver's class archive (once per JDK and jar set)")
    path = class_archive.build(s)
    log(f"class archive: {path}" if path else "no class archive: Spark jobs start without it")


def install_trino(s: Settings, update: bool = False) -> None:
    home = trino_dir(s)
    if not (home / ".complete").exists():
        log(f"fetching Trino {TRINO_VERSION} from Maven Central (~820 MB, once)")
        mvn(s, "dependency:get", "-Dtransitive=false", f"-Dartifact=io.trino:trino-server:{TRINO_VERSION}:tar.gz")
        tarball = (
            s.cache_dir
            / "m2"
            / "io"
            / "trino"
            / "trino-server"
            / TRINO_VERSION
            / f"trino-server-{TRINO_VERSION}.tar.gz"
        )
        verify({tarball.name: tarball}, update)
        tmp = s.cache_dir / "trino-extract.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(tarball) as tf:
            members = [
                m
                for m in tf.getmembers()
                if "/plugin/" not in m.name or any(f"/plugin/{p}/" in m.name for p in TRINO_PLUGINS)
            ]
            tf.extractall(tmp, members=members, filter="data")
        shutil.rmtree(home, ignore_errors=True)
        (tmp / f"trino-server-{TRINO_VERSION}").rename(home)
        shutil.rmtree(tmp)
        (home / ".complete").touch()
    if not trino_cli(s).exists():
        mvn(s, "dependency:get", "-Dtransitive=false", f"-Dartifact=io.trino:trino-cli:{TRINO_VERSION}:jar:executable")
        jar = (
            s.cache_dir
            / "m2"
            / "io"
            / "trino"
            / "trino-cli"
            / TRINO_VERSION
            / f"trino-cli-{TRINO_VERSION}-executable.jar"
        )
        verify({jar.name: jar}, update)
        shutil.copy(jar, trino_cli(s))


def install(s: Settings, update: bool = False) -> None:
    s.cache_dir.mkdir(parents=True, exist_ok=True)
    install_kafka(s, update)
    install_spark_jars(s, update)
    install_spark_plugin(s)  # before the class archive, whose jar set includes it
    install_class_archive(s)
    install_trino(s, update)
    log(f"JVM parts ready in {s.cache_dir}")


# --------------------------------------------------------------------------------------------- secrets
def local_secrets(s: Settings) -> dict[str, str]:
    """Passwords generated at first set-up, kept in the state folder (never in git)."""
    path = s.state_dir / "secrets.json"
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    stream_users = set(s.kafka_stream_topic_grants) | set(s.kafka_stream_group_grants)
    for key in (
        "airflow_admin",
        "airflow_jwt",
        "airflow_fernet",
        *(f"trino_{user}" for user in TRINO_USERS),
        "trino_keystore",
        "trino_shared_secret",
        f"kafka_{s.kafka_admin_user}",
        *(f"kafka_{user}" for user in sorted(stream_users)),
    ):
        if key not in data:
            data[key] = secrets.token_urlsafe(64 if key == "airflow_jwt" else 18)
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
    return data


# --------------------------------------------------------------------------------------------- services
@dataclass
class Proc:
    """One OS process of a service."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass
class Service:
    """A local service: how to prepare, run and health-check it."""

    name: str
    url: str
    ports: list[int]
    procs: Callable[[], list[Proc]]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    start_timeout: float = 120.0
    # Run once the service is healthy (also when it already was): idempotent set-up such as users and ACLs.
    configure: Callable[[], None] = lambda: None

    def pidfile(self, s: Settings, proc: str) -> Path:
        return s.state_dir / "run" / f"{self.name}.{proc}.pid"

    def logfile(self, s: Settings, proc: str) -> Path:
        return s.state_dir / "logs" / f"{self.name}.{proc}.log"


def http_ok(url: str, timeout: float = 2.0, check: Callable[[bytes], bool] = lambda _: True) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            return resp.status == 200 and check(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_owner(port: int) -> str | None:
    """Who listens on ``port`` (``None`` if nobody): 'pid 123 (java ...)'."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return None
    for conn in psutil.net_connections(kind="inet"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid:
                try:
                    p = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(p.cmdline())[:120]})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    return "an unknown process"


def kafka_service(s: Settings) -> Service:
    home = s.state_dir / "kafka"
    port, cport, sport = s.kafka_port, s.kafka_controller_port, s.kafka_sasl_port

    def prepare() -> None:
        install_kafka(s)
        home.mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    # PLAINTEXT: loopback listener of the internal jobs; STREAMS: SASL/SCRAM for subscribers.
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},"
                    f"STREAMS://127.0.0.1:{sport}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},STREAMS://127.0.0.1:{sport}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,STREAMS:SASL_PLAINTEXT",
                    "sasl.enabled.mechanisms=SCRAM-SHA-512",
                    "listener.name.streams.sasl.enabled.mechanisms=SCRAM-SHA-512",
                    "listener.name.streams.scram-sha-512.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    # ACLs: nothing is allowed unless granted; the internal listeners' anonymous principal
                    # (PLAINTEXT and CONTROLLER, loopback only) and the admin user are super users.
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "allow.everyone.if.no.acl.found=false",
                    f"super.users=User:ANONYMOUS;User:{s.kafka_admin_user}",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={home / 'data'}",
                    "num.partitions=2",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    # ZTF alerts with cutouts are ~70 KB, Rubin's up to ~82 KB; allow bursts of large batches.
                    "message.max.bytes=10485760",
                    "replica.fetch.max.bytes=10485760",
                    "log.retention.hours=168",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        (home / "log4j2.yaml").write_text(
            "Configuration:\n  Appenders:\n    Console:\n      name: STDOUT\n      PatternLayout:\n"
            "        Pattern: '[%d] %p %m (%c)%n'\n  Loggers:\n    Root:\n      level: INFO\n"
            "      AppenderRef:\n        - ref: STDOUT\n"
        )
        if not (home / "data" / "meta.properties").exists():
            log("formatting Kafka KRaft storage")
            java = str(java_home(17) / "bin" / "java")
            result = subprocess.run(
                [
                    java,
                    "-cp",
                    f"{kafka_dir(s) / 'lib'}/*",
                    f"-Dlog4j2.configurationFile={home / 'log4j2.yaml'}",
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    "alertlake-local-cluster0",
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise StackError(f"kafka-storage format failed:\n{result.stdout}{result.stderr}")

    def procs() -> list[Proc]:
        java = str(java_home(17) / "bin" / "java")
        return [
            Proc(
                "broker",
                [
                    java,
                    "-Xms512m",
                    "-Xmx1g",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={home / 'log4j2.yaml'}",
                    "-cp",
                    f"{kafka_dir(s) / 'lib'}/*",
                    "kafka.Kafka",
                    str(home / "server.properties"),
                ],
            )
        ]

    def healthy() -> bool:
        from confluent_kafka.admin import AdminClient

        if port_owner(port) is None:  # cheap first check, and keeps librdkafka from logging refusals
            return False
        try:
            AdminClient({**s.kafka_config(), "socket.timeout.ms": 2000, "log_level": 0}).list_topics(timeout=2)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
            return False

    def configure() -> None:
        """SCRAM users (admin + stream users) and their ACLs, via the AdminClient on the internal listener.

        Done after every start rather than at ``kafka-storage format`` time, so data folders formatted before
        SCRAM existed keep working; re-running only applies what changed.
        """
        from alertlake.kafka import ensure_stream_security

        if port_owner(sport) is None:
            raise StackError(
                f"kafka is running without its SASL/SCRAM listener on port {sport} (it was started with an older "
                "configuration); restart it: `python infra/stack.py down kafka && python infra/stack.py up kafka`"
            )
        sec = local_secrets(s)
        users = {s.kafka_admin_user, *s.kafka_stream_topic_grants, *s.kafka_stream_group_grants}
        try:
            changes = ensure_stream_security(s, {user: sec[f"kafka_{user}"] for user in sorted(users)})
        except Exception as exc:
            raise StackError(f"kafka: could not set up stream users and ACLs: {exc}") from exc
        for change in changes:
            log(f"kafka: {change}")
        log(f"kafka: stream users {', '.join(sorted(users))} on SASL_PLAINTEXT (SCRAM-SHA-512) 127.0.0.1:{sport}")

    return Service(
        "kafka",
        f"kafka://{s.kafka_bootstrap_servers}",
        [port, cport, sport],
        procs,
        healthy,
        prepare,
        configure=configure,
    )


def mlflow_service(s: Settings) -> Service:
    home = s.state_dir / "mlflow"
    url = urlparse(s.mlflow_tracking_uri)

    def procs() -> list[Proc]:
        home.mkdir(parents=True, exist_ok=True)
        return [
            Proc(
                "server",
                [
                    str(Path(sys.executable).parent / "mlflow"),
                    "server",
                    "--host",
                    url.hostname or "127.0.0.1",
                    "--port",
                    str(url.port or 5000),
                    "--backend-store-uri",
                    f"sqlite:///{home / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(home / "artifacts"),
                    "--workers",
                    "1",
                ],
                # The GenAI job runner starts seven huey consumers (~1.8 GiB) that a broker never uses.
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        ]

    return Service(
        "mlflow",
        s.mlflow_tracking_uri,
        [url.port or 5000],
        procs,
        lambda: http_ok(f"{s.mlflow_tracking_uri}/health"),
        start_timeout=120,
    )


def trino_etc(s: Settings) -> Path:
    return s.state_dir / "trino" / "etc"


def trino_password_hash(password: str, iterations: int = 65536) -> str:
    """``password`` in the PBKDF2 format of Trino's password file: ``iterations:salt:hash`` (hex, HmacSHA1)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, iterations, dklen=32)
    return f"{iterations}:{salt.hex()}:{digest.hex()}"


def trino_access_rules(s: Settings) -> dict[str, object]:
    """Trino's file-based access control rules (first matching rule wins, anything unmatched is denied).

    * ``engineer``: everything (every catalog, schema ownership, all table privileges, every procedure).
    * ``scientist``: read-only. SELECT on every table and view of the ``silver``, ``gold``, ``quality`` and
      ``views`` schemas of the lake catalog. In ``bronze`` only ``quarantine`` is readable, and without its
      ``raw`` column (the rejected message bytes): its reason, source coordinates and times let a scientist
      see why alerts are missing. The other bronze tables (raw survey payloads) stay engineer-only, since
      silver holds the same alerts validated. No INSERT/UPDATE/DELETE, CREATE/DROP or procedures
      (``register_table``) anywhere.
    """
    lake = s.trino_catalog
    readable = "silver|gold|quality|views"
    return {
        "catalogs": [
            {"user": "engineer", "catalog": ".*", "allow": "all"},
            {"user": "scientist", "catalog": f"{lake}|system", "allow": "read-only"},
        ],
        "schemas": [
            {"user": "engineer", "schema": ".*", "owner": True},
            {"user": "scientist", "schema": ".*", "owner": False},
        ],
        "tables": [
            {
                "user": "engineer",
                "privileges": ["SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"],
            },
            {
                "user": "scientist",
                "catalog": lake,
                "schema": "bronze",
                "table": "quarantine",
                "privileges": ["SELECT"],
                "columns": [{"name": "raw", "allow": False}],
            },
            {"user": "scientist", "catalog": lake, "schema": readable, "privileges": ["SELECT"]},
            {"user": "scientist", "catalog": lake, "schema": "information_schema", "privileges": ["SELECT"]},
            {"user": "scientist", "catalog": "system", "privileges": ["SELECT"]},
        ],
        "procedures": [
            {"user": "engineer", "catalog": ".*", "schema": ".*", "procedure": ".*", "privileges": ["EXECUTE"]},
        ],
    }


def trino_tls(s: Settings, sec: dict[str, str]) -> Path:
    """A self-signed key pair for HTTPS (SAN 127.0.0.1 and localhost), made once; returns the PKCS12 keystore.

    The certificate is exported as PEM to ``settings.trino_ca_path`` (unless ``trino_ca_file`` points
    elsewhere), which ``alertlake.trino.connect`` trusts.
    """
    tls = s.state_dir / "trino" / "tls"
    keystore, pem = tls / "keystore.p12", tls / "trino.pem"
    if keystore.exists() and pem.exists():
        return keystore
    tls.mkdir(parents=True, exist_ok=True)
    keystore.unlink(missing_ok=True)
    keytool = str(java_home(24) / "bin" / "keytool")
    password = sec["trino_keystore"]
    for cmd in (
        [
            keytool,
            "-genkeypair",
            "-alias",
            "trino",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "3650",
            "-dname",
            "CN=127.0.0.1, OU=AlertLake local Trino",
            "-ext",
            "SAN=ip:127.0.0.1,dns:localhost",
            "-storetype",
            "PKCS12",
            "-keystore",
            str(keystore),
            "-storepass",
            password,
            "-keypass",
            password,
        ],
        [keytool, "-exportcert", "-rfc", "-alias", "trino", "-keystore", str(keystore), "-storepass", password],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"keytool failed: {' '.join(cmd[:2])}\n{result.stdout}{result.stderr}")
    pem.write_text(result.stdout)
    keystore.chmod(0o600)
    if s.trino_ca_file is None:
        log(f"trino: self-signed HTTPS certificate in {pem}")
    return keystore


def trino_service(s: Settings) -> Service:
    http = urlparse(s.trino_http_url)
    https = urlparse(s.trino_url)
    port = http.port or 8088
    tls_port = https.port or 8443
    etc = trino_etc(s)
    data = s.state_dir / "trino" / "data"

    def prepare() -> None:
        install_trino(s)
        (etc / "catalog").mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        sec = local_secrets(s)
        keystore = trino_tls(s, sec)
        passwords = etc / "password.db"
        passwords.write_text("".join(f"{u}:{trino_password_hash(sec[f'trino_{u}'])}\n" for u in TRINO_USERS))
        passwords.chmod(0o600)
        (etc / "password-authenticator.properties").write_text(
            f"password-authenticator.name=file\nfile.password-file={passwords}\n"
        )
        (etc / "rules.json").write_text(json.dumps(trino_access_rules(s), indent=2) + "\n")
        (etc / "access-control.properties").write_text(
            f"access-control.name=file\nsecurity.config-file={etc / 'rules.json'}\nsecurity.refresh-period=10s\n"
        )
        config = etc / "config.properties"
        config.write_text(
            "coordinator=true\nnode-scheduler.include-coordinator=true\n"
            # Plain HTTP (no client authentication possible) for health checks and internal traffic;
            # clients use HTTPS with a password. Both bind to node.bind-ip=127.0.0.1.
            f"http-server.http.port={port}\n"
            f"discovery.uri=http://127.0.0.1:{port}\n"
            "http-server.https.enabled=true\n"
            f"http-server.https.port={tls_port}\n"
            f"http-server.https.keystore.path={keystore}\n"
            f"http-server.https.keystore.key={sec['trino_keystore']}\n"
            "http-server.authentication.type=PASSWORD\n"
            f"password-authenticator.config-files={etc / 'password-authenticator.properties'}\n"
            f"access-control.config-files={etc / 'access-control.properties'}\n"
            f"internal-communication.shared-secret={sec['trino_shared_secret']}\n"
            "query.max-memory=2GB\nquery.max-memory-per-node=1GB\n"
            f"plugin.dir={trino_dir(s) / 'plugin'}\n"
        )
        config.chmod(0o600)
        (etc / "log.properties").write_text("io.trino=INFO\n")
        (etc / "catalog" / f"{s.trino_catalog}.properties").write_text(trino_catalog_properties(s))

    def procs() -> list[Proc]:
        java = str(java_home(24) / "bin" / "java")
        flags = [
            f"-Xmx{s.trino_heap}",
            "-XX:+UseG1GC",
            "-XX:G1HeapRegionSize=32M",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:+HeapDumpOnOutOfMemoryError",
            "-Djdk.attach.allowAttachSelf=true",
            "-XX:ReservedCodeCacheSize=256M",
            "--add-modules=jdk.incubator.vector",
            "--enable-native-access=ALL-UNNAMED",
            "-Dfile.encoding=UTF-8",
            f"-Dconfig={etc / 'config.properties'}",
            f"-Dlog.levels-file={etc / 'log.properties'}",
            "-Dnode.environment=alertlake",
            f"-Dnode.data-dir={data}",
            "-Dnode.id=alertlake-local",
            "-Dnode.bind-ip=127.0.0.1",
            "-Dnode.internal-address=127.0.0.1",
            f"-Dcatalog.config-dir={etc / 'catalog'}",
        ]
        return [
            Proc("server", [java, *flags, "-cp", f"{trino_dir(s) / 'lib'}/*", "io.trino.server.TrinoServer"], cwd=data)
        ]

    def healthy() -> bool:
        def started(body: bytes) -> bool:
            return json.loads(body).get("starting") is False

        if not http_ok(f"{s.trino_http_url}/v1/info", check=started):
            return False
        # The HTTPS endpoint, verified with the local certificate: what clients will use.
        context = ssl.create_default_context(cafile=str(s.trino_ca_path) if s.trino_ca_path.exists() else None)
        try:
            with urllib.request.urlopen(f"{s.trino_url}/v1/info", timeout=2, context=context) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return Service("trino", s.trino_url, [port, tls_port], procs, healthy, prepare, start_timeout=240)


def trino_catalog_properties(s: Settings) -> str:
    """The Delta Lake catalog over the lake root, with a file-based metastore inside the lake."""
    lines = [
        "connector.name=delta_lake",
        "hive.metastore=file",
        "delta.register-table-procedure.enabled=true",
        "delta.enable-non-concurrent-writes=true",
        "delta.hive-catalog-name=lake",
    ]
    if s.lake_is_local:
        lines += [
            f"hive.metastore.catalog.dir=local://{s.lake_path / '_metastore'}",
            "fs.native-local.enabled=true",
            "local.location=/",
        ]
    else:
        lines += [f"hive.metastore.catalog.dir={s.lake_uri}/_metastore", "fs.native-s3.enabled=true"]
    return "\n".join(lines) + "\n"


def airflow_env(s: Settings, home: Path | None = None) -> dict[str, str]:
    """Environment of every Airflow process (servers, CLI and tests) for this checkout."""
    home = home or s.state_dir / "airflow"
    sec = local_secrets(s)
    url = urlparse(s.airflow_url)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url}/execution/",
        "AIRFLOW__API__HOST": url.hostname or "127.0.0.1",
        "AIRFLOW__API__PORT": str(url.port or 8080),
        "AIRFLOW__API__BASE_URL": s.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["airflow_jwt"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "PYTHONPATH": str(REPO),
    }


def airflow_service(s: Settings) -> Service:
    home = s.state_dir / "airflow"
    env = airflow_env(s, home)
    bin_airflow = str(Path(sys.executable).parent / "airflow")

    def prepare() -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "passwords.json").write_text(json.dumps({s.airflow_user: local_secrets(s)["airflow_admin"]}))
        (home / "passwords.json").chmod(0o600)
        result = subprocess.run(
            [bin_airflow, "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")

    def procs() -> list[Proc]:
        return [Proc(p, [bin_airflow, p], env) for p in ("api-server", "scheduler", "dag-processor", "triggerer")]

    def healthy() -> bool:
        def all_healthy(body: bytes) -> bool:
            health = json.loads(body)
            return all(part.get("status") == "healthy" for part in health.values() if isinstance(part, dict))

        return http_ok(f"{s.airflow_url}/api/v2/monitor/health", check=all_healthy)

    return Service(
        "airflow", s.airflow_url, [urlparse(s.airflow_url).port or 8080], procs, healthy, prepare, start_timeout=240
    )


def services(s: Settings) -> dict[str, Service]:
    return {svc.name: svc for svc in (kafka_service(s), mlflow_service(s), trino_service(s), airflow_service(s))}


# --------------------------------------------------------------------------------------------- lifecycle
def running_pids(s: Settings, svc: Service) -> dict[str, int]:
    """PIDs of the service's processes that are still alive, by process name."""
    out = {}
    for pidfile in (s.state_dir / "run").glob(f"{svc.name}.*.pid"):
        pid = int(pidfile.read_text().strip() or 0)
        if pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            out[pidfile.name.split(".")[1]] = pid
        else:
            pidfile.unlink(missing_ok=True)
    return out


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def launch(s: Settings, svc: Service) -> bool:
    """Prepare and spawn ``svc`` unless it runs; False when it already runs and is healthy (configured again)."""
    if running_pids(s, svc):
        if svc.healthy():
            log(f"{svc.name}: already running and healthy at {svc.url}")
            svc.configure()
            return False
        log(f"{svc.name}: running but not healthy yet, waiting")
        return True
    for port in svc.ports:
        owner = port_owner(port)
        if owner:
            raise StackError(
                f"{svc.name}: port {port} is already in use by {owner}; stop it or change the "
                f"port in ALERTLAKE_* settings"
            )
    svc.prepare()
    (s.state_dir / "run").mkdir(parents=True, exist_ok=True)
    (s.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    for proc in svc.procs():
        logfile = svc.logfile(s, proc.name)
        with logfile.open("ab") as out:
            p = subprocess.Popen(
                proc.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **proc.env},
                cwd=proc.cwd,
                start_new_session=True,
            )
        svc.pidfile(s, proc.name).write_text(str(p.pid))
    log(f"{svc.name}: started, waiting for health at {svc.url}")
    return True


def await_healthy(s: Settings, svc: Service, since: float) -> None:
    """Wait until ``svc`` (launched at monotonic time ``since``) is healthy, then configure it; stop it and raise
    with the tail of its logs if it is not healthy within its start timeout or one of its processes died."""
    deadline = since + svc.start_timeout  # from the launch: start-ups overlap, so these allow for each other
    while time.monotonic() < deadline:
        if svc.healthy():
            log(f"{svc.name}: healthy at {svc.url} ({time.monotonic() - since:.0f} s)")
            svc.configure()
            return
        alive = running_pids(s, svc)
        expected = {p.name for p in svc.procs()}
        dead = sorted(expected - set(alive))
        if dead:
            break
        time.sleep(1)
    logs = "\n".join(f"--- tail of {svc.logfile(s, p.name)} ---\n{tail(svc.logfile(s, p.name))}" for p in svc.procs())
    stop(s, svc)
    raise StackError(f"{svc.name} did not become healthy within {svc.start_timeout:.0f}s\n{logs}")


def start_all(s: Settings, svcs: list[Service]) -> None:
    """Start ``svcs`` side by side: each is launched in turn (a launch only prepares and spawns, except Airflow's
    database migration), then each is waited for. Kafka's, Trino's and MLflow's start-ups overlap each other and
    Airflow's migration, instead of each waiting for the previous service's health. If one cannot be launched,
    those already launched are still waited for (and configured) before its error is raised."""
    launched = []
    try:
        for svc in svcs:
            since = time.monotonic()
            if launch(s, svc):
                launched.append((svc, since))
    finally:
        for svc, since in launched:
            await_healthy(s, svc, since)


def stop(s: Settings, svc: Service) -> None:
    pids = running_pids(s, svc)
    procs = []
    for pid in pids.values():
        try:
            parent = psutil.Process(pid)
            procs += [parent, *parent.children(recursive=True)]
            os.killpg(pid, signal.SIGTERM)
        except (psutil.Error, ProcessLookupError):
            pass
    _, alive = psutil.wait_procs(procs, timeout=30)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    for pidfile in (s.state_dir / "run").glob(f"{svc.name}.*.pid"):
        pidfile.unlink()
    if pids:
        log(f"{svc.name}: stopped")


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            for p in (parent, *parent.children(recursive=True)):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def status(s: Settings, names: list[str]) -> int:
    rows, total, bad = [], 0, 0
    for name in names:
        svc = services(s)[name]
        pids = running_pids(s, svc)
        healthy = bool(pids) and svc.healthy()
        rss = rss_bytes(list(pids.values()))
        total += rss
        bad += not healthy
        state = "healthy" if healthy else ("unhealthy" if pids else "stopped")
        rows.append((name, state, svc.url, f"{rss / 2**30:.2f} GiB", ",".join(map(str, pids.values())) or "-"))
    widths = [max(len(str(r[i])) for r in [("service", "state", "url", "rss", "pids"), *rows]) for i in range(5)]
    for row in [("service", "state", "url", "rss", "pids"), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"total resident memory: {total / 2**30:.2f} GiB")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["install", "up", "down", "status", "secrets"])
    parser.add_argument("services", nargs="*", help="kafka mlflow trino airflow (default: all)")
    parser.add_argument("--update-lock", action="store_true", help="record checksums of downloads in the lock file")
    args = parser.parse_args(argv)
    s = Settings()
    names = args.services or list(services(s))
    unknown = set(names) - set(services(s))
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    try:
        if args.action == "install":
            install(s, args.update_lock)
        elif args.action == "up":
            start_all(s, [services(s)[name] for name in names])
        elif args.action == "down":
            for name in reversed(names):
                stop(s, services(s)[name])
        elif args.action == "status":
            return status(s, names)
        elif args.action == "secrets":
            print(json.dumps(local_secrets(s), indent=2))
    except StackError as exc:
        print(f"[alertlake] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
