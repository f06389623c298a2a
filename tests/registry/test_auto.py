"""The background trainer's automatic rules against a real store and registry."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from feedback.store import Store
from feedback.timestamps import utc_now
from registry.policy import apply_policies
from registry.registry import Registry
from registry.versions import ModelDirectory
from tests.feedback.factory import make_record
from tests.registry.test_registry import PASSING, add_version


def setup(tmp_path: Path, **overrides: object) -> tuple[Settings, Registry]:
    settings = Settings(data_dir=tmp_path / "var", **overrides)  # type: ignore[arg-type]
    ModelDirectory(settings.models_dir).ensure_base("base")
    add_version(settings.models_dir, "v0002", PASSING)
    return settings, Registry(settings.models_dir)


def answers(store: Store, version: str, n: int, up: int) -> None:
    for i in range(n):
        answer_id = f"{version}-{i}"
        store.record_answer(make_record(answer_id, model_version=version, created_at=utc_now()))
        store.vote(answer_id, f"user-{i}", "up" if i < up else "down")


def test_a_worse_champion_is_rolled_back_automatically(tmp_path: Path) -> None:
    settings, registry = setup(tmp_path, auto_rollback_min_votes=20, auto_rollback_margin=0.1)
    with Store(settings.database_path) as store:
        answers(store, "v0001", 40, up=32)  # 20% down
        registry.promote("v0002", actor="ana", reason="looked good")
        answers(store, "v0002", 10, up=5)
        assert apply_policies(settings) == ["rollback v0002: fewer than 20 votes on v0002 or v0001"]
        answers_more = [(f"v0002-x{i}", i) for i in range(20)]
        for answer_id, i in answers_more:
            store.record_answer(make_record(answer_id, model_version="v0002", created_at=utc_now()))
            store.vote(answer_id, f"user-{i}", "up" if i < 10 else "down")  # 15 of 30 down: 50%
    notes = apply_policies(settings)
    assert notes and notes[-1].startswith("rollback v0002: thumbs-down 50%")
    assert Registry(settings.models_dir).aliases()["champion"] == "v0001"
    event = Registry(settings.models_dir).history("champion", 1)[0]
    assert event.action == "rollback" and event.actor == "auto"


def test_a_canary_that_wins_is_promoted_automatically(tmp_path: Path) -> None:
    settings, registry = setup(
        tmp_path, auto_promote=True, auto_promote_min_comparisons=20, auto_rollback=False
    )
    registry.set_canary("v0002", 0.5, actor="ana", reason="try")
    with Store(settings.database_path) as store:
        for i in range(30):
            store.record_answer(make_record(f"l{i}", model_version="v0001", created_at=utc_now()))
            store.record_answer(make_record(f"r{i}", model_version="v0002", created_at=utc_now()))
            pair = store.create_comparison(f"user-{i}", f"l{i}", f"r{i}")
            store.choose(pair.comparison_id, f"user-{i}", "B" if i < 26 else "A")  # canary wins 26 of 30
    notes = apply_policies(settings)
    assert notes[0].startswith("promote v0002: v0002 wins 26-4")
    assert Registry(settings.models_dir).aliases() == {"champion": "v0002"}
