"""Reward-model benchmark: training throughput beside TRL's RewardTrainer, and held-out accuracy.

    python bench/trainer_reward.py                      # 69 min on a 2-core box shared with other jobs
    python bench/trainer_reward.py --skip-accuracy --steps 4 --out /tmp/reward-speed.json   # speed only
    python bench/trainer_reward.py --trl-checkpointing   # also TRL with its default gradient checkpointing

Data: preference pairs built from the golden set (examples/acme-handbook/golden.jsonl, answerable
questions). The prompt is what the service sends (rag/prompting.py): one short passage from the
question's source document (the lines sharing most words with the golden answer, cut to fit) and the
question, through the policy's chat template. The chosen answer is the golden answer citing [1]; the
rejected one is (kind `other`) another question's golden answer, citing [1]; (`numbers`) the golden
answer with every number changed, citing [1]; (`rambling`) a vague, uncited answer that could fit any
question. Every response ends with the template's end-of-turn token. Prompts are cut so that every
prompt + response fits `--max-length`: nothing is truncated by us, nothing is filtered out by TRL.

1. Throughput. Our trainer (trainer/reward.py: `load_reward_model`, `encode_items`, `reward_loss` and
   trainer/loop.py `fit`, exactly as `train_reward` wires them, minus the scoring and evaluation it does
   after training) and TRL's `RewardTrainer` train the same base (SmolLM2-135M, float32, CPU) on the same
   `--pairs` pairs (standard prompt/chosen/rejected strings for TRL), with the same batch size, max length,
   LoRA (trainer/models.py `lora_config`: r=16, alpha=32, dropout 0 on q/k/v/o, `score` trainable),
   learning rate, gradient clipping, no gradient accumulation, and the same number of steps. TRL gets the
   pairs in our trainer's epoch order with sequential sampling, so both see the very same batches (the
   padded lengths, hence the work, are equal); the benchmark checks that TRL's token ids equal ours.
   TRL: `bf16=False`, `use_cpu=True`, `gradient_checkpointing=False` (TRL defaults to True, which
   recomputes the forward pass; ours does not checkpoint; `--trl-checkpointing` adds TRL with it as a
   third arm), `dataloader_num_workers=0`, no evaluation, no saving, default logging (every 10 steps),
   `center_rewards_coefficient=None`; its other settings are its defaults (e.g. the fused AdamW). Ours:
   `RewardConfig` defaults (a metrics line per step and a resumable checkpoint every 10 steps).
   Timing: each trainer runs in its own process; both load and take their first step at once (untimed),
   then they take turns, one optimizer step each, the order rotating every step, so a noisy machine
   (background load that comes and goes) hurts both alike and they never compete for the cores. A step
   is timed inside the trainer's process from the moment it is let go to the end of its optimizer step
   (ours: in `Run.log`, called after the optimizer and scheduler step; TRL: in a
   `TrainerCallback.on_step_end`), so it includes fetching and collating the batch, forward, backward,
   clipping, the optimizer step and each trainer's per-step bookkeeping. The first `--warmup` steps are
   not counted; model loading, tokenization and everything after the last step are outside the clock.
   Reported: pairs/s over the timed steps (one example = one pair = two sequences) per round and the
   median over `--rounds` (the arm order is reversed every round), process CPU seconds per pair (less
   sensitive to other load on the machine), and the ratio ours / TRL (target >= 1.0).
2. Accuracy. The golden questions are split 80/20 by question (no question, and no answer used as a
   rejected one, on both sides), `train_reward` trains on the training side's pairs (all three kinds) and
   evaluates the held-out pairs (`trainer.reward.evaluate`: pairwise accuracy, ECE, Brier), overall and
   per kind, beside the untrained model (fresh score head) on the same held-out pairs.

The accuracy here is on golden-derived pairs; real human preferences (HH-RLHF pairs in the shared data
folder) are measured beside TRL by bench/reward_hh.py. Writes bench/results/trainer_reward.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.evaluation import GoldenQuestion, load_golden  # noqa: E402
from rag.prompting import Passage, question_message  # noqa: E402
from registry.loading import base_model_path  # noqa: E402

CORPUS = REPO / "examples" / "acme-handbook"
KINDS = ("other", "numbers", "rambling")
RAMBLING = (
    "Thanks for asking, this comes up a lot. The rules depend on your office, your team and your role, "
    "and they change from time to time, so it is hard to give one answer that fits everyone. I would "
    "check the intranet or ask your manager, who can point you in the right direction.",
    "Great question! There are a few things to keep in mind here. Every situation is a bit different, "
    "and it usually helps to talk to the right people early. In general, follow the usual process and "
    "reach out to the relevant team if anything is unclear.",
    "That depends. Some people do it one way and some another, and both can work. It is best to use your "
    "judgement, keep your manager informed, and look for the latest guidance, because policies like this "
    "are reviewed regularly.",
)
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Pair:
    """A preference pair as trainer/reward.py reads it (`.prompt .chosen .rejected .weight`)."""

    prompt: str
    chosen: str
    rejected: str
    weight: float
    question: str  # golden id
    kind: str  # one of KINDS


# ---------------------------------------------------------------------------------------------- data


def content_words(text: str) -> set[str]:
    from rag.lexical import STOPWORDS

    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2}


def source_lines(sources: tuple[str, ...]) -> list[str]:
    """The non-empty lines of the question's source documents, as the loaders parse them."""
    from rag.loaders import load_document

    lines: list[str] = []
    for source in sources:
        doc = load_document(CORPUS / source, source, 20 * 1024 * 1024)
        for section in doc.sections:
            lines += [line.strip() for line in section.text.splitlines() if line.strip()]
    return lines


