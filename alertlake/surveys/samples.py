"""Where the real sample alerts are, as wire-format messages per survey and schema version.

The shared data folder is ``$ALERTLAKE_SHARED_DATA``, by default ``<repo>/../shared/data`` (see its
README). Rubin's samples are Avro containers there and in ``lsst-alert-packet``; they are re-framed into
Rubin's Confluent wire format here so every caller sees what Kafka would carry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alertlake.surveys import get_survey

REPO_ROOT = Path(__file__).resolve().parents[2]

#: ZTF folders holding one decodable alert container per file.
ZTF_FOLDERS = ("ztf/avro", "ztf/avro_legacy", "ztf/avro_from_fink_parquet")
#: Broken ZTF containers kept upstream as negative test cases.
ZTF_UNDECODABLE = "ztf/avro_legacy/undecodable"
#: Real Rubin alerts (lsst.v10_0) re-serialised from Fink's parquet files.
LSST_REAL = "rubin/avro_from_fink_parquet"


@dataclass(frozen=True)
class SampleMessage:
    """One sample alert as its survey's Kafka message, with where it came from."""

    survey: str
    version: str
    path: Path
    message: bytes
    real: bool  # False for the synthetic fakeAlert of lsst-alert-packet


def shared_data_dir() -> Path:
    """Return the shared sample-data folder (``$ALERTLAKE_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    return Path(os.environ.get("ALERTLAKE_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


def ztf_files() -> list[Path]:
    """Every decodable ZTF sample file, sorted."""
    root = shared_data_dir()
    return sorted(p for folder in ZTF_FOLDERS for p in (root / folder).glob("*.avro"))


def ztf_undecodable_files() -> list[Path]:
    """The broken ZTF containers that must be rejected with a clear error."""
    return sorted((shared_data_dir() / ZTF_UNDECODABLE).glob("*.avro"))


def sample_messages(survey: str, version: str | None = None, *, real_only: bool = False) -> list[SampleMessage]:
    """Return the sample alerts of ``survey`` (optionally one schema version) as Kafka messages.

    ZTF: every file of :data:`ZTF_FOLDERS`. Rubin: the real v10 alerts of :data:`LSST_REAL`, then (unless
    ``real_only``) the ``fakeAlert.avro`` of every version shipped by ``lsst-alert-packet``.
    """
    impl = get_survey(survey)
    out: list[SampleMessage] = []
    if impl.name == "ztf":
        for path in ztf_files():
            message = path.read_bytes()
            out.append(SampleMessage("ztf", impl.detect_version(message), path, message, True))
    elif impl.name == "lsst":
        from alertlake.surveys.lsst import SURVEY as LSST
        from alertlake.surveys.lsst import schema_root

        sources = [(p, True) for p in sorted((shared_data_dir() / LSST_REAL).glob("*/*.avro"))]
        if not real_only:
            sources += [
                (schema_root() / v.replace(".", "/") / "sample_data" / "fakeAlert.avro", False)
                for v in LSST.schema_versions
            ]
        for path, real in sources:
            if not path.exists():
                continue
            for message in LSST.container_to_messages(path.read_bytes()):
                out.append(SampleMessage("lsst", LSST.detect_version(message), path, message, real))
    else:
        raise KeyError(f"no samples are known for survey {survey!r}")
    return [s for s in out if version is None or s.version == version]


def sample_versions(survey: str) -> list[str]:
    """The schema versions for which ``survey`` has at least one sample, in the survey's order."""
    present = {s.version for s in sample_messages(survey)}
    return [v for v in get_survey(survey).schema_versions if v in present]
