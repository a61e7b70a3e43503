"""The filter registry and the six real filters, on the REAL shared alerts (silver-like rows built locally).

Each expected list was computed once with the filters below, reviewed alert by alert, and hard-coded with the
reason it belongs there, so a change in a filter, a module or the sample shows up as a diff here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from alertlake.filters import (
    FilterSet,
    check_sql_with_spark,
    evaluate,
    history_entries,
    load_filters,
    selected_ids,
    sql_flag_columns,
)
from tests.silver_sample import silver_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EXPECTED: dict[str, list[int]] = {
    "early_sn_candidate": [
        882463993115015007,  # ZTF18abxhyqv r: supernova score 0.60, first detected 3.0 d before
        885458643115015010,  # ZTF18abxhyqv r: score 0.82, 6.0 d old
        3086242756215015016,  # ZTF25aaugqpe g: score 0.53, 3.8 d old
        3086355716215015006,  # ZTF25aaugqpe r: score 0.57, 3.9 d old
        3086486331615015009,  # ZTF25aavcvel r: score 0.57, first detection tonight (0.0 d)
    ],
    "sn_candidate": [
        169813006111211588,  # Rubin diaObject 169747016382939373 i: score 0.55 (the only Rubin SN-like light curve)
        595213713515015023,  # ZTF18abeclfl g: score 0.83, 28 detections over 30 d
        882463993115015007,  # ZTF18abxhyqv r: 0.60 (also early)
        885458643115015010,  # ZTF18abxhyqv r: 0.82 (also early)
        1048197683315015009,  # ZTF19abvhduf g: 0.62 (Fink's simulator template, a known SN Ia)
        1309429734115015001,  # ZTF20abfcszi g: 0.52 (a TDE in fink-filters' test data: SN-like rise)
        1315423660815015003,  # ZTF20abfcszi r: 0.63
        1786119423415015015,  # ZTF18aavqlva g: 0.51
        1786330573515015010,  # ZTF21acobels r: 0.63
        1786383464615015013,  # ZTF21acobels g: 0.62
        3086242756215015016,  # ZTF25aaugqpe g: 0.53 (also early)
        3086355716215015006,  # ZTF25aaugqpe r: 0.57 (also early)
        3086486331615015009,  # ZTF25aavcvel r: 0.57 (also early)
        # not 595168702315015024 (score 0.65 but a VSX EW eclipsing binary) nor 516476001515015009 (fails quality)
    ],
    "solar_system": [
        169813007065940020,  # Rubin ssSource 21163633118754629, 0.07" from its ephemeris
        169813007065940057,  # Rubin ssSource 21163620284315971, 0.04"
        169813007083241522,  # Rubin ssSource 21163615805847120, 0.02"
        404105201415015005,  # ZTF (24421) Djorgovski at 5"
        404105691415015000,  # ZTF (69105) 2003 BR88 at 5"
        522193343215015000,  # ZTF 43769 at 4"
        1786106591315015003,  # ZTF 4371 at 0"
    ],
    "top_anomaly": [
        1786137545315010027,  # ZTF18abjuixy r: anomaly score 0.62 (negative detection of a 10-point light curve)
        1786552613115015005,  # ZTF20aawkwsc r: 0.66
        1786555203115015003,  # ZTF20aawkwsc r: 0.64 (same night, 4 min later)
        2650435343915015004,  # ZTF18adjefml g: 0.62 (VSX AM Her polar)
        2659397621715010015,  # ZTF19aauyntv r: 0.60
        3086242756215015016,  # ZTF25aaugqpe g: 0.62 (also an early SN candidate)
        3086486331615015009,  # ZTF25aavcvel r: 0.73, the highest score of the sample
        # not 595211876015015031 (score 0.61 but fails the quality cuts)
    ],
    "variable_star_brightening": [
        516442336115015015,  # ZTF18aarwwct g: VSX EW, flux >= 5 sigma above its earlier g median
        595250712715015022,  # ZTF18abjapcg r: VSX SR, earlier r detections were negative, now positive
        1391345455815015017,  # ZTF18acruwxq r: VSX SR (Ampel fixture: 3 alerts at one epoch, 2 selected)
        1391345455815015019,  # ZTF18acruwxq r: same epoch, other candid
        1786104122615015005,  # ZTF18abvhysb g: VSX HADS, 4 mag above its median
        1786130384315015004,  # ZTF18abhxigz r: VSX/GCVS EA/PN eclipsing binary out of eclipse
        1786131311615015001,  # ZTF19abxdvsa r: VSX/GCVS DSCT pulsator
        1786296972515015003,  # ZTF18abpoqfb g: GCVS BE star
        1786405200015015008,  # ZTF18aaadweo g: VSX DQ (intermediate polar) / GCVS XM, 0.8 mag brighter
        # not 1391345455815015018: same star and epoch, but its flux is within 5 sigma of the median
    ],
    "new_object": [
        404105201415015000,  # ZTF18aaawcpm: no earlier detection, 132 upper limits, recent ones deeper than 17.4
        595211874215015018,  # ZTF18abnvuas: first detection at g 19.08 after 40 deeper non-detections
        673285273115015035,  # ZTF18abxhyqv i: the first alert of this (later SN-like) object
        975188140015015050,  # ZTF19aardyqa  } 2019-09-03 alerts (fink-broker utest/online data) of new
        975188140015015066,  # ZTF19aardyqg  } sources at 13.5-15 mag with 9-21 deeper recent limits
        975188140015015162,  # ZTF19abvxxmn  }
        975188140215015028,  # ZTF19abjtxbd  }
        975188140215015086,  # ZTF18abctguy  }
        975188142015015183,  # ZTF19abjtvgd  }
        975188142015015195,  # ZTF19abvxsdv  }
        975188143515015117,  # ZTF19abbsjqp  }
        975188143615015115,  # ZTF19abvxuwi  }
        975188145915015001,  # ZTF19abvxwry  }
        975188145915015021,  # ZTF18abrhnwi  }
        975188145915015144,  # ZTF18abrnydj  }
        975188145915015164,  # ZTF18abrhmzs  }
        1786216730815015008,  # ZTF19aawtdog: first detection, 17 deeper upper limits
        1786216730815015018,  # ZTF18acuvzzx: same exposure, first detection
        3086208464615015024,  # ZTF25aauurnj: first alert of the object (later alerts have detections)
        # not the 8 schema-1.5 alerts with a known asteroid 6-7" away (e.g. 404105201415015001, (16460) 1989 YF1)
    ],
}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """A local Spark session (no services needed) to evaluate the SQL filters as the job does."""
    from alertlake.settings import Settings
    from alertlake.spark import build_spark

    session = build_spark(Settings(), "alertlake-filter-tests", {"spark.ui.enabled": "false"})
    yield session


@pytest.fixture(scope="module")
def evaluated(spark: SparkSession) -> tuple[FilterSet, pd.DataFrame]:
    """The real filters, and the sample silver rows with the SQL filters' flags computed by Spark."""
    silver = silver_spark(spark)
    filters = check_sql_with_spark(spark, load_filters(), silver.schema)
    return filters, silver.select("*", *sql_flag_columns(filters)).toPandas()


