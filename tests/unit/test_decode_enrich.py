"""The real-time pipeline enriches each alert in its decoder's Python pass (``jobs.enrich.DecodeEnricher``): the
module columns must be those the enrichment job's own pass (``mapInArrow``) computes, and null for a bad message.
Real shared alerts, real modules (built locally, as an executor holds them once loaded), no Spark."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from alertlake import modules as registry
from alertlake.surveys.samples import sample_messages
from jobs import enrich
from jobs.ingest import decoded_struct, decoder


@pytest.fixture
def refs(monkeypatch: pytest.MonkeyPatch) -> tuple[enrich.ModuleRef, ...]:
    """features and sso as loaded versions (in the executor's cache), then a module made to fail."""
    out = []
    for name in ("features", "sso"):
        module = registry.get(name)().prepare()
        uri = f"models:/{name}/decode-enrich-test"
        monkeypatch.setitem(enrich._LOADED, uri, module)
        out.append(enrich.ModuleRef(name, 1, uri, dict(module.outputs)))
    anomaly = registry.get("anomaly")
    out.append(enrich.ModuleRef("anomaly", 1, "models:/anomaly/drill", dict(anomaly.outputs), fault_drill=True))
    return tuple(out)


def run(survey: str, messages: list[bytes], enricher: enrich.DecodeEnricher) -> pa.StructArray:
    n = len(messages)
    out = decoder(survey, None, enricher)(
        pa.array(messages, pa.binary()),
        pa.array(["t"] * n),
        pa.array([0] * n, pa.int32()),
        pa.array(list(range(n)), pa.int64()),
    )
    assert out.type == decoded_struct(enricher)
    return out


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_decoder_enriches_as_the_enrichment_job_does(survey: str, refs: tuple[enrich.ModuleRef, ...]) -> None:
    enricher = enrich.DecodeEnricher(refs)
    messages = [s.message for s in sample_messages(survey, real_only=True)]
    messages.insert(len(messages) // 2, b"not an alert")
    out = run(survey, messages, enricher)

    reasons = out.field("reason").to_pylist()
    enriched = out.field(enrich.ENRICHED)
    assert [r is not None for r in reasons].count(True) == 1
    assert enriched.is_valid().to_pylist() == [r is None for r in reasons]

    good = pa.array([r is None for r in reasons])
    canonical = out.field("canonical").filter(good)
    added = enrich.module_columns(refs)
    expected = enrich._enrich_batch(
        pa.RecordBatch.from_struct_array(canonical), enrich.loaded_modules(refs), added
    ).select(added.names)
    got = pa.RecordBatch.from_struct_array(enriched.filter(good))
    assert got.schema == added
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas())

    frame = got.to_pandas()
    assert frame["quality_pass"].notna().all()
    passed = frame["quality_pass"]
    assert passed.any()
    assert frame.loc[passed, "features_n_det"].notna().all()  # features ran on every alert past the cuts
    assert frame.loc[passed, "anomaly_error"].str.startswith("InjectedFault").all()  # a failure is per module
    assert frame.loc[~passed, "features_error"].isna().all()


def test_a_batch_of_bad_messages_has_no_enrichment(refs: tuple[enrich.ModuleRef, ...]) -> None:
    out = run("ztf", [b"", b"junk"], enrich.DecodeEnricher(refs))
    assert out.field(enrich.ENRICHED).null_count == 2
    assert out.field("reason").null_count == 0
