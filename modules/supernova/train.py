"""Train the supernova classifier: supernova versus variable star / AGN, from light-curve features.

Reproducible: fixed data (the fink ZTF parquet files of the shared sample, whose alert content goes through
the ZTF survey mapping like any alert), fixed seed, deterministic model. Run as a script it logs one MLflow
run (experiment ``alertlake-training``) with the data reference (files and sha256), parameters,
cross-validated metrics and the fitted scikit-learn model::

    .venv/bin/python -m modules.supernova.train

Labels come from what Fink attached to these alerts, never from Fink's own classifiers:

* supernova (1): a spectroscopic TNS class ``SN*`` or ``SLSN*`` (``tnsclass``, or a ``(TNS) SN...``
  cross-match), or a SIMBAD supernova (``Supernova``, ``SN``, ``Candidate_SN*``);
* other (0): a SIMBAD class of a star, variable star, YSO or AGN/QSO (``cdsxmatch``);
* unlabelled (dropped): ``Unknown``, ``Fail``, galaxies (host or nucleus: ambiguous), other TNS transients,
  and Fink's own candidate labels.

The sample is tiny (a few hundred alerts, ~170 objects): the metrics are out-of-fold estimates over folds
grouped by object (no object in both train and test) and have large uncertainties. Treat the model as a
demonstration of the pipeline, not as a science-grade classifier.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from alertlake.surveys import DecodedAlert, get_survey
from alertlake.surveys.samples import shared_data_dir

#: The labelled data: fink's ZTF parquet files (under the shared data folder) that carry labels.
DATA_GLOB = "ztf/parquet/*.parquet"
LABEL_COLUMNS = ("tnsclass", "cdsxmatch")
TRAINING_EXPERIMENT = "alertlake-training"

_SN = re.compile(r"^\(TNS\) (SN|SLSN)(?!.*Impostor)|^(\(SIMBAD\) )?(Supernova|SN|Candidate_SN\*|Supernova_Candidate)$")
# Not a label: no answer, a galaxy (host or nucleus), another TNS transient, or a transient *candidate*
# (Fink's own "SN candidate" etc.). SIMBAD candidates of stellar classes (YSO_Candidate, ...) stay "other".
_UNLABELLED = re.compile(
    r"^(Unknown|Fail.*|Inexistent|Transient|\(TNS\) .*|(\(SIMBAD\) )?Galaxy)$"
    r"|(SN|[Nn]ova).*[Cc]andidate|[Cc]andidate_(SN|Nova)"
)


@dataclass
class TrainingParams:
    """Model and evaluation settings (logged as run parameters)."""

    n_estimators: int = 300
    max_depth: int = 6
    min_samples_leaf: int = 2
    class_weight: str = "balanced"
    cv_folds: int = 5
    seed: int = 42
    threshold: float = 0.5

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict."""
        return dict(self.__dict__)


@dataclass
class TrainingResult:
    """The fitted model, its feature columns, out-of-fold metrics and the data reference."""

    model: RandomForestClassifier
    feature_columns: list[str]
    metrics: dict[str, float]
    data: list[dict[str, str]] = field(default_factory=list)


def label(tnsclass: str | None, cdsxmatch: str | None) -> int | None:
    """1 for a supernova, 0 for a star / variable / YSO / AGN, None when the labels say neither."""
    if any(value and _SN.search(value) for value in (tnsclass, cdsxmatch)):
        return 1
    if not cdsxmatch or _UNLABELLED.search(cdsxmatch):
        return None
    return 0


def load_labelled(root: Path | None = None) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, str]]]:
    """Canonical rows of the labelled alerts (one per alert id), their labels, and the files read (sha256)."""
    root = root or shared_data_dir()
    ztf = get_survey("ztf")
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    data: list[dict[str, str]] = []
    seen: set[int] = set()
    for path in sorted(root.glob(DATA_GLOB)):
        names = pq.read_schema(path).names
        if not any(c in names for c in LABEL_COLUMNS):
            continue
        data.append({"path": str(path.relative_to(root)), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
        wanted = [
            c for c in ("schemavsn", "objectId", "candid", "candidate", "prv_candidates", *LABEL_COLUMNS) if c in names
        ]
        for record in pq.read_table(path, columns=wanted).to_pylist():
            y = label(record.get("tnsclass"), record.get("cdsxmatch"))
            if y is None or record["candid"] in seen:
                continue
            seen.add(record["candid"])
            rows.append(ztf.to_canonical_row(DecodedAlert(record, record["schemavsn"])))
            labels.append(y)
    return pd.DataFrame(rows), np.asarray(labels, dtype=np.int64), data


def features_of(alerts: pd.DataFrame) -> pd.DataFrame:
    """The classifier's inputs: the features module's outputs."""
    from modules.features.module import FeaturesModule

    return FeaturesModule().predict(alerts).astype(float)


def make_model(params: TrainingParams) -> RandomForestClassifier:
    """The untrained model (random forests accept missing features natively)."""
    return RandomForestClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf,
        class_weight=params.class_weight,
        random_state=params.seed,
        n_jobs=1,
    )


def fit(params: TrainingParams | None = None, root: Path | None = None) -> TrainingResult:
    """Load the labelled sample, estimate metrics out-of-fold (folds grouped by object), fit on everything."""
    params = params or TrainingParams()
    alerts, y, data = load_labelled(root)
    x = features_of(alerts)
    groups = alerts["object_id"].to_numpy()
    oof = np.full(len(y), np.nan)
    folds = StratifiedGroupKFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    for train_idx, test_idx in folds.split(x, y, groups):
        model = make_model(params).fit(x.iloc[train_idx], y[train_idx])
        oof[test_idx] = model.predict_proba(x.iloc[test_idx])[:, 1]
    predicted = (oof >= params.threshold).astype(int)
    metrics = {
        "n_alerts": float(len(y)),
        "n_objects": float(len(set(groups))),
        "n_supernova": float(y.sum()),
        "n_other": float(len(y) - y.sum()),
        "cv_roc_auc": float(roc_auc_score(y, oof)),
        "cv_accuracy": float(accuracy_score(y, predicted)),
        "cv_precision": float(precision_score(y, predicted, zero_division=0)),
        "cv_recall": float(recall_score(y, predicted, zero_division=0)),
        "cv_f1": float(f1_score(y, predicted, zero_division=0)),
    }
    model = make_model(params).fit(x, y)
    return TrainingResult(model=model, feature_columns=list(x.columns), metrics=metrics, data=data)


def main() -> int:
    """Train and log one MLflow run: data reference, parameters, metrics, model."""
    import mlflow
    import mlflow.sklearn

    from alertlake.modules import require_mlflow

    uri = require_mlflow()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(TRAINING_EXPERIMENT)
    params = TrainingParams()
    result = fit(params)
    with mlflow.start_run(run_name="supernova-train") as run:
        mlflow.log_params(params.as_dict())
        mlflow.log_param("features", ",".join(result.feature_columns))
        mlflow.log_metrics(result.metrics)
        mlflow.set_tag("alertlake.data", json.dumps(result.data))
        mlflow.log_dict({"files": result.data, "glob": DATA_GLOB}, "data_reference.json")
        # The tree nodes are our own freshly trained model, not an untrusted file.
        mlflow.sklearn.log_model(
            result.model,
            name="model",
            pip_requirements=["scikit-learn"],
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    print(json.dumps({"run_id": run.info.run_id, **result.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