def test_all_real_filters_load() -> None:
    filters = load_filters()
    assert filters.rejected == {}
    assert sorted(filters.filters) == sorted(EXPECTED)
    assert {f.kind for f in filters} == {"sql", "python"}
    assert filters["solar_system"].topic("ztf") == "alertlake.ztf.solar_system"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_filter_selects_expected_alerts(name: str, evaluated: tuple[FilterSet, pd.DataFrame]) -> None:
    filters, frame = evaluated
    assert selected_ids([filters[name]], frame)[name] == sorted(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_filter_selects_the_same_from_the_distribution_jobs_arrow_frame(
    name: str, spark: SparkSession, evaluated: tuple[FilterSet, pd.DataFrame]
) -> None:
    """The job hands filters its batch with ``history`` Arrow-backed (never turned into Python objects):
    every filter must select exactly what it selects from plain pandas rows."""
    from jobs.distribute import filter_frame

    filters, _ = evaluated
    table = silver_spark(spark).select("*", *sql_flag_columns(filters)).toArrow()
    frame = filter_frame(table, filters)
    if filters[name].sql is None and "history" in filters[name].read_columns():
        assert isinstance(frame["history"].dtype, pd.ArrowDtype)
    picked = evaluate([filters[name]], frame)[name]
    assert sorted(table.column("alert_id").to_numpy()[picked].tolist()) == sorted(EXPECTED[name])


def test_history_entries_flattens_both_containers() -> None:
    frame = pd.DataFrame(
        {
            "history": [
                [{"kind": "detection", "mjd": 1.0}, {"kind": "upper_limit", "mjd": None}],
                None,
                [],
                [{"kind": "upper_limit", "mjd": 3.0}],
            ]
        }
    )
    arrow = frame.assign(history=pd.arrays.ArrowExtensionArray(pa.array(frame["history"].tolist())))
    assert isinstance(arrow["history"].dtype, pd.ArrowDtype)
    for history in (history_entries(frame), history_entries(arrow)):
        assert history.row.tolist() == [0, 0, 3]
        assert history.field("kind").tolist() == ["detection", "upper_limit", "upper_limit"]
        mjd = history.field("mjd")
        assert mjd[0] == 1.0 and np.isnan(mjd[1]) and mjd[2] == 3.0
        assert history.per_row(history.field("kind") == "upper_limit", 4).tolist() == [1, 0, 0, 1]
    empty = history_entries(pd.DataFrame({"history": [[], None]}))
    assert empty.per_row(empty.field("kind") == "detection", 2).tolist() == [0, 0]


def test_filter_respects_its_surveys(evaluated: tuple[FilterSet, pd.DataFrame]) -> None:
    from dataclasses import replace

    filters, frame = evaluated
    ztf_only = replace(filters["solar_system"], surveys=("ztf",))
    hits = selected_ids([ztf_only], frame)["solar_system"]
    assert hits == [404105201415015005, 404105691415015000, 522193343215015000, 1786106591315015003]


GOOD = 'from alertlake.filters import Filter\nFILTER = Filter(name="{n}", description="d", sql="sso_flag")\n'
BAD_FILTERS = {
    "broken_syntax": ("from alertlake.filters import Filter\nFILTER = Filter(name=\n", "syntax error"),
    "unknown_sql_column": (
        'from alertlake.filters import Filter\nFILTER = Filter(name="unknown_sql_column", description="d", '
        'sql="supernova_scor > 0.5")\n',
        "unknown column(s) ['supernova_scor']",
    ),
    "unknown_declared_column": (
        'from alertlake.filters import Filter\nFILTER = Filter(name="unknown_declared_column", description="d", '
        'predicate=lambda df: df["magg"] < 18, columns=("magg",))\n',
        "unknown column(s) ['magg']",
    ),
    "undeclared_column": (
        'from alertlake.filters import Filter\nFILTER = Filter(name="undeclared_column", description="d", '
        'predicate=lambda df: df["mag"] < 18, columns=("band",))\n',
        "predicate reads column 'mag'",
    ),
    "wrong_name": (GOOD.format(n="other_name"), "must equal its file name"),
}


def test_malformed_filters_are_rejected_and_others_load(tmp_path: Path) -> None:
    for name, (code, _) in BAD_FILTERS.items():
        (tmp_path / f"{name}.py").write_text(code)
    (tmp_path / "fine.py").write_text(GOOD.format(n="fine"))
    loaded = load_filters(tmp_path)
    assert list(loaded.filters) == ["fine"]
    assert sorted(loaded.rejected) == sorted(BAD_FILTERS)
    for name, (_, problem) in BAD_FILTERS.items():
        assert problem in loaded.rejected[name], loaded.rejected[name]
        assert name in loaded.rejected[name] or str(tmp_path / name) in loaded.rejected[name]


def test_spark_rejects_a_bad_sql_expression(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "bad_type.py").write_text(
        'from alertlake.filters import Filter\nFILTER = Filter(name="bad_type", description="d", '
        'sql="sso_flag AND mag >>> 3")\n'
    )
    (tmp_path / "fine.py").write_text(GOOD.format(n="fine"))
    filters = check_sql_with_spark(spark, load_filters(tmp_path), silver_spark(spark).schema)
    assert list(filters.filters) == ["fine"]
    assert "filter 'bad_type': Spark rejects SQL expression" in filters.rejected["bad_type"]


def test_a_filter_crashing_on_a_batch_selects_nothing_and_others_run(
    evaluated: tuple[FilterSet, pd.DataFrame],
) -> None:
    from alertlake.filters import Filter

    filters, frame = evaluated

    def crash(df: pd.DataFrame) -> pd.Series:
        raise ZeroDivisionError("boom")

    bad = Filter(name="crash", description="d", predicate=crash, columns=("mag",))
    hits = selected_ids([bad, filters["solar_system"]], frame)
    assert hits["crash"] == []
    assert hits["solar_system"] == sorted(EXPECTED["solar_system"])
