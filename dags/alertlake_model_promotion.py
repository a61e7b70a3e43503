"""Model promotion: a science module's challenger is scored against its champion and promoted only if it passes.

Both versions run on the same reference alerts (a night of bronze, or the shared sample by default); the
comparison (errors, nulls, speed, skill metrics, agreement) is logged to MLflow (experiment
``alertlake-promotions``), and ``@champion`` moves to the challenger only when every check passes.
Triggered by hand with its parameters; thin, AlertLake is imported inside the tasks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task


@dag(
    dag_id="alertlake_model_promotion",
    description="Score a module's challenger against its champion on a reference night; promote if it passes",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "mlflow", "models"],
    params={
        "module": Param("supernova", type="string", description="Science module name"),
        "challenger": Param("challenger", type="string", description="Alias or version number to evaluate"),
        "reference_night": Param("", type="string", description="Night YYYY-MM-DD of bronze; empty: shared sample"),
    },
)
def alertlake_model_promotion() -> None:
    @task
    def score(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Runs champion and challenger on the reference alerts and logs the comparison to MLflow."""
        from alertlake.settings import REPO_ROOT

        _importable(str(REPO_ROOT))
        from jobs.enrich import score_versions

        p = params or {}
        return score_versions(p["module"], challenger=p["challenger"], night=p["reference_night"] or None)

    @task
    def promote(comparison: dict[str, Any]) -> dict[str, Any]:
        """Moves @champion to the challenger version only if the comparison passed."""
        from alertlake.modules import promote as move_alias

        name, version = comparison["module"], comparison["challenger"]["version"]
        moved = move_alias(name, version, alias="champion", check=lambda _n, _v: bool(comparison["passed"]))
        return {"module": name, "version": version, "promoted": moved, "reasons": comparison["reasons"]}

    promote(score())  # type: ignore[arg-type]  # TaskFlow passes the XCom at run time


def _importable(root: str) -> None:
    import sys

    if root not in sys.path:  # jobs/ lives beside the alertlake package
        sys.path.insert(0, root)


alertlake_model_promotion()