def short_passage(lines: list[str], answer: str, count: Any, budget: int) -> str:
    """The lines sharing most content words with the answer, in document order, within `budget` tokens
    (the best line alone is cut to the budget when it does not fit)."""
    wanted = content_words(answer)
    ranked = sorted(range(len(lines)), key=lambda i: -len(content_words(lines[i]) & wanted))
    picked: list[int] = []
    used = 0
    for i in ranked:
        if not content_words(lines[i]) & wanted:
            break
        cost = count(lines[i]) + 1
        if used + cost <= budget:
            picked.append(i)
            used += cost
    if not picked and ranked:
        words = lines[ranked[0]].split()
        while words and count(" ".join(words)) > budget:
            words = words[:-1]
        return " ".join(words)
    return "\n".join(lines[i] for i in sorted(picked))


def cite(answer: str) -> str:
    """The answer citing passage [1], as the service's instruction asks."""
    answer = answer.strip()
    return f"{answer[:-1]} [1]{answer[-1]}" if answer[-1:] in ".!?" else f"{answer} [1]"


def change_numbers(answer: str) -> str | None:
    """Every number with its last digit moved by 3 (451 -> 454, 20 -> 23); None when there is none."""
    if not _NUMBER.search(answer):
        return None
    return _NUMBER.sub(lambda m: m.group()[:-1] + str((int(m.group()[-1]) + 3) % 10), answer)


def split_by_question(
    golden: list[GoldenQuestion], heldout_fraction: float, seed: int
) -> tuple[list[GoldenQuestion], list[GoldenQuestion]]:
    rows = sorted(golden, key=lambda g: g.id)
    random.Random(seed).shuffle(rows)
    cut = round(len(rows) * heldout_fraction)
    return rows[cut:], rows[:cut]


def build_pairs(
    questions: list[GoldenQuestion], tokenizer: Any, max_length: int, passage_tokens: int, seed: int
) -> list[Pair]:
    """Three pairs per question (two where the answer has no number), rejected answers drawn from
    `questions` only, prompts sized so that every prompt + response fits `max_length` tokens."""
    rng = random.Random(seed)
    eot = tokenizer.eos_token

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(question: str, passage: str, source: str) -> str:
        message = question_message([Passage(1, "", source, "", "", passage)], question)
        text: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
        )
        return text

    pairs: list[Pair] = []
    for g in questions:
        others = [o for o in questions if o.id != g.id]
        same_topic = [o for o in others if o.category == g.category] or others
        rejected = {
            "other": cite(rng.choice(same_topic).answer),
            "numbers": (lambda t: cite(t) if t else None)(change_numbers(g.answer)),
            "rambling": rng.choice(RAMBLING),
        }
        chosen = cite(g.answer) + eot
        responses = [chosen] + [r + eot for r in rejected.values() if r]
        room = max_length - count(render(g.question, "", g.sources[0])) - max(map(count, responses)) - 4
        passage = short_passage(source_lines(g.sources), g.answer, count, min(passage_tokens, room))
        prompt = render(g.question, passage, g.sources[0])
        for kind in KINDS:
            text = rejected[kind]
            if text:
                pairs.append(Pair(prompt, chosen, text + eot, 1.0, g.id, kind))
    return pairs


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    path.write_text(json.dumps([asdict(p) for p in pairs]))


