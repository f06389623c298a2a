"""PPO's forward passes with and without the shared prompt (trainer/shared_prompt.py), side by side.

A PPO iteration on CPU spends most of its time in forward passes over k answers to each prompt: the
policy+value pass and the reference pass while scoring, then forward+backward in the update. This
times both layouts on the shipped SmolLM2-135M with a LoRA adapter like PPO's (r 16 on q,k,v,o):
`padded` (each answer a full right-padded sequence, the layout before) and `grouped` (each prompt once,
its cache repeated for its answers). Token ids are random (cost does not depend on content); answer
lengths vary between half and all of --answer-tokens.

    python bench/ppo_forward.py [--prompts 8 --group 4 --prompt-tokens 700 --answer-tokens 48]

Prints and writes JSON (bench/results/ppo_forward.json): seconds per pass (median of --repeats), the
ratio padded/grouped, and the largest log-prob difference between the layouts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the packages, not bench/trainer.py, under their own names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=700)
    parser.add_argument("--answer-tokens", type=int, default=48)
    parser.add_argument("--mini-batch", type=int, default=8, help="answers per forward+backward")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ppo_forward.json"))
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.settings import Settings
    from registry.loading import base_model_path
    from trainer.losses import token_logprobs
    from trainer.shared_prompt import Grouped, grouped_forward
    from trainer.tokens import Encoded, pad_right

    settings = Settings()
    base = base_model_path(settings.model, Path(tempfile.mkdtemp(prefix="kbloop-ppo-forward-")))
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    vocab = model.config.vocab_size
    encoded: list[Encoded] = []
    for _ in range(args.prompts):
        prompt = torch.randint(100, vocab, (args.prompt_tokens,)).tolist()
        for _ in range(args.group):
            n = int(torch.randint(args.answer_tokens // 2, args.answer_tokens + 1, ()).item())
            encoded.append(Encoded(prompt + torch.randint(100, vocab, (n,)).tolist(), len(prompt)))

    def padded(rows: list[Encoded]) -> list[torch.Tensor]:
        ids, attention = pad_right([e.ids for e in rows], 0)
        first = min(e.prompt_len for e in rows)
        keep = ids.shape[1] - first + 1
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep, use_cache=False).logits
        logps = token_logprobs(logits[:, :-1], ids[:, ids.shape[1] - keep + 1 :])
        return [logps[r, e.prompt_len - first : len(e.ids) - first] for r, e in enumerate(rows)]

    def grouped(rows: list[Encoded]) -> list[torch.Tensor]:
        batch = Grouped.of(rows, 0)
        logits, _ = grouped_forward(model, batch)
        logps = token_logprobs(logits, batch.responses)
        return [logps[r][batch.mask[r].bool()] for r in range(len(rows))]

    def chunks(size: int) -> list[list[Encoded]]:
        return [encoded[i : i + size] for i in range(0, len(encoded), size)]

    def timed(fn: Any, train: bool) -> float:
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for rows in chunks(args.mini_batch):
                if train:
                    model.train()
                    loss = torch.stack([x.sum() for x in fn(rows)]).sum()
                    loss.backward()
                    model.zero_grad(set_to_none=True)
                else:
                    model.eval()
                    with torch.no_grad():
                        fn(rows)
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds)

    with torch.no_grad():
        diff = max(
            float((a - b).abs().max()) for a, b in zip(padded(encoded[:8]), grouped(encoded[:8]), strict=True)
        )
    arms: dict[str, Any] = {}
    for pass_name, train in (("forward (scoring)", False), ("forward+backward (update)", True)):
        row = {name: round(timed(fn, train), 2) for name, fn in (("padded", padded), ("grouped", grouped))}
        row["ratio"] = round(row["padded"] / row["grouped"], 2)
        arms[pass_name] = row
        print(f"{pass_name}: padded {row['padded']} s, grouped {row['grouped']} s: {row['ratio']}x")
    result = {
        "command": "python bench/ppo_forward.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "answers": len(encoded),
        "tokens_padded": sum(len(e.ids) for e in encoded),
        "tokens_grouped": args.prompts * args.prompt_tokens + sum(len(e.ids) - e.prompt_len for e in encoded),
        "max_logprob_difference": diff,
        "seconds": arms,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
