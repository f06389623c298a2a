"""Shared options take their defaults from the settings when a command runs (`KBLOOP_*` applies unless the
option is given), and simulate's options are generated from `SimulationConfig`'s help metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from core.settings import get_settings
from simulation.config import SimulationConfig
from tests.conftest import REPO

runner = CliRunner()
GOLDEN = REPO / "examples" / "acme-handbook" / "golden.jsonl"


def _env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()  # the settings are read once; the commands read them when they run


def _help(args: list[str]) -> str:
    """`--help` of a command, box drawing and wrapping undone."""
    done = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})  # rich cuts long names at 80
    assert done.exit_code == 0, done.output
    return " ".join(done.output.replace("│", " ").split())


class StopHere(Exception):
    pass


@pytest.mark.parametrize(
    "command",
    [
        ["train", "sft"],
        ["train", "reward"],
        ["train", "dpo"],
        ["train", "kto"],
        ["train", "ppo"],
        ["train", "refresh"],
        ["eval", "reward"],
        ["trainer", "run"],
    ],
)
def test_device_defaults_to_kbloop_device(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    _env(monkeypatch, KBLOOP_DEVICE="cpu")
    assert "[default: cpu (KBLOOP_DEVICE)]" in _help(command)
    _env(monkeypatch, KBLOOP_DEVICE="cuda")
    assert "[default: cuda (KBLOOP_DEVICE)]" in _help(command)


def test_a_training_run_uses_kbloop_device_unless_device_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.train

    seen: list[Any] = []

    def store_data(cfg: Any) -> Any:
        seen.append(cfg)
        raise StopHere

    monkeypatch.setattr(cli.train, "_parent", lambda name: (None, SimpleNamespace(base="base"), None))
    monkeypatch.setattr(cli.train, "_store_data", store_data)
    _env(monkeypatch, KBLOOP_DEVICE="cpu")
    assert isinstance(runner.invoke(app, ["train", "reward"]).exception, StopHere)
    assert isinstance(runner.invoke(app, ["train", "dpo", "--device", "cuda"]).exception, StopHere)
    assert [(type(cfg).__name__, cfg.device) for cfg in seen] == [
        ("RewardConfig", "cpu"),
        ("DPOConfig", "cuda"),
    ]
    bad = runner.invoke(app, ["train", "reward", "--device", "tpu"])
    assert bad.exit_code == 2 and "auto, cpu or cuda" in bad.output


def test_refresh_passes_kbloop_device_to_every_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.refresh

    seen: list[Any] = []

    def refresh(settings: Any, configs: Any, output: Any) -> Any:
        seen.append(configs)
        raise StopHere

    monkeypatch.setattr(trainer.refresh, "refresh", refresh)
    _env(monkeypatch, KBLOOP_DEVICE="cpu")
    done = runner.invoke(app, ["train", "refresh", "--algo", "kto"])
    assert isinstance(done.exception, StopHere), done.output
    configs = seen[0]
    assert configs.refresh.algo == "kto"
    assert {c.device for c in (configs.reward, configs.ppo, configs.dpo, configs.kto, configs.sft)} == {"cpu"}


def test_trainer_run_reads_its_triggers_and_device_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.worker

    made: list[tuple[Any, Any, Any]] = []

    class Worker:
        def __init__(self, settings: Any, configs: Any, cfg: Any) -> None:
            made.append((settings, configs, cfg))

        def run_once(self, force: bool = False) -> None:
            return None

    monkeypatch.setattr(trainer.worker, "Worker", Worker)
    _env(
        monkeypatch,
        KBLOOP_TRAINER_MIN_FEEDBACK="7",
        KBLOOP_TRAINER_INTERVAL_H="0.5",
        KBLOOP_TRAINER_ALGO="dpo",
        KBLOOP_DEVICE="cpu",
    )
    shown = _help(["trainer", "run"])
    assert "[default: dpo (KBLOOP_TRAINER_ALGO)]" in shown
    assert "[default: 7 (KBLOOP_TRAINER_MIN_FEEDBACK)]" in shown
    assert "[default: 0.5 (KBLOOP_TRAINER_INTERVAL_H)]" in shown
    done = runner.invoke(app, ["trainer", "run", "--once"])
    assert done.exit_code == 0 and '"idle"' in done.output, done.output
    done = runner.invoke(app, ["trainer", "run", "--once", "--min-feedback", "3", "--device", "auto"])
    assert done.exit_code == 0, done.output
    (_, env_configs, env_cfg), (_, given_configs, given_cfg) = made
    assert (env_cfg.min_feedback, env_cfg.interval_h, env_configs.refresh.algo) == (7, 0.5, "dpo")
    assert {c.device for c in (env_configs.reward, env_configs.ppo, env_configs.dpo, env_configs.kto)} == {
        "cpu"
    }
    assert (given_cfg.min_feedback, given_cfg.interval_h, given_configs.ppo.device) == (3, 0.5, "auto")
    bad = runner.invoke(app, ["trainer", "run", "--once", "--algo", "sft"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "ppo, dpo or kto" in bad.output


def test_simulate_help_lists_every_config_field_with_its_help() -> None:
    shown = _help(["simulate"])
    for field in dataclasses.fields(SimulationConfig):
        help_text = field.metadata["help"]
        assert help_text, f"SimulationConfig.{field.name} has no help"
        assert f"--{field.name.replace('_', '-')}" in shown
        assert help_text in shown, field.name
    judge = _help(["simulate-judge"])
    for option in (
        "--samples",
        "--users",
        "--max-tokens",
        "--preference",
        "--noise",
        "--concurrency",
        "--seed",
    ):
        assert option in judge


def test_simulate_builds_its_config_from_the_options_and_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cli.simulate

    seen: list[tuple[Any, Any, Any]] = []

    def simulate(settings: Any, cfg: Any, configs: Any, bank: Any, **_: Any) -> Any:
        seen.append((settings, cfg, configs))
        return {"summary": {}}

    monkeypatch.setattr(cli.simulate, "simulate", simulate)
    monkeypatch.setattr(cli.simulate, "write_results", lambda result, out: None)
    _env(monkeypatch, KBLOOP_AUTO_PROMOTE_MIN_COMPARISONS="12", KBLOOP_DEVICE="cpu")
    common = ["simulate", "--golden", str(GOLDEN), "--questions", "4", "--heldout", "2"]
    done = runner.invoke(app, common)
    assert done.exit_code == 0, done.output
    given = [
        "--rounds",
        "3",
        "--users",
        "4",
        "--heldout-samples",
        "0",
        "--override",
        "--min-comparisons",
        "5",
    ]
    trainer = ["--reward-max-steps", "7", "--algo", "dpo", "--data-dir", str(tmp_path / "other")]
    done = runner.invoke(app, [*common, *given, *trainer])
    assert done.exit_code == 0, done.output
    (settings, cfg, configs), (other_settings, other, other_configs) = seen
    assert cfg == dataclasses.replace(SimulationConfig(), min_comparisons=12)
    assert settings.data_dir == get_settings().data_dir and configs.ppo.device == "cpu"
    assert (other.rounds, other.users, other.heldout_samples, other.override, other.min_comparisons) == (
        3,
        4,
        0,
        True,
        5,
    )
    assert other_settings.data_dir == tmp_path / "other"
    assert (other_configs.refresh.algo, other_configs.reward.max_steps) == ("dpo", 7)


def test_simulate_judge_reads_the_data_dir_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cli.simulate

    seen: list[tuple[Any, Any]] = []
    keys = (
        "challenger",
        "champion",
        "questions",
        "outcomes",
        "win_rate",
        "ci",
        "sampled",
        "pooled",
        "mean_score",
    )

    def judge(settings: Any, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((settings, cfg))
        return dict.fromkeys(keys)

    monkeypatch.setattr(cli.simulate, "judge", judge)
    _env(monkeypatch, KBLOOP_DATA_DIR=str(tmp_path / "env"))
    assert f"[default: {tmp_path / 'env'} (KBLOOP_DATA_DIR)]" in _help(["simulate-judge"])
    args = ["simulate-judge", "v0002", "v0001", "--golden", str(GOLDEN)]
    assert runner.invoke(app, args).exit_code == 0
    done = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "given"), "--samples", "0", "--seed", "3"])
    assert done.exit_code == 0, done.output
    (env_settings, env_cfg), (given_settings, given_cfg) = seen
    assert env_settings.data_dir == tmp_path / "env" and env_cfg == SimulationConfig()
    assert given_settings.data_dir == tmp_path / "given"
    assert (given_cfg.heldout_samples, given_cfg.seed) == (0, 3)