def read_pairs(path: Path) -> list[Pair]:
    return [Pair(**row) for row in json.loads(path.read_text())]


# ------------------------------------------------------------------------- throughput (subprocesses)


def batches_in_order(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """The batches of the first epoch, as trainer/loop.py `fit` draws them."""
    from trainer.loop import epoch_order

    order = epoch_order(n, seed, 0)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class Gate:
    """Called at the end of every optimizer step inside a worker: notes the time, tells the benchmark the
    step is done and waits until the benchmark lets the next step start (so that the trainers being
    compared take turns, one step at a time, and never run at once)."""

    def __init__(self, fds: str) -> None:
        self.go, self.done = (int(fd) for fd in fds.split(","))
        self.ends: list[tuple[float, float]] = []  # (wall, process CPU) at the end of each step
        self.starts: list[tuple[float, float]] = []  # (wall, process CPU) when the next step was let go

    def step_end(self) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))
        os.write(self.done, b"r")
        if os.read(self.go, 1) != b"g":
            raise RuntimeError("the benchmark went away")
        self.starts.append((time.perf_counter(), time.process_time()))

    def steps(self) -> list[tuple[float, float]]:
        """(wall s, CPU s) of steps 2, 3, ...: from being let go to the end of the step."""
        return [(e[0] - s[0], e[1] - s[1]) for s, e in zip(self.starts, self.ends[1:], strict=False)]


def run_ours(
    base: str, pairs: list[Pair], args: argparse.Namespace, gate: Gate, work: Path
) -> dict[str, Any]:
    """Our reward trainer, wired as `train_reward` wires it; the gate sits in `Run.log` (called after the
    optimizer and scheduler step of every step: `log_every` is 1)."""
    from trainer.config import RewardConfig
    from trainer.loop import accelerator_for, fit
    from trainer.models import load_reward_model, load_tokenizer, pick_device
    from trainer.reward import encode_items, reward_loss
    from trainer.runs import Run

    class GatedRun(Run):
        def log(self, step: int, values: dict[str, Any]) -> None:
            gate.step_end()
            super().log(step, values)

    cfg = RewardConfig(
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.warmup + args.steps,
        seed=args.seed,
        device="cpu",
    )
    tokenizer = load_tokenizer(base)
    accelerator = accelerator_for(pick_device(cfg.device))
    model = load_reward_model(base, cfg, lora=cfg.lora, pad_token_id=tokenizer.pad_token_id)
    items = encode_items(tokenizer, pairs, (), cfg.max_length)
    pad = int(tokenizer.pad_token_id)
    fitted = fit(
        model=model,
        examples=items,
        loss_fn=lambda m, batch: reward_loss(m, batch, pad, cfg.thumbs_weight),
        cfg=cfg,
        run=GatedRun.open(work / "run", "reward", cfg.to_json()),
        accelerator=accelerator,
        desc="reward model (ours)",
    )
    return {
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "optimizer": "trainer.loop.adamw (torch AdamW, fused=True on CPU)",
        "last_loss": fitted.last.get("loss"),
        "sequences": [list(s) for item in items for s in item.seqs],
    }


