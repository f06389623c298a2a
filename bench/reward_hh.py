"""Reward model on real human preferences (HH-RLHF helpful pairs), side by side with TRL's RewardTrainer.

    python bench/reward_hh.py --arm trl     # TRL's RewardTrainer, then its held-out accuracy
    python bench/reward_hh.py --arm ours    # `kbloop train reward --from-jsonl` + `kbloop eval reward`
    python bench/reward_hh.py --arm padding # tokens processed: random vs length-grouped batches
    python bench/reward_hh.py --arm report  # the arms' JSON side by side (bench/results/reward_hh.json)

Data: ../shared/data/hh_helpful_dev.jsonl (3,000 pairs in TRL's standard prompt/chosen/rejected form).
Pairs whose longer side (prompt + answer + end-of-turn, tokenized as TRL does) exceeds `--max-length`
tokens are left out before the split, so that neither trainer cuts (ours) or drops (TRL) anything: both
see exactly the same pairs. The rest is shuffled with `--seed` and split into the first `--train` pairs
and the next `--test` pairs, written to `--work/{train,test}.jsonl` (the split is a pure function of the
file, the tokenizer, the max length and the seed).

- ours: the real commands, in subprocesses, with the CPU defaults of `RewardConfig` except
  `--max-length` and `--heldout-fraction 0` (the test file is the held-out set):
  `python -m cli.train reward --from-jsonl train.jsonl ...` then `kbloop eval reward --pairs test.jsonl`.
- trl: `trl.RewardTrainer` with TRL's defaults (lr 1e-4, linear decay, AdamW, random order) on the same
  train pairs, the same batch size, and exactly as many optimizer steps as ours takes by default (one
  epoch: `--train` / `--batch-size`; `--steps` overrides), the same LoRA adapter as ours
  (trainer/models.py `lora_config`: r 16, alpha 32 on q,k,v,o, `score` trained; `--trl-full` for TRL's
  full fine-tune, ~3x the CPU time), `gradient_checkpointing=False` (the same maths, faster on CPU),
  float32 on CPU. Its held-out scores are the model's own pooled outputs (what
  TRL's evaluation reads) on prompt + answer + eos, as TRL tokenizes them.

Accuracy = share of test pairs where chosen scores above rejected (ties count half,
trainer/metrics.py `pairwise_accuracy`) with a 95% Wilson interval (feedback/stats.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = REPO.parent.parent / "shared" / "data" / "hh_helpful_dev.jsonl"


def load_rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split(rows: list[dict[str, str]], tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Rows that fit `--max-length` on both sides, seeded shuffle, first --train / next --test."""

    def length(text: str) -> int:
        return len(tokenizer(text + tokenizer.eos_token)["input_ids"])

    fits = [
        r
        for r in rows
        if max(length(r["prompt"] + r["chosen"]), length(r["prompt"] + r["rejected"])) <= args.max_length
    ]
    random.Random(args.seed).shuffle(fits)
    if len(fits) < args.train + args.test:
        raise SystemExit(f"only {len(fits)} pairs fit {args.max_length} tokens; lower --train/--test")
    train, test = fits[: args.train], fits[args.train : args.train + args.test]
    args.work.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        (args.work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {"rows": len(rows), "fit_max_length": len(fits), "train": len(train), "test": len(test)}


def interval(margins: list[float]) -> dict[str, Any]:
    from feedback.stats import wilson_interval
    from trainer.metrics import pairwise_accuracy

    acc = pairwise_accuracy(margins)
    low, high = wilson_interval(acc * len(margins), len(margins))
    return {"pairs": len(margins), "accuracy": round(acc, 4), "ci95": [round(low, 4), round(high, 4)]}


def arm_trl(base: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    train = load_rows(args.work / "train.jsonl")
    test = load_rows(args.work / "test.jsonl")
    steps = args.steps or len(train) // args.batch_size
    config = RewardConfig(
        output_dir=str(args.work / "trl-out"),
        per_device_train_batch_size=args.batch_size,
        max_steps=steps,
        max_length=args.max_length,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        dataloader_num_workers=0,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        seed=args.seed,
        model_init_kwargs={"dtype": torch.float32},
    )
    from trainer.config import RewardConfig as OurConfig
    from trainer.models import lora_config

    peft = None if args.trl_full else lora_config(OurConfig(), "SEQ_CLS", modules_to_save=["score"])
    trainer: Any = RewardTrainer(
        model=base,
        args=config,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        peft_config=peft,
    )
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    model: Any = trainer.model
    model.eval()
    pad = tokenizer.pad_token_id
    texts = [r["prompt"] + r["chosen"] + tokenizer.eos_token for r in test]
    texts += [r["prompt"] + r["rejected"] + tokenizer.eos_token for r in test]
    started = time.perf_counter()
    scores: list[float] = []
    with torch.no_grad():
        for at in range(0, len(texts), 8):
            ids = [tokenizer(t)["input_ids"] for t in texts[at : at + 8]]
            width = max(map(len, ids))
            batch = torch.tensor([s + [pad] * (width - len(s)) for s in ids])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids])
            scores += model(input_ids=batch, attention_mask=mask, use_cache=False).logits[:, 0].tolist()
            print(f"trl eval {min(at + 8, len(texts))}/{len(texts)}", flush=True)
    eval_s = time.perf_counter() - started
    n = len(test)
    return {
        "arm": "trl",
        "steps": steps,
        "train_pairs": len(train),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "config": {
            k: getattr(config, k) for k in ("learning_rate", "lr_scheduler_type", "optim", "warmup_steps")
        },
        "heldout": interval([c - r for c, r in zip(scores[:n], scores[n:], strict=True)]),
    }


