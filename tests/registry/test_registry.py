"""Promotion, rollback, canary and their history; gate and override; conflicts; corrupt versions; crashes."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from registry.errors import (
    Conflict,
    GateFailed,
    InvalidRequest,
    NothingToRollBack,
    NotPromotable,
    UnknownVersion,
)
from registry.registry import Registry, read_canary_share
from registry.versions import ModelDirectory, ModelVersion

PASSING = {
    "evaluation": {
        "candidate": {"similarity": 0.6, "citation_correct": 0.5, "refusal_rate_unanswerable": 0.5},
        "champion": {"similarity": 0.6, "citation_correct": 0.5, "refusal_rate_unanswerable": 0.5},
        "reward_win_rate": 0.7,
        "length_drift": 0.1,
    },
    "policy": {"kl_to_champion": 2.0},
}
FAILING = {**PASSING, "policy": {"kl_to_champion": 99.0}}


def add_version(root: Path, version_id: str, report: dict[str, Any], *, adapter: bool = True) -> None:
    folder = root / "versions" / version_id
    (folder / "adapter").mkdir(parents=True)
    if adapter:
        (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "training.json").write_text(json.dumps({"run": "r", "report": report}))
    ModelDirectory(root).add(ModelVersion(id=version_id, base="base", adapter="adapter", parent="v0001"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    ModelDirectory(root).ensure_base("base")
    add_version(root, "v0002", PASSING)
    add_version(root, "v0003", FAILING)
    return root


def served(root: Path) -> dict[str, str]:
    return json.loads((root / "aliases.json").read_text())


def test_promote_and_rollback_keep_a_full_history(root: Path) -> None:
    registry = Registry(root)
    assert registry.aliases() == {"champion": "v0001"}  # adopted from what the service wrote
    event = registry.promote("v0002", actor="ana", reason="wins side by side")
    assert (event.from_version, event.to_version, event.actor) == ("v0001", "v0002", "ana")
    assert served(root)["champion"] == "v0002"
    back = registry.rollback(actor="bo", reason="thumbs down rose")
    assert (back.from_version, back.to_version, back.action) == ("v0002", "v0001", "rollback")
    assert served(root)["champion"] == "v0001"
    actions = [(e.action, e.actor, e.reason) for e in registry.history("champion")]
    assert actions == [
        ("rollback", "bo", "thumbs down rose"),
        ("promote", "ana", "wins side by side"),
        ("adopt", "system", "adopted from aliases.json"),
    ]
    with pytest.raises(NothingToRollBack):
        registry.rollback(actor="bo", reason="again")


def test_a_failed_gate_needs_an_override_which_is_recorded(root: Path) -> None:
    registry = Registry(root)
    with pytest.raises(GateFailed, match="kl"):
        registry.promote("v0003", actor="ana", reason="looks fine")
    assert served(root)["champion"] == "v0001"
    event = registry.promote("v0003", actor="ana", reason="known KL, accepted", override=True)
    assert event.override and event.detail["gate"]["passed"] is False
    assert registry.history("champion")[0].override


def test_bad_input_is_refused_clearly(root: Path) -> None:
    registry = Registry(root)
    with pytest.raises(UnknownVersion, match="v0099"):
        registry.promote("v0099", actor="ana", reason="x")
    with pytest.raises(InvalidRequest, match="reason"):
        registry.promote("v0002", actor="ana", reason=" ")
    with pytest.raises(InvalidRequest, match="already the champion"):
        registry.promote("v0001", actor="ana", reason="x")
    with pytest.raises(InvalidRequest, match="between 0 and 1"):
        registry.set_canary("v0002", 1.5, actor="ana", reason="x")


def test_a_corrupt_or_unloadable_version_never_becomes_champion(root: Path) -> None:
    add_version(root, "v0004", PASSING, adapter=False)  # adapter folder without its files
    registry = Registry(root)
    with pytest.raises(NotPromotable, match="no adapter"):
        registry.promote("v0004", actor="ana", reason="x")

    def broken(version: ModelVersion) -> None:
        raise RuntimeError("size mismatch for lora_A")

    with pytest.raises(NotPromotable, match="smoke test"):
        registry.promote("v0002", actor="ana", reason="x", smoke=broken)
    with pytest.raises(NotPromotable):
        registry.set_canary("v0002", 0.1, actor="ana", reason="x", smoke=broken)
    assert served(root) == {"champion": "v0001"}
    assert [e.action for e in registry.history()] == ["adopt"]


def test_two_operators_promoting_at_once_one_wins(root: Path) -> None:
    barrier = threading.Barrier(2, timeout=60)  # a thread that dies early fails the test, never hangs it
    outcomes: dict[str, str] = {}

    def promote(version: str) -> None:
        try:
            registry = Registry(root)  # two first opens at once: both switch the new file to WAL
            expected = registry.aliases()["champion"]  # both read v0001 before either writes
            barrier.wait()
        except BaseException as exc:
            barrier.abort()
            outcomes[version] = f"error: {exc!r}"
            return
        try:
            registry.promote(version, actor=version, reason="race", override=True, expected_champion=expected)
            outcomes[version] = "won"
        except Conflict:
            outcomes[version] = "conflict"

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("v0002", "v0003")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["conflict", "won"]
    winner = next(v for v, o in outcomes.items() if o == "won")
    registry = Registry(root)
    assert registry.aliases()["champion"] == winner == served(root)["champion"]
    promotions = [e for e in registry.history("champion") if e.action == "promote"]
    assert len(promotions) == 1 and promotions[0].from_version == "v0001"


def test_a_crash_mid_promotion_leaves_the_previous_champion_serving(root: Path, monkeypatch) -> None:
    registry = Registry(root)

    def crash() -> None:
        raise OSError("killed before the mirror was written")

    monkeypatch.setattr(registry, "_mirror", crash)
    with pytest.raises(OSError):
        registry.promote("v0002", actor="ana", reason="x")
    assert served(root)["champion"] == "v0001"  # the service still serves the previous champion
    monkeypatch.undo()
    reopened = Registry(root)  # what the next start does: the committed promotion takes effect whole
    assert reopened.aliases()["champion"] == "v0002" == served(root)["champion"]


def test_canary_share_and_promotion_clears_roles(root: Path) -> None:
    registry = Registry(root)
    registry.set_candidate("v0002", actor="trainer", reason="trained")
    registry.set_canary("v0002", 0.25, actor="ana", reason="try it")
    assert registry.canary_share() == 0.25 and served(root)["canary"] == "v0002"
    with pytest.raises(InvalidRequest, match="champion"):
        registry.set_canary("v0001", 0.1, actor="ana", reason="x")
    registry.promote("v0002", actor="ana", reason="canary won")
    assert registry.aliases() == {"champion": "v0002"}
    registry.set_canary("v0003", 0.1, actor="ana", reason="next")
    registry.set_canary(None, 0.0, actor="ana", reason="stop")
    assert "canary" not in registry.aliases() and registry.canary_share() == 0.0


def test_the_services_canary_share_reader_reads_the_registry_without_writing(root: Path) -> None:
    db = root / "registry.db"
    assert read_canary_share(root) == 0.0 and not db.exists()  # no registry yet: nothing is created
    registry = Registry(root)
    assert read_canary_share(root) == 0.0  # a registry without a canary
    registry.set_canary("v0002", 0.25, actor="ana", reason="try it")
    assert read_canary_share(root) == 0.25 == registry.canary_share()
    registry.set_canary(None, 0.0, actor="ana", reason="stop")
    assert read_canary_share(root) == 0.0


def test_the_canary_share_reader_falls_back_to_zero_on_an_unreadable_registry(tmp_path: Path) -> None:
    (tmp_path / "registry.db").write_bytes(b"not a database, " * 64)
    assert read_canary_share(tmp_path) == 0.0
    (tmp_path / "registry.db").unlink()
    sqlite3.connect(tmp_path / "registry.db").close()  # an empty SQLite file: no table yet
    assert read_canary_share(tmp_path) == 0.0