def run_trl(base: str, pairs: list[Pair], args: argparse.Namespace, gate: Gate, work: Path) -> dict[str, Any]:
    """TRL's RewardTrainer on the same pairs, in our epoch order, sampled sequentially; the gate sits in
    a `TrainerCallback.on_step_end` (called after the optimizer and scheduler step)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from trainer.config import RewardConfig
    from trainer.models import load_tokenizer, lora_config

    class StepGate(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            gate.step_end()

    ours = RewardConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    order = [i for batch in batches_in_order(len(pairs), args.batch_size, args.seed) for i in batch]
    rows = [
        {"prompt": pairs[i].prompt, "chosen": pairs[i].chosen, "rejected": pairs[i].rejected} for i in order
    ]
    config = TRLRewardConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps,
        learning_rate=ours.learning_rate,
        weight_decay=ours.weight_decay,
        max_grad_norm=ours.max_grad_norm,
        warmup_steps=0,
        max_length=args.max_length,
        center_rewards_coefficient=None,
        gradient_checkpointing=args.worker == "trl-checkpointing",  # TRL's default is True; ours has none
        bf16=False,
        fp16=False,
        use_cpu=True,
        dataloader_num_workers=0,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        train_sampling_strategy="sequential",
        model_init_kwargs={"dtype": torch.float32},
    )
    trainer: Any = RewardTrainer(
        model=base,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(base),
        peft_config=lora_config(ours, "SEQ_CLS", modules_to_save=["score"]),
        callbacks=[StepGate()],
    )
    data: Any = trainer.train_dataset
    sequences: list[list[int]] = []  # in the pairs' own order, chosen then rejected (as ours)
    if len(data) == len(pairs):
        kept = {order[row]: (data[row]["chosen_ids"], data[row]["rejected_ids"]) for row in range(len(data))}
        sequences = [list(s) for i in range(len(pairs)) for s in kept[i]]
    trainer.train()
    return {
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "optimizer": f"{type(trainer.optimizer.optimizer).__name__} (optim={config.optim})",
        "gradient_checkpointing": config.gradient_checkpointing,
        "kept_pairs": len(data),
        "sequences": sequences,
    }


def worker(args: argparse.Namespace) -> None:
    pairs = read_pairs(args.pairs_file)
    gate = Gate(args.gate)
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_ours if args.worker == "ours" else run_trl  # trl | trl-checkpointing
        result = runner(args.base, pairs, args, gate, Path(tmp))
    result["steps"] = gate.steps()
    args.result_file.write_text(json.dumps(result))


@dataclass
class Worker:
    arm: str
    process: subprocess.Popen[bytes]
    go: int  # fd the benchmark writes "g" to
    done: int  # fd the worker writes "r" to
    log: Path
    result: Path

    def wait_step(self) -> None:
        if os.read(self.done, 1) != b"r":
            self.process.wait()
            raise RuntimeError(
                f"the {self.arm} run failed; the end of {self.log}:\n{self.log.read_text()[-3000:]}"
            )


def start_worker(arm: str, base: str, pairs_file: Path, args: argparse.Namespace, work: Path) -> Worker:
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    result = work / f"{arm}-{time.monotonic_ns()}.json"
    log = work / f"{arm}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", arm, "--base", base,
               "--pairs-file", str(pairs_file), "--result-file", str(result), "--gate", f"{go_r},{done_w}",
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
               "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--seed", str(args.seed)]  # fmt: skip
    with log.open("ab") as fh:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, pass_fds=(go_r, done_w)
        )
    os.close(go_r)
    os.close(done_w)
    return Worker(arm, process, go_w, done_r, log, result)


def interleaved_round(
    arms: list[str], base: str, pairs_file: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One process per arm, all loaded at once; after the first step (run together, untimed) they take
    turns, one step each, the order of turns rotating every step."""
    workers = [start_worker(arm, base, pairs_file, args, work) for arm in arms]
    try:
        for w in workers:
            w.wait_step()  # the end of step 1
        for step in range(2, args.warmup + args.steps + 1):
            shift = step % len(workers)
            for w in workers[shift:] + workers[:shift]:
                os.write(w.go, b"g")
                w.wait_step()
        for w in workers:
            os.write(w.go, b"g")  # past the last step: finish
        out: dict[str, Any] = {}
        for w in workers:
            if w.process.wait() != 0:
                raise RuntimeError(
                    f"the {w.arm} run failed; the end of {w.log}:\n{w.log.read_text()[-3000:]}"
                )
            out[w.arm] = json.loads(w.result.read_text())
        return out
    finally:
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()
                w.process.wait()
            os.close(w.go)
            os.close(w.done)


