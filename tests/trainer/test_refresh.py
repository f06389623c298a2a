"""A whole refresh on a tiny model: feedback through the real API → reward model → PPO/DPO → evaluation →
candidate; the worker's triggers, lock and failure path; the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.settings import Settings
from registry.gate import GateThresholds
from registry.versions import ModelDirectory
from tests.conftest import REPO
from trainer.config import DPOConfig, KTOConfig, PPOConfig, RefreshConfig, RewardConfig
from trainer.errors import TrainerError
from trainer.refresh import RefreshConfigs, refresh
from trainer.verifiable import COMPONENTS
from trainer.worker import Busy, Worker, WorkerConfig, due, new_feedback, read_state, refresh_lock

QUESTIONS = [
    "How much does a parking permit cost per month?",
    "Where do I get a parking permit?",
    "How do I connect to the VPN?",
    "The VPN drops every few minutes, what do I do?",
    "What is the parking permit price?",
    "Who do I call when the VPN fails?",
]


@pytest.fixture
def settings(tmp_path: Path, fixture_index: Path, tiny_base: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        index_dir=fixture_index,
        model=str(tiny_base),
        device="cpu",
        max_tokens_default=12,
        refusal_threshold=0.0,
        golden=REPO / "examples" / "acme-handbook" / "golden.jsonl",
        answer_checks=False,  # the tiny model's raw answers: two samples differ, so choices make pairs
    )


@pytest.fixture
def client(settings: Settings, embedder: Any) -> Iterator[TestClient]:
    from ui.server import create_app

    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def collect_feedback(client: TestClient, rounds: int = 2) -> int:
    """Answers, thumbs and side-by-side choices through the API, as employees would give them."""
    events = 0
    for r in range(rounds):
        for i, question in enumerate(QUESTIONS):
            body = {"model": "champion", "messages": [{"role": "user", "content": question}], "max_tokens": 8}
            answer = client.post("/v1/chat/completions", json={**body, "temperature": 1.0}).json()
            answer_id = answer["kbloop"]["answer_id"]
            vote = {
                "value": "up" if (i + r) % 2 else "down",
                "reasons": [] if (i + r) % 2 else ["incomplete"],
            }
            assert client.post(f"/api/answers/{answer_id}/vote", json=vote).status_code == 200
            pair = client.post("/api/compare", json={"question": question, "max_tokens": 8})
            assert pair.status_code == 200, pair.text
            choice = client.post(f"/api/compare/{pair.json()['comparison_id']}/choice", json={"choice": "A"})
            assert choice.status_code == 200, choice.text
            events += 2
    return events


def small(algo: str = "ppo", dpo_kl_budget: float = 12.0, **ppo: Any) -> RefreshConfigs:
    common = {"device": "cpu", "batch_size": 4, "checkpoint_every": 1, "max_length": 256}
    return RefreshConfigs(
        refresh=RefreshConfig(algo=algo, min_pairs=4),  # type: ignore[arg-type]
        reward=RewardConfig(epochs=1, **common),  # type: ignore[arg-type]
        ppo=PPOConfig(
            **{"iterations": 2, "rollout_batch": 4, "mini_batch": 2, "max_new_tokens": 6, **common, **ppo}
        ),
        dpo=DPOConfig(epochs=1, kl_budget=dpo_kl_budget, **common),  # type: ignore[arg-type]
        kto=KTOConfig(epochs=1, kl_budget=dpo_kl_budget, kl_max_new_tokens=6, **common),  # type: ignore[arg-type]
        eval_limit=3,
        eval_max_new_tokens=6,
    )


def test_a_refresh_from_api_feedback_registers_a_candidate(
    client: TestClient, settings: Settings, embedder: Any
) -> None:
    collect_feedback(client)
    result = refresh(settings, small(), embedder=embedder)
    assert result.status == "candidate" and result.candidate == "v0002"
    models = ModelDirectory(settings.models_dir)
    assert models.aliases()["champion"] == "v0001"  # never served by the refresh itself
    assert models.aliases()["candidate"] == "v0002"
    version = models.get("v0002")
    assert version.parent == "v0001" and version.status == "candidate"
    assert (settings.models_dir / "versions" / "v0002" / "adapter" / "adapter_config.json").exists()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["parent"] == "v0001"
    assert manifest["snapshot"]["tables"]["comparisons"]["rows"] == len(QUESTIONS) * 2
    assert manifest["data"]["pairs"] + manifest["data"]["heldout_pairs"] > 0
    assert manifest["git_commit"]
    # PPO's reward: the reward model and the checks, weighed by a fit on the employees' pairs
    composite = manifest["composite"]
    if manifest["data"]["pairs"]:
        assert composite["used"] and set(composite["weights"]) == {"learned", *COMPONENTS}
        assert composite["report"]["pairs"] > 0 and 0.0 <= composite["report"]["cv_agreement"] <= 1.0
    else:
        assert not composite["used"]
    evaluation = manifest["report"]["evaluation"]
    # the evaluation showed its progress in the run, answer by answer, champion then candidate
    shown = json.loads((result.run_dir / "evaluation" / "progress.json").read_text())
    phases = [p["phase"] for p in shown["finished_phases"]]
    assert (
        "evaluation: champion's golden answers" in phases
        and "evaluation: candidate's golden answers" in phases
    )
    assert all(p["done"] == p["total"] for p in shown["finished_phases"])
    assert {"similarity", "citation_correct", "length_tokens"} <= set(evaluation["candidate"])
    assert evaluation["champion"]["questions"] == 3 and len(evaluation["answers"]) == 3
    # the gate's reward win rate: few held-out logged prompts here, so the golden ones are pooled in
    assert 0 < evaluation["reward_win_rate_prompts"] < RefreshConfig().min_logged_prompts
    assert evaluation["reward_win_rate_basis"] == "golden+logged"
    assert 0.0 <= evaluation["reward_win_rate"] <= 1.0
    # judges PPO was not optimised against: the answer checks on the same held-out answers
    assert evaluation["reward_optimised"] and evaluation["checks_win_rate_basis"] == "golden+logged"
    assert 0.0 <= evaluation["checks_win_rate"] <= 1.0
    gate = {c["name"]: c for c in manifest["report"]["gate"]["checks"]}
    assert "checks_win_rate" in gate and "not gated" in gate["reward_win_rate"]["detail"]
    ppo_metrics = [
        json.loads(line) for line in (result.run_dir / "ppo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in ppo_metrics] == [1, 2]
    assert {"reward", "kl", "entropy", "clipfrac", "vf_loss", "approx_kl", "response_length"} <= set(
        ppo_metrics[0]
    )
    # the served model can load the candidate: the service resolves and smoke-answers with it
    answer = client.post(
        "/v1/chat/completions",
        json={"model": "candidate", "messages": [{"role": "user", "content": QUESTIONS[0]}], "max_tokens": 4},
    )
    assert answer.status_code == 200 and answer.json()["kbloop"]["model_version"] == "v0002"

    # the next refresh warm-starts the reward model from this one
    latest = json.loads((settings.data_dir / "reward" / "latest.json").read_text())
    assert Path(latest["folder"]).is_dir()


def test_a_corpus_without_a_golden_set_gets_a_gate_report_naming_the_missing_checks(
    client: TestClient, settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    from registry.registry import Registry

    collect_feedback(client, rounds=1)
    bare = settings.model_copy(update={"golden": tmp_path / "no-golden-set" / "golden.jsonl"})
    result = refresh(bare, small(), embedder=embedder)
    assert result.status == "candidate"
    stored_report = result.report.to_json()  # as training.json keeps it
    evaluation, gate = stored_report["evaluation"], stored_report["gate"]
    assert evaluation["golden_set"] == "missing" and "candidate" not in evaluation
    assert gate["not_run"] == ["similarity", "citations", "refusals"]
    details = {c["name"]: c["detail"] for c in gate["checks"]}
    assert all(details[name] == "not run: no golden set" for name in gate["not_run"])
    # the checks that could run did: the reward model on held-out logged prompts, the KL, the length
    assert evaluation["reward_win_rate_basis"] == "logged" and evaluation["reward_win_rate_prompts"] > 0
    assert {"reward_win_rate", "kl", "length_drift"} <= set(details)
    assert "human win rate" in gate["note"]
    # the registry shows the same report for the candidate
    stored = Registry(bare.models_dir, GateThresholds.from_settings(bare)).gate(result.candidate or "")
    assert stored.not_run == ("similarity", "citations", "refusals")


def test_one_stable_split_for_every_seed_and_rollouts_from_the_train_side(
    client: TestClient, settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    from simulation.simulate import _reseeded
    from trainer.examples import prompt_id
    from trainer.refresh_data import refresh_data as _data
    from trainer.runs import Run

    collect_feedback(client, rounds=1)
    replaced = {}
    for question in QUESTIONS:  # an employee rewrites each answer: a correction, and a pair over the answer
        body = {"model": "champion", "messages": [{"role": "user", "content": question}], "max_tokens": 8}
        answer = client.post("/v1/chat/completions", json=body).json()
        text = f"The handbook's answer to {question!r} [1]."
        url = f"/api/answers/{answer['kbloop']['answer_id']}/correction"
        assert client.post(url, json={"text": text}).status_code == 200
        replaced[text] = answer["choices"][0]["message"]["content"]
    sides = []
    for round_no, seed in enumerate((0, 1, 7)):  # simulate re-seeds each round's training
        configs = _reseeded(small(), seed)
        configs.reward.heldout_fraction = 0.4
        run = Run.open(tmp_path / f"round-{round_no}", "refresh", {})
        data, _ = _data(settings, configs, run, embedder)
        held = {p.prompt_id for p in [*data["heldout_pairs"], *data["heldout_thumbs"]]}
        train = {p.prompt_id for p in [*data["pairs"], *data["thumbs"]]}
        assert held and train and not held & train
        sides.append((held, train, sorted(data["heldout_logged_prompts"])))
        # rollouts (PPO's logged prompts) come from the train side only; the held-out ones are kept apart
        assert data["logged_prompts"] and data["heldout_logged_prompts"]
        assert not {prompt_id(p) for p in data["logged_prompts"]} & held
        assert {prompt_id(p) for p in data["heldout_logged_prompts"]} <= held
        # each train-side correction is a pair over the answer it replaced; none from the held-out side
        assert data["correction_pairs"] and len(data["correction_pairs"]) == len(data["demonstrations"])
        assert all(replaced[p.chosen] == p.rejected for p in data["correction_pairs"])
        assert not {p.prompt_id for p in data["correction_pairs"]} & held
    assert sides[0] == sides[1] == sides[2]  # the same split whatever the seed


def test_dpo_refresh_and_too_little_feedback(client: TestClient, settings: Settings, embedder: Any) -> None:
    configs = small("dpo")
    configs.evaluate = False
    with pytest.raises(TrainerError, match="not enough feedback"):
        refresh(settings, configs, embedder=embedder)
    assert ModelDirectory(settings.models_dir).aliases().get("candidate") is None
    collect_feedback(client, rounds=1)
    result = refresh(settings, configs, embedder=embedder)
    assert result.status == "candidate"
    assert (result.run_dir / "dpo" / "output" / "adapter_model.safetensors").exists()


def test_a_kto_refresh_trains_on_thumbs(client: TestClient, settings: Settings, embedder: Any) -> None:
    collect_feedback(client, rounds=1)
    configs = small("kto")
    configs.evaluate = False
    result = refresh(settings, configs, embedder=embedder)
    assert result.status == "candidate"
    manifest = json.loads((result.run_dir / "kto" / "manifest.json").read_text())
    assert (
        manifest["metrics"]["thumbs"]
        == json.loads((result.run_dir / "manifest.json").read_text())["data"]["thumbs"]
    )
    assert (result.run_dir / "kto" / "output" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("algo", ["ppo", "dpo", "kto"])
def test_a_kl_budget_breach_is_not_published(
    client: TestClient, settings: Settings, embedder: Any, algo: str
) -> None:
    collect_feedback(client, rounds=1)
    configs = small(algo, kl_budget=-1.0, dpo_kl_budget=-1.0)  # any KL exceeds a negative budget
    configs.evaluate = False
    result = refresh(settings, configs, embedder=embedder)
    assert result.status == "refused" and result.candidate is None
    assert "candidate" not in ModelDirectory(settings.models_dir).aliases()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "refused" and (
        "exceeds the budget" in manifest["error"]
        or "no update stayed within the KL budget" in manifest["error"]
    )


def test_worker_triggers_lock_and_failure(client: TestClient, settings: Settings) -> None:
    cfg = WorkerConfig(min_feedback=10, interval_h=1.0, poll_s=0.1)
    assert due({}, 0, cfg, 0.0) is None
    assert due({}, 9, cfg, 0.0) is None
    assert "10 new feedback" in (due({}, 10, cfg, 0.0) or "")
    assert due({"last_finished_ts": 0.0}, 1, cfg, 3599.0) is None
    assert "schedule" in (due({"last_finished_ts": 0.0}, 1, cfg, 3600.0) or "")

    calls: list[int] = []

    def broken(s: Settings, c: RefreshConfigs) -> Any:
        calls.append(1)
        raise RuntimeError("GPU fell off")

    worker = Worker(settings, small(), cfg, refresh=broken)
    assert worker.run_once() is None  # nothing collected yet
    events = collect_feedback(client, rounds=1)
    assert new_feedback(settings.database_path, None) == events
    with refresh_lock(settings.data_dir), pytest.raises(Busy):  # one refresh at a time
        worker.run_once()
    assert calls == []
    entry = worker.run_once()
    assert entry is not None and entry["status"] == "failed" and "GPU fell off" in entry["error"]
    assert read_state(settings.data_dir)["last"]["status"] == "failed"
    models = ModelDirectory(settings.models_dir)
    assert models.aliases() == {"champion": "v0001"}  # the served model is untouched


def test_cli_help_lists_config_fields_and_rejects_bad_choices(tmp_path: Path) -> None:
    from cli.app import app

    runner = CliRunner()
    out = runner.invoke(app, ["train", "ppo", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for option in ("--kl-budget", "--target-kl", "--clip-range", "--rollout-batch", "--prompts-jsonl"):
        assert option in out.output
    bad = runner.invoke(app, ["train", "ppo", "--kl-estimator", "k9"])
    assert bad.exit_code != 0 and "k1" in bad.output
    for option in ("--advantage", "--group-size"):
        assert option in out.output
    assert runner.invoke(app, ["train", "ppo", "--advantage", "value"]).exit_code != 0
    kto = runner.invoke(app, ["train", "kto", "--help"], terminal_width=200)
    assert kto.exit_code == 0
    for option in ("--beta", "--desirable-weight", "--undesirable-weight", "--from-jsonl", "--kl-budget"):
        assert option in kto.output
    refresh_help = runner.invoke(app, ["train", "refresh", "--help"], terminal_width=200)
    assert "kto" in refresh_help.output and "--derive-budgets" in refresh_help.output
    missing = runner.invoke(
        app, ["eval", "reward", "--model", str(tmp_path), "--pairs", str(tmp_path / "p.jsonl")]
    )
    assert missing.exit_code == 2 and "not a reward model folder" in missing.output


def test_sft_before_the_update_may_spend_a_share_of_its_budget() -> None:
    from trainer.config import PPOConfig, RefreshConfig, SFTConfig
    from trainer.refresh import RefreshConfigs, sft_with_kl_limit

    configs = RefreshConfigs(
        refresh=RefreshConfig(algo="ppo", sft_kl_share=0.5), ppo=PPOConfig(kl_budget=12.0)
    )
    assert sft_with_kl_limit(configs).kl_limit == 6.0
    dpo = sft_with_kl_limit(RefreshConfigs(refresh=RefreshConfig(algo="dpo", sft_kl_share=0.25)))
    assert dpo.kl_limit == 3.0
    own = RefreshConfigs(refresh=RefreshConfig(algo="ppo"), sft=SFTConfig(kl_limit=2.0))
    assert sft_with_kl_limit(own).kl_limit == 2.0  # SFT's own limit wins
