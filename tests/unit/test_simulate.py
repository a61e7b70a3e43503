"""The simulator's stream, without Kafka: fast remapping equals remap + encode, ids unique across loops."""

from __future__ import annotations

import pytest

from alertlake.simulate import Source, load_sources, messages, with_remapper
from alertlake.surveys import copied_id, get_survey
from alertlake.surveys.samples import sample_messages

ZTF = get_survey("ztf")
SAMPLES = sample_messages("ztf")
VERSIONS = sorted({s.version for s in SAMPLES}, key=lambda v: tuple(map(int, v.split("."))))


@pytest.mark.parametrize("version", VERSIONS)
def test_ztf_remapper_equals_remap_and_encode(version: str) -> None:
    for sample in sample_messages("ztf", version):
        alert = ZTF.decode_alerts(sample.message)[0]
        fast = ZTF.remapper(alert, sample.message)
        assert fast is not None, sample.path
        for copy, shift in [(0, 0.0), (1, 0.0), (0, 12.0), (7, -400.5), (123_456, 3.0)]:
            message, object_id, alert_id = fast(copy, shift)
            expected = ZTF.remap(alert.record, copy, shift)
            assert ZTF.decode(message) == expected, (sample.path, copy, shift)
            assert object_id == ZTF.object_id(expected) and alert_id == ZTF.alert_id(expected)
            assert ZTF.detect_version(message) == version
        assert fast(0, 0.0)[0] == sample.message  # copy 0, no shift: the message as it was


def test_remapper_also_serves_alerts_without_cutouts() -> None:
    alert = ZTF.decode_alerts(SAMPLES[0].message)[0]
    record = ZTF.without_cutouts(alert.record)
    message = ZTF.encode(record, alert.schema_version)
    fast = ZTF.remapper(alert._replace(record=record), message)
    assert fast is not None
    assert ZTF.decode(fast(4, 1.0)[0]) == ZTF.remap(record, 4, 1.0)


def test_stream_with_and_without_fast_path_is_the_same() -> None:
    sources = load_sources(ZTF)[:20]
    fast_sources = [with_remapper(ZTF, s) for s in sources]
    assert all(s.remapper is not None for s in fast_sources)
    slow = list(messages(ZTF, sources, loops=3, night="2026-11-24"))
    fast = list(messages(ZTF, fast_sources, loops=3, night="2026-11-24"))
    assert len(slow) == len(fast) == 60
    for (key, value, _, alert_id), (fkey, fvalue, _, falert_id) in zip(slow, fast, strict=True):
        assert (key, alert_id) == (fkey, falert_id)
        assert ZTF.decode(value) == ZTF.decode(fvalue)


def test_sources_without_a_fast_path_still_stream() -> None:
    (source,) = load_sources(ZTF)[:1]
    plain = Source(source.alert, source.message, source.night)
    ((key, value, _, alert_id),) = list(messages(ZTF, [plain], loops=2, first_copy=1, limit=1))
    assert key == f"{ZTF.object_id(source.alert.record)}_1".encode()
    assert alert_id == copied_id(ZTF.alert_id(source.alert.record), 1)
    assert ZTF.decode(value)["candid"] == alert_id


def test_copies_skip_a_repeated_sample_id() -> None:
    sources = load_sources(ZTF)
    ids = [ZTF.alert_id(s.alert.record) for s in sources]
    assert len(ids) == 233 and len(set(ids)) == 232  # the example packet, in schema 3.2 and 3.3
    copy0 = [alert_id for _, _, _, alert_id in messages(ZTF, sources, loops=1)]
    assert copy0 == ids  # the samples as they are
    copy1 = [alert_id for _, _, _, alert_id in messages(ZTF, sources, loops=1, first_copy=1)]
    assert len(copy1) == len(set(copy1)) == 232


def test_a_million_alert_ids_from_the_samples_are_unique() -> None:
    """What ``alertlake simulate --first-copy 1 --loops 4311`` sends: 232 distinct ids per copy, all distinct."""
    candids = sorted({ZTF.alert_id(ZTF.decode(s.message)) for s in SAMPLES})
    assert len(candids) == 232
    loops = -(-1_000_000 // len(candids))
    assert loops == 4311
    ids = {copied_id(candid, copy) for copy in range(1, loops + 1) for candid in candids}
    assert len(ids) == loops * len(candids) >= 1_000_000
    assert not ids & set(candids)  # nor any id of the samples themselves
    assert min(ids) > 0 and max(ids) < 2**63


def test_bad_mode_still_sends_every_bad_class_per_loop() -> None:
    from alertlake.surveys.badmessages import KINDS

    sources = [with_remapper(ZTF, s) for s in load_sources(ZTF)[:3]]
    stream = list(messages(ZTF, sources, loops=2, night="2026-11-24", bad=True, first_copy=1))
    bad = [sample.kind for _, _, sample, _ in stream if sample is not None]
    assert bad == list(KINDS) * 2
    assert sum(sample is None for _, _, sample, _ in stream) == 6
