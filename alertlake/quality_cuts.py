"""Quality cuts: per-survey conditions an alert must meet before the science is trusted, with the reason it failed.

Every silver row gets ``quality_pass`` (bool) and ``quality_reason`` (the failed cuts' names joined by ``;``,
empty when the alert passed). Cuts flag, they never drop: the row stays in silver for audits and replays.

The cuts read canonical columns only (nothing outside ``alertlake.surveys`` knows a survey's field names).

Defaults
--------
ZTF, after Fink (fink-broker keeps an alert when ``candidate.rb >= 0.55`` and ``candidate.nbad == 0``):

* ``reliability >= 0.55``: canonical ``reliability`` is ZTF ``drb`` when the alert has it (schema >= 3.3) and
  ``rb`` before. Fink's threshold is on ``rb``; on the fink parquet files of the shared sample (284 distinct
  ZTF alerts) drb >= 0.55 keeps 92 % and rb >= 0.55 keeps 89 %, so the cut is comparably strict. A null
  reliability fails.
* ``bad_pixel_flag == False`` (ZTF ``nbad > 0``; Rubin pixel/flux flags): applied when the canonical column is
  present; until the survey mappings provide it a missing column passes (see ``if_missing``).

Optional ZTF cuts (ZTF's own recommended set, off by default because Fink's published cuts don't use them):
``fwhm <= 5 px``, ``elong <= 1.2``, ``|magdiff| <= 0.1`` need canonical columns that don't exist yet.

Rubin: ``reliability >= 0.5`` (Rubin's reliability is a calibrated probability that the source is real, so 0.5
is "more likely real than not"; a null passes because schemas before v5 don't carry it) and no bad-pixel flag.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Op = Literal[">=", "<=", ">", "<", "==", "!=", "abs<="]

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
    "abs<=": lambda a, v: np.abs(a) <= v,
}


class Cut(BaseModel):
    """One condition ``<column> <op> <value>`` an alert must meet; what happens when the value is null or absent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    op: Op
    value: float | bool
    #: ``fail`` (default): a null value or an absent column fails the cut; ``pass``: it passes.
    if_missing: Literal["fail", "pass"] = "fail"

    @property
    def name(self) -> str:
        """How the cut appears in ``quality_reason``, e.g. ``reliability>=0.55``."""
        value = str(self.value).lower() if isinstance(self.value, bool) else f"{self.value:g}"
        return f"{self.column}{self.op}{value}"

    def passes(self, alerts: pd.DataFrame) -> np.ndarray:
        """Boolean array: which rows of ``alerts`` meet the cut."""
        if self.column not in alerts.columns:
            return np.full(len(alerts), self.if_missing == "pass")
        series = alerts[self.column]
        missing = series.isna().to_numpy()
        if isinstance(self.value, bool):
            values = series.fillna(not self.value).astype(bool).to_numpy()
            ok = _OPS[self.op](values, self.value)
        else:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                ok = _OPS[self.op](values, float(self.value))
        return np.where(missing, self.if_missing == "pass", ok).astype(bool)


class QualityCuts(BaseModel):
    """The cuts of every survey (by canonical ``survey`` value). A survey without an entry fails every alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    surveys: dict[str, list[Cut]] = Field(
        default_factory=lambda: {
            "ztf": [
                Cut(column="reliability", op=">=", value=0.55),
                Cut(column="bad_pixel_flag", op="==", value=False, if_missing="pass"),
            ],
            "lsst": [
                Cut(column="reliability", op=">=", value=0.5, if_missing="pass"),
                Cut(column="bad_pixel_flag", op="==", value=False, if_missing="pass"),
            ],
        }
    )


QUALITY_COLUMNS: dict[str, str] = {"quality_pass": "boolean", "quality_reason": "string"}


def quality_cuts(alerts: pd.DataFrame, config: QualityCuts | None = None) -> pd.DataFrame:
    """Return ``quality_pass`` and ``quality_reason`` for each row of canonical ``alerts`` (same index)."""
    config = config or QualityCuts()
    n = len(alerts)
    passed = np.ones(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    surveys = alerts["survey"].to_numpy(dtype=object) if "survey" in alerts.columns else np.full(n, None)
    known = np.zeros(n, dtype=bool)
    for survey, cuts in config.surveys.items():
        rows = surveys == survey
        if not rows.any():
            continue
        known |= rows
        subset = alerts.loc[rows]
        failed_names = np.full(int(rows.sum()), "", dtype=object)
        for cut in cuts:
            if cut.column not in alerts.columns and cut.if_missing == "pass":
                log.debug("quality cut %s skipped for %s: no column %r", cut.name, survey, cut.column)
            bad = ~cut.passes(subset)
            failed_names[bad] = failed_names[bad] + np.where(failed_names[bad] == "", "", ";") + cut.name
        reasons[rows] = failed_names
        passed[rows] = failed_names == ""
    unknown = ~known
    if unknown.any():
        passed[unknown] = False
        reasons[unknown] = [f"no_quality_cuts_for_survey:{s}" for s in surveys[unknown]]
    return pd.DataFrame({"quality_pass": passed, "quality_reason": reasons}, index=alerts.index)


def apply_quality_cuts(alerts: pd.DataFrame, config: QualityCuts | None = None) -> pd.DataFrame:
    """``alerts`` with the quality columns added (replaced if present)."""
    flags = quality_cuts(alerts, config)
    return alerts.drop(columns=[c for c in QUALITY_COLUMNS if c in alerts.columns]).join(flags)
