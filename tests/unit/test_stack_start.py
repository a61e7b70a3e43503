"""``infra/stack.py up`` launches every service before waiting for any, and never leaves one launched unwaited."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertlake.settings import Settings
from infra.stack import Service, StackError, start_all


def _service(name: str, events: list[str], fail_prepare: bool = False) -> Service:
    def prepare() -> None:
        events.append(f"prepare {name}")
        if fail_prepare:
            raise StackError(f"{name}: cannot prepare")

    def healthy() -> bool:
        events.append(f"health {name}")
        return True

    return Service(
        name,
        f"test://{name}",
        [],
        lambda: [],
        healthy,
        prepare,
        configure=lambda: events.append(f"configure {name}"),
    )


def test_every_service_is_launched_before_any_is_waited_for(tmp_path: Path) -> None:
    events: list[str] = []
    start_all(Settings(state_dir=tmp_path), [_service("a", events), _service("b", events)])
    assert events == ["prepare a", "prepare b", "health a", "configure a", "health b", "configure b"]


def test_a_launch_failure_still_waits_for_and_configures_those_launched(tmp_path: Path) -> None:
    events: list[str] = []
    with pytest.raises(StackError, match="b: cannot prepare"):
        start_all(Settings(state_dir=tmp_path), [_service("a", events), _service("b", events, fail_prepare=True)])
    assert events == ["prepare a", "prepare b", "health a", "configure a"]
