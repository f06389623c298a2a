"""`kbloop simulate`: the hidden preference and the employees by hand-worked examples, then the whole loop
(feedback through the API → reward model → PPO → candidate → gate → canary → held-out win rate →
promotion) for two rounds on a tiny model. A tiny random model does not learn: nothing here asserts
that the win rate goes up, only that every step ran and left its trace."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from feedback.stats import wilson_interval
from simulation.config import SimulationConfig, SimulationError
from simulation.employees import (
    ConciseCitedPreference,
    Employee,
    QuestionBank,
    ThoroughPreference,
    cited_reference,
    fact_recall,
    key_facts,
)
from simulation.report import summarize, write_results
from simulation.simulate import judge, simulate
from trainer.config import PPOConfig, RefreshConfig, RewardConfig
from trainer.errors import DataError
from trainer.prompts import GoldenItem
from trainer.refresh import RefreshConfigs

HR = GoldenItem(
    "a-001",
    "Where is the HR department in Boston?",
    "The Boston HR department is at 451 Congress Street, Suite 410. Email hr-boston@acme.example.",
    ("hr/offices.md",),
    True,
)

# the fixture corpus (tests/fixtures/corpus): questions whose answers the index holds
BANK = [
    GoldenItem("p-1", "How much does a parking permit cost per month?",
               "Parking permits cost 45 dollars per month.", ("policies/parking.md",), True),
    GoldenItem("p-2", "Where is the company garage?", "The garage is at 12 Harbor Street.",
               ("policies/parking.md",), True),
    GoldenItem("p-3", "Is charging an electric car free?", "Charging is free for the first four hours on P2.",
               ("policies/parking.md",), True),
    GoldenItem("l-1", "When is lunch served in the cafeteria?", "Lunch is served from 11:45 to 14:00.",
               ("lunch.txt",), True),
    GoldenItem("b-1", "What does a replacement badge cost?", "A replacement badge costs 15 dollars.",
               ("security.html",), True),
    GoldenItem("b-2", "How soon do I report a lost badge?", "Within 24 hours: email badges@example.test.",
               ("security.html",), True),
    GoldenItem("x-1", "What is the stock option vesting schedule?", "The knowledge base does not cover it.",
               (), False),
]  # fmt: skip


def test_key_facts_and_recall() -> None:
    facts = {"boston", "hr", "451", "congress", "street", "suite", "410", "hr-boston@acme.example"}
    assert key_facts(HR.answer) == facts
    assert fact_recall("Suite 410 at 451 Congress Street [1].", HR.answer) == 5 / 8
    assert fact_recall("4100, 14510 Congress", HR.answer) == 1 / 8  # numbers match whole
    assert fact_recall("anything", "no facts here.") == 0.0


def test_concise_cited_preference_by_hand() -> None:
    pref = ConciseCitedPreference()
    right = [{"source": "hr/offices.md"}]
    cited = "Suite 410 at 451 Congress Street [1]."
    # right source (1) + 2 × 5/8 of the facts, cited, short
    assert pref.score(HR.question, cited, right, HR) == pytest.approx(1 + 2 * 5 / 8)
    # the same without the [1] mark and from another document
    assert pref.score(HR.question, cited[:-5], [{"source": "x.md"}], HR) == pytest.approx(2 * 5 / 8 - 0.5)
    rambling = cited + " blah" * 70  # 77 words: 17 beyond 60
    assert pref.score(HR.question, rambling, right, HR) == pytest.approx(1 + 2 * 5 / 8 - 0.02 * 17)
    assert pref.reasons(HR.question, "I do not know.", [], HR) == ["wrong_source", "incomplete"]
    assert pref.reasons(HR.question, rambling, right, HR) == ["too_long"]


def test_corrections_cite_the_passage_from_the_reference_source() -> None:
    shown = [{"n": 1, "source": "it/vpn.md"}, {"n": 2, "source": "hr/offices.md"}]
    # the first sentence ends with a marker for passage 2, the first shown one from a golden source
    assert cited_reference(HR, shown) == (
        "The Boston HR department is at 451 Congress Street, Suite 410 [2]. Email hr-boston@acme.example."
    )
    assert cited_reference(HR, shown[:1]) == HR.answer  # its source was not shown: no marker
    assert ConciseCitedPreference().correction(HR, shown) == cited_reference(HR, shown)
    assert ThoroughPreference().correction(HR, shown) == HR.answer
    # the correction is what the taste scores high: right source, every fact, cited
    assert ConciseCitedPreference().score(HR.question, cited_reference(HR, shown), shown[1:], HR) == 3.0


def test_employees_vote_and_choose_by_the_preference() -> None:
    pref = ConciseCitedPreference()
    ann = Employee("ann", "t" * 32, bias=0.0)
    rng = random.Random(0)
    assert ann.thumbs(pref, 1.6, rng, noise=0.0) == "up"
    assert ann.thumbs(pref, 1.0, rng, noise=0.0) == "down"
    assert Employee("bob", "t" * 32, bias=0.5).thumbs(pref, 1.6, rng, noise=0.0) == "down"
    assert ann.choose(pref, 1.5, 0.9, rng, noise=0.0) == "A"
    assert ann.choose(pref, 0.9, 1.5, rng, noise=0.0) == "B"
    assert ann.choose(pref, 1.0, 1.03, rng, noise=0.0) == "tie"
    assert ann.choose(pref, 0.1, -0.4, rng, noise=0.0) == "both_bad"
    assert ann.choose(pref, 1.0, 1.0, rng, noise=9.0, same=True) == "tie"  # the same text: no noise
    assert ann.choose(pref, 0.0, 0.0, rng, noise=9.0, same=True) == "both_bad"
    # noise flips close calls only, and the same seed flips the same ones
    picks = [ann.choose(pref, 1.0, 0.9, random.Random(s), noise=0.05) for s in range(200)]
    assert 0.6 < picks.count("A") / 200 < 0.95 and "tie" in picks and "B" not in picks[:20]
    assert picks == [ann.choose(pref, 1.0, 0.9, random.Random(s), noise=0.05) for s in range(200)]


def test_question_bank_splits_by_question() -> None:
    bank = QuestionBank.split(BANK, train=4, heldout=2, seed=0)
    assert len(bank.train) == 4 and len(bank.heldout) == 2
    assert not {i.question for i in bank.train} & {i.question for i in bank.heldout}
    assert all(i.answerable for i in bank.train + bank.heldout)  # x-1 is never asked
    assert bank == QuestionBank.split(BANK, train=4, heldout=2, seed=0)
    assert len(QuestionBank.split(BANK, train=0, heldout=2, seed=1).train) == 4  # 0 = the rest
    with pytest.raises(DataError, match="held-out"):
        QuestionBank.split(BANK, train=0, heldout=6, seed=0)


@dataclass
class Shorter:
    """A preference a random tiny model can satisfy: fewer words is better (never both bad)."""

    name: str = "shorter"
    thumbs_up_above: float = -0.6
    both_bad_below: float = -100.0
    tie_within: float = 0.05

    def score(self, question: str, answer: str, citations: Any, item: GoldenItem) -> float:
        return -len(answer.split()) / 10

    def reasons(self, question: str, answer: str, citations: Any, item: GoldenItem) -> list[str]:
        return ["too_long"]

    def correction(self, item: GoldenItem, passages: Any) -> str:
        return cited_reference(item, passages)


def tiny_configs() -> RefreshConfigs:
    common: dict[str, Any] = {"device": "cpu", "batch_size": 4, "checkpoint_every": 1, "max_length": 256}
    return RefreshConfigs(
        refresh=RefreshConfig(min_pairs=4),
        reward=RewardConfig(epochs=1, **common),
        ppo=PPOConfig(iterations=2, rollout_batch=4, mini_batch=2, max_new_tokens=6, **common),
        eval_limit=3,
        eval_max_new_tokens=6,
    )


def test_two_rounds_of_the_whole_loop_through_the_api(
    tmp_path: Path, fixture_index: Path, tiny_base: Path, embedder: Any
) -> None:
    golden = tmp_path / "golden.jsonl"  # the deployment's golden set: the gate evaluates on it
    golden.write_text("".join(json.dumps(item.to_json()) + "\n" for item in BANK), encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path / "var",
        index_dir=fixture_index,
        model=str(tiny_base),
        device="cpu",
        refusal_threshold=0.0,
        golden=golden,
        answer_checks=False,  # the tiny model's raw answers: two samples differ, so choices make pairs
    )
    cfg = SimulationConfig(
        rounds=2, users=3, asks=2, max_tokens=8, heldout_samples=1, override=True, concurrency=2,
        corrections=1.0,
    )  # fmt: skip
    bank = QuestionBank.split(BANK, train=4, heldout=2, seed=0)
    said: list[str] = []
    partial: list[tuple[int, bool]] = []
    result = simulate(
        settings,
        cfg,
        tiny_configs(),
        bank,
        embedder=embedder,
        preference=Shorter(),
        say=said.append,
        on_round=lambda r: partial.append((len(r["rounds"]), r["complete"])),
    )
    assert partial == [(1, False), (2, True)]  # the results so far after every round

    first, second = result["rounds"]
    # feedback went through the API as the simulated employees, and into the store: each of the 4 train
    # questions asked and compared twice a round, each time by another employee
    assert first["feedback"]["votes"] == 8 and first["feedback"]["comparisons"] == 8
    with sqlite3.connect(settings.database_path) as db:
        votes = db.execute(
            "SELECT v.user_id, v.value, a.question FROM votes v JOIN answers a USING (answer_id)"
        ).fetchall()
        chosen = db.execute("SELECT count(*) FROM comparisons WHERE choice IS NOT NULL").fetchone()[0]
    # ... plus each round's canary trial: the same questions compared champion vs canary
    assert len(votes) == 16 and chosen == 16 + 16
    # every thumbs down was rewritten (corrections=1.0) as the reference answer citing its passage, and
    # the refresh ran SFT on those corrections before PPO
    downs = sum(value == "down" for _, value, _ in votes)
    with sqlite3.connect(settings.database_path) as db:
        sql = "SELECT k.text, a.question FROM corrections k JOIN answers a USING (answer_id)"
        fixes = db.execute(sql).fetchall()
    assert len(fixes) == downs == first["feedback"]["corrections"] + second["feedback"]["corrections"]
    by_question = {item.question: item for item in BANK}
    for text, question in fixes:
        assert by_question[question].answer.split()[-1] in text and re.search(r"\[\d\]", text)
    if first["feedback"]["corrections"]:
        assert (Path(first["refresh"]["run_dir"]) / "sft" / "output").exists()
    assert {user for user, _, _ in votes} <= {"sim-01", "sim-02", "sim-03"}
    voters: dict[str, set[str]] = {}
    for user, _, question in votes:
        voters.setdefault(question, set()).add(user)
    assert len(voters) == 4 and all(len(users) >= 2 for users in voters.values())
    # round 1: a candidate, its gate, a canary, a win rate, a promotion (an override if the gate failed)
    assert first["champion_before"] == "v0001" and first["candidate"] == "v0002"
    assert first["refresh"]["status"] == "candidate" and first["refresh"]["kl"] is not None
    assert first["refresh"]["similarity"]["candidate"] is not None
    assert {c["name"] for c in first["gate"]["checks"]} >= {"similarity", "kl"}
    canary = first["canary"]
    assert (canary["version"], canary["share"]) == ("v0002", 0.5)
    live = canary["live"]
    assert live["comparisons"] == 8 and sum(live["choices"].values()) == 8
    assert set(live["wins_by_version"]) <= {"v0001", "v0002"}
    assert live["win_rate"] is None or live["ci"][0] <= live["win_rate"] <= live["ci"][1]
    heldout = first["heldout"]
    assert heldout["questions"] == 2 and 0.0 <= heldout["win_rate"] <= 1.0
    assert heldout["ci"][0] <= heldout["win_rate"] <= heldout["ci"][1]
    assert {a["outcome"] for a in heldout["answers"]} <= {"win", "loss", "tie", "both_bad"}
    # each held-out question judged twice: greedy, then sampled as served; the pooled rate averages a
    # question's judgements and its interval counts questions (2), not judgements (4)
    assert sorted(a["sample"] for a in heldout["answers"]) == [0, 0, 1, 1]
    sampled, pooled = heldout["sampled"], heldout["pooled"]
    assert (sampled["judgements"], sampled["questions"]) == (2, 2)
    assert (pooled["judgements"], pooled["questions"]) == (4, 2)
    assert pooled["win_rate"] == pytest.approx((heldout["win_rate"] + sampled["win_rate"]) / 2)
    assert pooled["ci"] == pytest.approx(list(wilson_interval(2 * pooled["win_rate"], 2)))
    # the product's promotion rule needs 30 live comparisons; 8 are too few, so `override` promoted it
    assert first["promotion"]["action"] == "promoted" and first["promotion"]["override"] is True
    assert first["promotion"]["rule"] == "8 comparisons of v0002 vs v0001, need 30"
    # round 2 starts from the new champion
    assert first["champion_after"] == second["champion_before"] == "v0002"
    assert second["candidate"] == "v0003" and second["champion_after"] == "v0003"
    # the alias history, oldest first: trainer candidates, simulate's canaries and promotions
    changes = [(e["alias"], e["action"], e["to_version"], e["actor"]) for e in result["history"]]
    for change in [
        ("candidate", "candidate", "v0002", "trainer"),
        ("canary", "canary", "v0002", "simulate"),
        ("champion", "promote", "v0002", "simulate"),
        ("champion", "promote", "v0003", "simulate"),
    ]:
        assert change in changes
    overridden = [e["override"] for e in result["history"] if e["action"] == "promote"]
    assert overridden == [not r["gate"]["passed"] for r in (first, second)]
    assert any("win rate" in line for line in said)
    assert "  judged 4/4 pairs of answers" in said  # progress while judging: 2 questions, greedy + 1 sample

    live2 = second["canary"]["live"]["win_rate"]
    out = tmp_path / "results" / "simulate.json"
    png = write_results(result, out)
    written = json.loads(out.read_text())
    assert written["simulation"]["preference"] == "shorter" and len(written["rounds"]) == 2
    assert written["summary"]["win_rates"] == [first["heldout"]["win_rate"], second["heldout"]["win_rate"]]
    assert written["summary"]["live_win_rates"] == [first["canary"]["live"]["win_rate"], live2]
    assert written["summary"]["pooled_win_rates"] == [
        r["heldout"]["pooled"]["win_rate"] for r in (first, second)
    ]
    if png is not None:  # matplotlib is optional
        assert png.read_bytes()[:4] == b"\x89PNG"

    # step 4 alone, on the versions the loop made: every usable question of the bank, greedy + 1 sample
    judged = judge(settings, cfg, "champion", "v0001", BANK, embedder=embedder, preference=Shorter())
    assert (judged["challenger"], judged["champion"]) == ("v0003", "v0001")  # the alias, pinned by id
    usable = [i.id for i in BANK if i.answerable and i.sources]
    assert judged["questions"] == len(usable) and judged["question_ids"] == sorted(usable)
    assert sorted({a["id"] for a in judged["answers"]}) == sorted(usable)
    assert judged["pooled"]["judgements"] == 2 * len(usable)
    assert judged["ci"][0] <= judged["win_rate"] <= judged["ci"][1]
    with pytest.raises(SimulationError, match=r"unknown model version 'v0042'.*v0003"):
        judge(settings, cfg, "v0042", "v0001", BANK, embedder=embedder, preference=Shorter())
    with pytest.raises(SimulationError, match="against itself"):
        judge(settings, cfg, "champion", "v0003", BANK, embedder=embedder, preference=Shorter())
    with pytest.raises(SimulationError, match="no answerable questions"):
        judge(settings, cfg, "v0002", "v0001", [i for i in BANK if not i.answerable], preference=Shorter())


@dataclass
class Recorder:
    """Records what operate() asks of the registry."""

    calls: list[tuple[Any, ...]]

    def promote(self, version: str, *, actor: str, reason: str, override: bool, smoke: Any) -> None:
        self.calls.append(("promote", version, override, reason))

    def set_canary(self, version: str | None, share: float, *, actor: str, reason: str) -> None:
        self.calls.append(("canary", version, share, reason))


@pytest.mark.parametrize(
    ("act", "override", "gate", "expected"),
    [
        (True, False, True, ("promoted", False, ("promote", "v0002", False))),
        (False, False, True, ("kept champion", False, ("canary", None, 0.0))),
        (False, True, True, ("promoted", True, ("promote", "v0002", False))),
        (False, True, False, ("promoted", True, ("promote", "v0002", True))),  # the gate's override too
    ],
)
def test_operate_follows_the_promotion_rule(
    act: bool, override: bool, gate: bool, expected: tuple[Any, ...]
) -> None:
    from registry.policy import Decision
    from simulation.simulate import Loop

    cfg = SimulationConfig(override=override)
    loop = Loop(None, None, cfg, QuestionBank((), ()), Shorter(), [], print)  # type: ignore[arg-type]
    registry = Recorder([])
    rule = Decision(act, "v0002 wins 40-12 (ties 9) vs v0001; CI low 0.63" if act else "CI low 0.41")
    out = loop.operate(registry, 1, "v0002", gate, rule, smoke=None)
    action, overridden, call = expected
    assert (out["action"], out["override"], out["rule"]) == (action, overridden, rule.reason)
    assert len(registry.calls) == 1 and registry.calls[0][:3] == call
    assert rule.reason in registry.calls[0][3] and ("overridden" in out["reason"]) == overridden


def test_summary_targets() -> None:
    def round_(win: float, delta: float, action: str = "promoted") -> dict[str, Any]:
        return {
            "heldout": {"win_rate": win},
            "refresh": {"similarity": {"delta": delta}},
            "promotion": {"action": action},
        }

    met = summarize([round_(0.7, -0.01), round_(0.6, 0.0)], 0.02)
    assert met["win_rate_target_met"] and met["similarity_guard_met"]
    missed = summarize([round_(0.6, -0.03)], 0.02)
    assert not missed["win_rate_target_met"] and not missed["similarity_guard_met"]
    assert summarize([{"refresh": {"status": "failed"}}], 0.02)["win_rate_target_met"] is False
    # a candidate that was not promoted never served: its drop is reported but does not break the guard
    kept = summarize([round_(0.7, 0.01), round_(0.4, -0.2, "kept champion")], 0.02)
    assert kept["similarity_deltas"] == [0.01, -0.2] and kept["promoted_similarity_deltas"] == [0.01]
    assert kept["similarity_guard_met"]
    refused = {"refresh": {"status": "refused", "similarity": {"delta": -0.196}}}  # no candidate at all
    assert summarize([round_(0.64, 0.02), refused], 0.02)["similarity_guard_met"]
    # nothing promoted: the guard is not met by default
    assert not summarize([round_(0.7, 0.0, "kept champion")], 0.02)["similarity_guard_met"]


def test_cli_lists_options_and_rejects_unknown_preference(tmp_path: Path) -> None:
    from cli.app import app

    runner = CliRunner()
    out = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})  # rich cuts long names at 80
    assert out.exit_code == 0
    for option in ("--rounds", "--questions", "--users", "--asks", "--ppo-iterations", "--ppo-rollouts",
                   "--algo", "--preference", "--override", "--min-comparisons", "--reward-learning-rate",
                   "--reward-max-steps", "--heldout-samples", "--dpo-max-steps"):  # fmt: skip
        assert option in out.output
    out = runner.invoke(app, ["simulate-judge", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "{challenger} {champion}" in out.output and "--samples" in out.output
    bad = runner.invoke(app, ["simulate-judge", "v0002", "v0001", "--preference", "nope"])
    assert bad.exit_code == 2 and "concise-cited" in bad.output
    bad = runner.invoke(app, ["simulate", "--preference", "nope", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "concise-cited" in bad.output
    bad = runner.invoke(
        app, ["simulate", "--algo", "sft", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert bad.exit_code == 2 and "ppo, dpo or kto" in bad.output


def test_a_failed_generation_is_asked_again_and_other_errors_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from simulation import simulate as sim

    monkeypatch.setattr(sim.time, "sleep", lambda s: None)

    class Client:
        def __init__(self, codes: list[int]) -> None:
            self.codes, self.calls = codes, 0

        def post(self, path: str, json: dict, headers: dict) -> SimpleNamespace:
            self.calls += 1
            return SimpleNamespace(status_code=self.codes[self.calls - 1], headers={"Retry-After": "1"})

    flaky = Client([500, 503, 200])
    assert sim._generate(flaky, "/v1/chat/completions", {}, {}).status_code == 200 and flaky.calls == 3
    refused = Client([422])
    assert sim._generate(refused, "/api/compare", {}, {}).status_code == 422 and refused.calls == 1
    broken = Client([500] * 4)
    assert sim._generate(broken, "/v1/chat/completions", {}, {}).status_code == 500 and broken.calls == 4