def throughput(base: str, pairs: list[Pair], args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """Our trainer and TRL's, step by step in turns, on the same pairs; per-arm medians and the ratio."""
    from trainer.reward import encode_items

    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    pairs_file = work / "pairs.json"
    write_pairs(pairs_file, pairs)
    items = encode_items(tokenizer, pairs, (), args.max_length)
    batches = batches_in_order(len(pairs), args.batch_size, args.seed)[args.warmup : args.warmup + args.steps]
    real = sum(len(s) for b in batches for i in b for s in items[i].seqs)
    padded = sum(2 * len(b) * max(len(s) for i in b for s in items[i].seqs) for b in batches)
    arms = ["ours", "trl"] + (["trl-checkpointing"] if args.trl_checkpointing else [])
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for r in range(args.rounds):
        print(
            f"throughput: round {r + 1}/{args.rounds}: {', '.join(arms)} taking turns, one step each ...",
            flush=True,
        )
        for arm, result in interleaved_round(
            arms if r % 2 == 0 else arms[::-1], base, pairs_file, args, work
        ).items():
            timed = result.pop("steps")[args.warmup - 1 :]  # steps warmup+1 .. warmup+steps
            if len(timed) != args.steps:
                raise RuntimeError(f"{arm}: {len(timed)} timed steps recorded, expected {args.steps}")
            wall, cpu = sum(w for w, _ in timed), sum(c for _, c in timed)
            result |= {
                "pairs_per_s": round(args.steps * args.batch_size / wall, 4),
                "cpu_s_per_pair": round(cpu / (args.steps * args.batch_size), 3),
                "timed_s": round(wall, 2),
                "step_s": [round(w, 2) for w, _ in timed],
            }
            print(f"  {arm}: {result['pairs_per_s']} pairs/s, {result['cpu_s_per_pair']} CPU s/pair, "
                  f"steps {result['step_s']} s", flush=True)  # fmt: skip
            runs[arm].append(result)
    reference = runs["ours"][0]["sequences"]
    summary: dict[str, Any] = {"arms": arms, "rounds": args.rounds}
    for arm, results in runs.items():
        rate = statistics.median(r["pairs_per_s"] for r in results)
        summary[arm] = {
            "pairs_per_s_median": round(rate, 4),
            "real_tokens_per_s_median": round(real / (args.steps * args.batch_size) * rate, 1),
            "cpu_s_per_pair_median": round(statistics.median(r["cpu_s_per_pair"] for r in results), 3),
            "runs": [
                {k: r[k] for k in ("pairs_per_s", "cpu_s_per_pair", "timed_s", "step_s")} for r in results
            ],
            "token_ids_equal_ours": all(r.pop("sequences") == reference for r in results),
            **{k: v for k, v in results[0].items() if k in ("trainable_params", "optimizer", "kept_pairs")},
        }
    summary["timed_batches"] = {
        "pairs": args.steps * args.batch_size,
        "real_tokens": real,
        "padded_tokens": padded,
    }
    ours = summary["ours"]
    for arm in arms[1:]:
        summary[f"ratio_ours_over_{arm}"] = round(
            ours["pairs_per_s_median"] / summary[arm]["pairs_per_s_median"], 3
        )
        summary[f"cpu_ratio_{arm}_over_ours"] = round(
            summary[arm]["cpu_s_per_pair_median"] / ours["cpu_s_per_pair_median"], 3
        )
    return summary


# ----------------------------------------------------------------------------------------- accuracy


def heldout_by_kind(model: Any, tokenizer: Any, heldout: list[Pair], max_length: int) -> dict[str, Any]:
    """Pairwise accuracy, ECE and Brier (trainer/metrics.py, as `evaluate` computes them) over all held-out
    pairs and per kind of rejected answer, from one scoring pass."""
    from trainer import metrics as M
    from trainer.reward import score

    prompts = [p.prompt for p in heldout]
    chosen = score(model, tokenizer, prompts, [p.chosen for p in heldout], max_length=max_length)
    rejected = score(model, tokenizer, prompts, [p.rejected for p in heldout], max_length=max_length)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    out: dict[str, Any] = {}
    for kind in ("all", *KINDS):
        m = [x for x, p in zip(margins, heldout, strict=True) if kind in ("all", p.kind)]
        if m:
            out[kind] = {
                "pairs": len(m),
                "pair_accuracy": round(M.pairwise_accuracy(m), 4),
                "ece": round(M.expected_calibration_error(m), 4),
                "brier": round(M.brier_score(m), 4),
                "mean_margin": round(sum(m) / len(m), 4),
            }
    return out


def accuracy(
    base: str, train: list[Pair], heldout: list[Pair], args: argparse.Namespace, tokenizer: Any
) -> dict[str, Any]:
    """`train_reward` on the training pairs; held-out figures from its own `evaluate`, and per kind."""
    from trainer.config import RewardConfig
    from trainer.models import load_reward_model
    from trainer.reward import load_for_scoring, train_reward
    from trainer.runs import Run

    cfg = RewardConfig(
        batch_size=args.batch_size, max_length=args.max_length, epochs=args.accuracy_epochs, seed=args.seed
    )
    untrained = load_reward_model(base, cfg, lora=True, pad_token_id=tokenizer.pad_token_id)
    before = heldout_by_kind(untrained, tokenizer, heldout, args.max_length)
    del untrained
    print(f"accuracy: untrained {before['all']}; training on {len(train)} pairs ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.open(Path(tmp) / "run", "reward", cfg.to_json())
        started = time.perf_counter()
        result = train_reward(base=base, cfg=cfg, run=run, pairs=train, heldout_pairs=heldout)
        seconds = time.perf_counter() - started
        model, tok, _stats = load_for_scoring(result.folder, device="cpu")
        after = heldout_by_kind(model, tok, heldout, args.max_length)
    return {
        "config": cfg.to_json(),
        "train_pairs": len(train),
        "heldout_pairs": len(heldout),
        "train_questions": len({p.question for p in train}),
        "heldout_questions": len({p.question for p in heldout}),
        "heldout_evaluate": {k: round(v, 4) for k, v in result.heldout.items()},
        "heldout_untrained_by_kind": before,
        "heldout_trained_by_kind": after,
        "train_evaluate": {k: round(v, 4) for k, v in result.train.items()},
        "train_reward_s": round(seconds, 1),
        "fit_pairs_per_s": round(result.examples_per_s, 4),
    }


# --------------------------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    import transformers

    versions: dict[str, str | None] = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("peft", "accelerate", "trl"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), **versions}  # fmt: skip


def length_stats(tokenizer: Any, pairs: list[Pair], max_length: int) -> dict[str, Any]:
    from trainer.reward import encode_items

    lengths = [len(s) for item in encode_items(tokenizer, pairs, (), 10**9) for s in item.seqs]
    return {"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1), "max": max(lengths),
            "over_max_length": sum(n > max_length for n in lengths)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="", help="HF folder or hub id; empty = the bundled SmolLM2-135M")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--golden", type=Path, default=CORPUS / "golden.jsonl")
    parser.add_argument("--pairs", type=int, default=64, help="pairs in the throughput runs")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step (both trainers)")
    parser.add_argument("--max-length", type=int, default=256, help="longest prompt + response (tokens)")
    parser.add_argument("--passage-tokens", type=int, default=96, help="longest context passage (tokens)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each run")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of interleaved runs (order reversed)")
    parser.add_argument(
        "--trl-checkpointing",
        action="store_true",
        help="also time TRL with its default gradient_checkpointing=True (a third arm)",
    )
    parser.add_argument("--questions", type=int, default=0, help="use the first N golden questions (0: all)")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--accuracy-epochs", type=int, default=1, help="RewardConfig's default: 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "trainer_reward.json")
    # one run of one trainer, in a subprocess of the benchmark
    parser.add_argument("--worker", choices=["ours", "trl", "trl-checkpointing"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.warmup < 1 or args.pairs < (args.warmup + args.steps) * args.batch_size:
        parser.error("need --warmup >= 1 and --pairs >= (--warmup + --steps) x --batch-size (one epoch)")

    from trainer.models import load_tokenizer

    started = time.perf_counter()
    base = base_model_path(args.model, args.models_dir)
    tokenizer = load_tokenizer(base)
    golden = [g for g in load_golden(args.golden) if g.answerable and g.sources]
    if args.questions:
        golden = golden[: args.questions]
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "model": base,
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("worker", "base", "pairs_file", "result_file", "gate")
        },
    }
    results["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in results["settings"].items()}
    if not args.skip_throughput:
        everything = build_pairs(golden, tokenizer, args.max_length, args.passage_tokens, args.seed)
        pairs = random.Random(args.seed).sample(everything, args.pairs)
        results["throughput_data"] = {
            "pairs": len(pairs),
            "kinds": {k: sum(p.kind == k for p in pairs) for k in KINDS},
            "tokens_per_sequence": length_stats(tokenizer, pairs, args.max_length),
        }
        print(json.dumps(results, indent=1), flush=True)
        results["throughput"] = throughput(base, pairs, args, tokenizer)
        print(json.dumps(results["throughput"], indent=1), flush=True)
    if not args.skip_accuracy:
        train_q, heldout_q = split_by_question(golden, args.heldout_fraction, args.seed)
        train = build_pairs(train_q, tokenizer, args.max_length, args.passage_tokens, args.seed)
        heldout = build_pairs(heldout_q, tokenizer, args.max_length, args.passage_tokens, args.seed + 1)
        assert not {p.question for p in train} & {p.question for p in heldout}
        results["accuracy"] = accuracy(base, train, heldout, args, tokenizer)
        results["accuracy"]["tokens_per_sequence"] = length_stats(tokenizer, train + heldout, args.max_length)
        results["accuracy"]["public_preference_data"] = "HH-RLHF pairs: bench/reward_hh.py"
        print(json.dumps(results["accuracy"], indent=1), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
