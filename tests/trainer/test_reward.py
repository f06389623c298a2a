"""trainer.reward on a tiny model: it learns separable preferences and thumbs, publishes a folder that
scores exactly as the trained model did, and continues from a previous reward model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer.synthetic import marker_pairs, marker_thumbs
from trainer.config import RewardConfig
from trainer.errors import TrainerError
from trainer.models import load_reward_model, load_tokenizer, reward_stats
from trainer.ppo import reward_model_scorer
from trainer.reward import RewardResult, evaluate, load_for_scoring, report_from_scores, score, train_reward
from trainer.runs import Run

TRAIN, HELDOUT = marker_pairs(48, seed=0), marker_pairs(64, seed=1)


def config(**changes: Any) -> RewardConfig:
    base = {"device": "cpu", "epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0}
    return RewardConfig(**{**base, **changes})


def train(root: Path, base: Path, cfg: RewardConfig, **data: Any) -> RewardResult:
    return train_reward(base=str(base), cfg=cfg, run=Run.open(root, "reward", cfg.to_json()), **data)


@pytest.fixture(scope="module")
def trained(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> RewardResult:
    root = tmp_path_factory.mktemp("reward") / "run"
    return train(root, tiny_base, config(), pairs=TRAIN, heldout_pairs=HELDOUT)


def test_untrained_head_does_not_separate(tiny_base: Path) -> None:
    """The baseline of the next test: a fresh score head gives margins near zero."""
    tokenizer = load_tokenizer(str(tiny_base))
    model = load_reward_model(str(tiny_base), config(), lora=True, pad_token_id=tokenizer.pad_token_id)
    report = evaluate(model, tokenizer, HELDOUT)
    assert abs(report["mean_margin"]) < 0.1


def test_reward_model_separates_held_out_pairs(trained: RewardResult) -> None:
    assert trained.heldout["pairs"] == len(HELDOUT)
    assert trained.heldout["pair_accuracy"] >= 0.95  # the requirement, on pairs it never saw
    assert trained.heldout["mean_margin"] > 1.0
    manifest = json.loads((trained.folder.parent / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["metrics"]["heldout"] == pytest.approx(trained.heldout)
    assert manifest["metrics"]["steps"] == 12  # 2 epochs × 48 pairs / 8 per batch


def test_published_folder_scores_like_the_trained_model(trained: RewardResult) -> None:
    model, tokenizer, stats = load_for_scoring(trained.folder, device="cpu")
    assert not model.training
    report = evaluate(model, tokenizer, HELDOUT, max_length=config().max_length)
    for key in ("pair_accuracy", "mean_margin", "ece", "brier"):
        assert report[key] == pytest.approx(trained.heldout[key], abs=1e-5), key
    # the stored mean/std are those of the training responses' scores
    prompts = [p.prompt for p in TRAIN] * 2
    scores = torch.tensor(
        score(model, tokenizer, prompts, [p.chosen for p in TRAIN] + [p.rejected for p in TRAIN])
    )
    assert stats == reward_stats(trained.folder) == pytest.approx(trained.stats)
    assert stats["mean"] == pytest.approx(float(scores.mean()), abs=1e-5)
    assert stats["std"] == pytest.approx(float(scores.std()), abs=1e-5)
    assert stats["std"] > 0.5  # trained scores spread out; an untrained head's would not
    meta = json.loads((trained.folder / "kbloop_reward.json").read_text())
    assert meta["mean"] == stats["mean"] and meta["std"] == stats["std"] and meta["adapter"] == "adapter"
    scorer = reward_model_scorer(trained.folder, device="cpu")  # what PPO uses
    assert (scorer.mean, scorer.std) == (stats["mean"], stats["std"])
    assert scorer.score(prompts[:2], [TRAIN[0].chosen, TRAIN[0].rejected]) == pytest.approx(
        score(model, tokenizer, prompts[:2], [TRAIN[0].chosen, TRAIN[0].rejected]), abs=1e-6
    )


def test_thumbs_only_training_scores_positives_above_negatives(tiny_base: Path, tmp_path: Path) -> None:
    thumbs, heldout = marker_thumbs(48, seed=2), marker_thumbs(32, seed=3)
    cfg = config(thumbs_weight=1.0)
    result = train(tmp_path / "run", tiny_base, cfg, pairs=[], thumbs=thumbs, heldout_thumbs=heldout)
    assert "pair_accuracy" not in result.heldout
    assert result.heldout["thumbs_auc"] >= 0.95
    assert result.heldout["thumbs_accuracy"] >= 0.9  # the BCE puts the boundary at score 0
    bce = [m["bce_loss"] for m in Run(tmp_path / "run").metrics()]
    assert bce[-1] < bce[0]


def test_warm_start_continues_from_the_published_model(
    trained: RewardResult, tiny_base: Path, tmp_path: Path
) -> None:
    cfg = config(warm_start=str(trained.folder), learning_rate=1e-3, max_steps=2)
    tokenizer = load_tokenizer(str(tiny_base))
    start = load_reward_model(cfg.warm_start, cfg, lora=True, pad_token_id=tokenizer.pad_token_id)
    head = [p.requires_grad for name, p in start.named_parameters() if "score" in name]
    assert any(head)  # the score head trains on (peft keeps a frozen copy of the original beside it)
    published, _, _ = load_for_scoring(trained.folder, device="cpu")
    new_pairs = marker_pairs(16, seed=5)
    prompts, answers = [p.prompt for p in new_pairs], [p.chosen for p in new_pairs]
    assert score(start, tokenizer, prompts, answers) == pytest.approx(
        score(published, tokenizer, prompts, answers), abs=1e-6
    )

    result = train(tmp_path / "run", tiny_base, cfg, pairs=new_pairs, heldout_pairs=HELDOUT)
    assert result.heldout["pair_accuracy"] >= 0.95  # two small steps from a fresh head would not get here
    assert result.heldout["mean_margin"] > 1.0
    meta = json.loads((result.folder / "kbloop_reward.json").read_text())
    assert meta["base"] == str(tiny_base)  # still the policy base, not the previous reward model
    assert Run(tmp_path / "run").manifest()["warm_start"] == str(trained.folder)


def test_no_data_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="pairs or thumbs"):
        train(tmp_path / "run", tiny_base, config(), pairs=[])


def test_report_from_scores_by_hand() -> None:
    # margins 2, -1, 0.5: two of three right; thumbs 1.0 (up), -2.0 (down), 0.5 (down): 2 of 3 right
    report = report_from_scores([3.0, 0.0, 1.0], [1.0, 1.0, 0.5], [1.0, -2.0, 0.5], [True, False, False])
    assert report["pairs"] == 3 and report["thumbs"] == 3
    assert report["pair_accuracy"] == pytest.approx(2 / 3)
    assert report["mean_margin"] == pytest.approx(0.5)
    assert report["thumbs_accuracy"] == pytest.approx(2 / 3)
    assert report["thumbs_auc"] == pytest.approx(1.0)  # the up vote outranks both down votes
    assert report_from_scores([], []) == {"pairs": 0.0, "thumbs": 0.0}


def test_last_token_index_from_the_mask_by_hand() -> None:
    from trainer.reward import last_token_index

    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [1, 0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 3, 0]


def test_score_is_read_at_the_last_real_token_even_where_it_is_the_pad_id(tiny_base: Path) -> None:
    """pad = eos here as in SmolLM2: a sequence may hold the pad id inside (an end of turn in the prompt)
    and end with it. Its score must be the head at its last real token, as if it were scored alone,
    not at the first pad id (older transformers) nor at the last non-pad id (newer releases)."""
    from trainer.reward import forward_scores

    tokenizer = load_tokenizer(str(tiny_base))
    pad = int(tokenizer.pad_token_id)
    model = load_reward_model(str(tiny_base), config(), lora=False, pad_token_id=pad)
    model.eval()
    with torch.no_grad():  # a head that is not ~0, so positions give clearly different scores
        model.score.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    seqs = [[5, pad, 9, 11, 13], [5, 9, 11, pad], [7, 8], [5, pad, 9, pad]]

    def alone(seq: list[int]) -> float:
        with torch.no_grad():
            hidden = model.model(input_ids=torch.tensor([seq])).last_hidden_state  # (1, len, hidden)
            return float(model.score(hidden)[0, -1, 0])

    with torch.no_grad():
        batched = forward_scores(model, seqs, pad).tolist()
    expected = [alone(s) for s in seqs]
    assert batched == pytest.approx(expected, abs=1e-5)
    # the library's pooling reads elsewhere for the sequences that end with the pad id
    with torch.no_grad():
        ids = torch.tensor([s + [pad] * (5 - len(s)) for s in seqs])
        pooled = model(input_ids=ids).logits[:, 0].tolist()
    assert pooled[1] != pytest.approx(expected[1], abs=1e-3)
    assert pooled[3] != pytest.approx(expected[3], abs=1e-3)


def test_score_keeps_input_order_when_batching_by_length(trained: RewardResult) -> None:
    model, tokenizer, _ = load_for_scoring(trained.folder, device="cpu")
    prompts = [p.prompt for p in HELDOUT[:6]]
    completions = [p.chosen + " and more" * i for i, p in enumerate(HELDOUT[:6])]
    together = score(model, tokenizer, prompts, completions, batch_size=4)
    one_by_one = [
        score(model, tokenizer, [p], [c], batch_size=1)[0] for p, c in zip(prompts, completions, strict=True)
    ]
    assert together == pytest.approx(one_by_one, abs=1e-5)
    # answers to the same prompt (as PPO's group) share its pass and come back in input order too
    grouped = [HELDOUT[0].prompt, HELDOUT[1].prompt, HELDOUT[0].prompt, HELDOUT[0].prompt]
    answers = [HELDOUT[0].chosen, HELDOUT[1].rejected, HELDOUT[0].rejected, HELDOUT[0].chosen + " again"]
    shared = score(model, tokenizer, grouped, answers, batch_size=2)
    alone = [
        score(model, tokenizer, [p], [c], batch_size=1)[0] for p, c in zip(grouped, answers, strict=True)
    ]
    assert shared == pytest.approx(alone, abs=1e-5) and shared[0] != pytest.approx(shared[2], abs=1e-3)


def test_eval_reward_cli_reports_accuracy_with_an_interval_and_margins(
    trained: RewardResult, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
            for p in HELDOUT
        )
    )
    margins = tmp_path / "margins.json"
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "reward",
            "--model",
            str(trained.folder),
            "--pairs",
            str(pairs),
            "--device",
            "cpu",
            "--max-length",
            str(config().max_length),
            "--json",
            "--margins-out",
            str(margins),
        ],
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["pair_accuracy"] == pytest.approx(trained.heldout["pair_accuracy"], abs=1e-6)
    assert report["pair_accuracy_ci95_low"] < report["pair_accuracy"] <= report["pair_accuracy_ci95_high"]
    written = json.loads(margins.read_text())
    assert len(written) == len(HELDOUT)
    assert sum(m > 0 for m in written) / len(written) == pytest.approx(report["pair_accuracy"])


def test_shared_prompt_scores_equal_the_padded_ones_and_their_gradients(tiny_base: Path) -> None:
    """Each prompt runs once and its answers continue from its cache: the same scores (and LoRA
    gradients) as running every sequence whole, whatever the grouping, empty answers included."""
    from trainer.reward import forward_scores, shared_prompt_scores
    from trainer.tokens import encode

    tokenizer = load_tokenizer(str(tiny_base))
    model = load_reward_model(str(tiny_base), config(), lora=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter and head, so the scores differ by sequence
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    rows = [
        (TRAIN[0].prompt, TRAIN[0].chosen),
        (TRAIN[1].prompt, TRAIN[1].rejected),
        (TRAIN[0].prompt, TRAIN[0].rejected),  # the first prompt again: shared
        (TRAIN[0].prompt, ""),  # nothing after the prompt: the score at the prompt's end
        (TRAIN[0].prompt, "a much longer answer than the others, to pad the rest"),
    ]
    encoded = [encode(tokenizer, p, c, 256, add_eos=False) for p, c in rows]
    seqs, lens = [e.ids for e in encoded], [e.prompt_len for e in encoded]
    pad = int(tokenizer.pad_token_id)

    padded = forward_scores(model, seqs, pad)
    shared = shared_prompt_scores(model, seqs, lens, pad)
    assert torch.allclose(padded, shared, atol=1e-5), (padded, shared)
    assert padded.std() > 1e-3  # the scores differ: the comparison means something

    def grads(scores: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        (scores * torch.arange(1.0, len(rows) + 1)).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]

    g_padded = grads(forward_scores(model, seqs, pad))
    g_shared = grads(shared_prompt_scores(model, seqs, lens, pad))
    assert len(g_padded) == len(g_shared) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_padded, g_shared, strict=True))


def test_examples_are_grouped_by_their_prompt() -> None:
    from trainer.reward import Item, group_by_prompt

    def item(prompt: list[int], answer: list[int]) -> Item:
        return Item((prompt + answer,), 1.0, 1.0, (len(prompt),))

    a1, b1, a2, a3 = item([1, 2], [9]), item([3], [9]), item([1, 2], [8, 7]), item([1, 2], [])
    assert group_by_prompt([a1, b1, a2, a3]) == [(a1, a2, a3), (b1,)]  # order of first appearance
    assert group_by_prompt([a1, b1, a2, a3], most=2) == [(a1, a2), (a3,), (b1,)]


def test_a_reward_model_learns_thumbs_that_share_prompts(tiny_base: Path, tmp_path: Path) -> None:
    """Employees' feedback: several answers (thumbs) to each prompt. Trained a prompt at a time, the
    reward model separates good from bad answers to prompts it never saw; a step covers 2 prompts."""
    import random

    from tests.trainer.synthetic import BAD, GOOD, Thumb, _words, chat_prompt

    rng = random.Random(3)
    thumbs = []
    for _ in range(12):  # 12 prompts, 4 answers each: two good, two bad
        prompt = chat_prompt(_words(rng, 3, 5))
        for marker in (GOOD, BAD, GOOD, BAD):
            thumbs.append(Thumb(prompt, f"{_words(rng, 2, 5)} {marker} {_words(rng, 1, 4)}.", marker == GOOD))
    cfg = config(epochs=3, batch_size=2)
    result = train(tmp_path / "run", tiny_base, cfg, pairs=[], thumbs=thumbs, heldout_pairs=HELDOUT)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 3 * 6  # epochs × (12 prompts / 2 a step)
    assert manifest["metrics"]["examples_seen"] == 3 * len(thumbs)
    assert result.heldout["pair_accuracy"] >= 0.9
