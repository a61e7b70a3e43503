"""Airflow for DAG tests: its own home and metadata database under the state folder, migrated once.

The environment is set when this file is imported, before anything imports Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alertlake.settings import Settings
from infra.stack import airflow_env

_settings = Settings()
_home = _settings.state_dir / "test-airflow"
os.environ.update(airflow_env(_settings, _home))
_home.mkdir(parents=True, exist_ok=True)
# `airflow db migrate` is idempotent and quick once the schema is current.
subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)
