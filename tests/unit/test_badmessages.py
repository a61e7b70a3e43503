"""Every class of bad message, for every survey and sample version, is rejected with its own reason."""

from __future__ import annotations

import pytest

from alertlake.surveys import get_survey
from alertlake.surveys.badmessages import KINDS, bad_messages
from alertlake.surveys.errors import REASONS, BadMessage, MessageContext
from alertlake.surveys.samples import sample_messages


def _one_per_version(survey: str) -> list[tuple[str, bytes]]:
    seen: dict[str, bytes] = {}
    for sample in sample_messages(survey, real_only=True):
        seen.setdefault(sample.version, sample.message)
    return sorted(seen.items())


CASES = [(survey, version, message) for survey in ("ztf", "lsst") for version, message in _one_per_version(survey)]


@pytest.mark.parametrize(("survey", "version", "good"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_bad_class_is_rejected_with_its_reason(survey: str, version: str, good: bytes) -> None:
    impl = get_survey(survey)
    samples = bad_messages(survey, good)
    assert [s.kind for s in samples] == list(KINDS)
    context = MessageContext(topic=survey, partition=3, offset=1234)
    for sample in samples:
        assert sample.reason in REASONS
        if sample.detected_downstream:
            # the decoder accepts it; the lake sees the same alert id twice
            ((alert, _),) = impl.read(sample.message, context)
            assert impl.alert_id(alert.record) == impl.alert_id(impl.decode(good))
            continue
        with pytest.raises(BadMessage) as info:
            impl.read(sample.message, context)
        error = info.value
        assert error.reason == sample.reason, (sample.kind, str(error))
        text = str(error)
        assert f"{survey} message topic '{survey}' partition 3 offset 1234" in text  # which message
        assert f"[{sample.reason}]" in text
        assert len(error.detail) > 15  # what is wrong, in words


def test_problem_is_named() -> None:
    good = _one_per_version("ztf")[0][1]
    by_kind = {s.kind: s for s in bad_messages("ztf", good)}
    ztf = get_survey("ztf")
    with pytest.raises(BadMessage, match=r"schema version '9\.99' is not supported"):
        ztf.read(by_kind["unknown_schema"].message)
    with pytest.raises(BadMessage, match=r"'candidate\.ra' is absent"):
        ztf.read(by_kind["missing_field"].message)
    with pytest.raises(BadMessage, match=r"'lsst\.v\d+_\d+\.alert' records, not 'ztf\.alert'"):
        ztf.read(by_kind["wrong_schema"].message)


def test_oversize_limit_is_configurable() -> None:
    good = _one_per_version("lsst")[0][1]
    oversize = next(s for s in bad_messages("lsst", good, max_bytes=100_000) if s.kind == "oversize")
    assert 100_000 < len(oversize.message) < 200_000
    lsst = get_survey("lsst")
    with pytest.raises(BadMessage, match="over the 100,000-byte limit"):
        lsst.read(oversize.message, max_bytes=100_000)
    assert lsst.read(oversize.message, max_bytes=None)  # well-formed otherwise


def test_generation_is_deterministic() -> None:
    good = _one_per_version("ztf")[-1][1]
    first = [s.message for s in bad_messages("ztf", good, seed=7)]
    assert first == [s.message for s in bad_messages("ztf", good, seed=7)]