def arm_ours(base: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KBLOOP_DATA_DIR": str(args.work / "data"),
        "KBLOOP_MODEL": base,
    }
    out = args.work / "ours-model"
    work, length = args.work, str(args.max_length)
    train = [sys.executable, "-m", "cli.train", "reward", "--from-jsonl", str(work / "train.jsonl"),
             "--heldout-fraction", "0", "--max-length", length, "--batch-size", str(args.batch_size),
             "--seed", str(args.seed), "--device", "cpu", "--output", str(out)]  # fmt: skip
    train += [x for opt in args.ours_option for x in opt.split("=", 1)]
    started = time.perf_counter()
    subprocess.run(train, cwd=REPO, env=env, check=True)
    train_s = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    started = time.perf_counter()
    evaluate = [sys.executable, "-c", "from cli.app import app; app()", "eval", "reward",
                "--model", str(out / "output"), "--pairs", str(work / "test.jsonl"), "--max-length", length,
                "--device", "cpu", "--json", "--margins-out", str(work / "ours-margins.json")]  # fmt: skip
    report = json.loads(
        subprocess.run(evaluate, cwd=REPO, env=env, check=True, stdout=subprocess.PIPE).stdout
    )
    eval_s = time.perf_counter() - started
    margins = json.loads((args.work / "ours-margins.json").read_text())
    return {
        "arm": "ours",
        "command": " ".join(train),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "eval_report": report,
        "run_metrics": manifest.get("metrics", {}),
        "heldout": interval(margins),
    }


def arm_padding(base: str, args: argparse.Namespace) -> dict[str, Any]:
    """Tokens the forward passes process (real + padding) for one training epoch and one evaluation of
    the split, in our trainer's orders: the work that length grouping saves, counted, not timed."""
    from trainer.jsonl import read_jsonl_preferences
    from trainer.loop import epoch_order, grouped_order
    from trainer.models import load_tokenizer
    from trainer.reward import encode_items, length_batches

    tokenizer = load_tokenizer(base)
    train = encode_items(tokenizer, read_jsonl_preferences(args.work / "train.jsonl"), (), args.max_length)
    test = encode_items(tokenizer, read_jsonl_preferences(args.work / "test.jsonl"), (), args.max_length)
    longest = [max(len(s) for s in item.seqs) for item in train]
    order = epoch_order(len(train), args.seed, 0)
    grouped = grouped_order(order, longest, args.batch_size, args.seed, 0)

    def train_tokens(o: list[int]) -> int:  # every batch is padded to its longest sequence
        batches = [o[i : i + args.batch_size] for i in range(0, len(o), args.batch_size)]
        return sum(2 * len(b) * max(longest[i] for i in b) for b in batches)

    seqs = [len(s) for item in test for s in item.seqs]
    in_order = sum(len(seqs[i : i + 8]) * max(seqs[i : i + 8]) for i in range(0, len(seqs), 8))
    by_length = sum(len(b) * max(seqs[i] for i in b) for b in length_batches(seqs, 16))
    real_train = sum(len(s) for item in train for s in item.seqs)
    return {
        "arm": "padding",
        "train_real_tokens": real_train,
        "train_tokens_random_batches": train_tokens(order),
        "train_tokens_grouped_batches": train_tokens(grouped),
        "eval_real_tokens": sum(seqs),
        "eval_tokens_input_order_batch8": in_order,
        "eval_tokens_by_length_batch16": by_length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arm", choices=["split", "trl", "ours", "padding", "report"], required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kbloop-reward-hh"))
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=0, help="TRL's optimizer steps (0: one epoch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--trl-full", action="store_true", help="TRL full fine-tune (default: our LoRA)")
    parser.add_argument("--ours-option", action="append", default=[], help="extra `--name=value` for ours")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reward_hh.json")
    args = parser.parse_args()

    from registry.loading import base_model_path

    base = base_model_path("", args.models_dir)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.arm == "split" or not (args.work / "train.jsonl").exists():
        from transformers import AutoTokenizer

        info = split(load_rows(args.data), AutoTokenizer.from_pretrained(base), args)
        (args.work / "split.json").write_text(
            json.dumps({**info, **{"seed": args.seed, "max_length": args.max_length}})
        )
        print(json.dumps(info), flush=True)
    if args.arm in ("trl", "ours", "padding"):
        result = {"trl": arm_trl, "ours": arm_ours, "padding": arm_padding}[args.arm](base, args)
        result["date"] = date
        (args.work / f"{args.arm}.json").write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result, indent=2, default=str), flush=True)
    if args.arm == "report":
        report = {"split": json.loads((args.work / "split.json").read_text())}
        for arm in ("ours", "trl", "padding"):
            if (args.work / f"{arm}.json").exists():
                report[arm] = json.loads((args.work / f"{arm}.json").read_text())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
