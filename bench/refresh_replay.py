"""One refresh, as `kbloop simulate` runs it, on the feedback a finished round collected: designs side by
side on the same feedback.

A `bench/learning.sh` round collects feedback and refreshes in one command. To compare two versions of
the trainer on the SAME feedback, copy the round's data directory right after its collection (the
feedback store and the registry with the sqlite3 backup API, the index and models/ as they are) and run
this script on the copy with the round's options: it builds the trainer's configs exactly as `kbloop
simulate` does (simulation/config.py `refresh_configs`, re-seeded for round 1), runs one refresh, and
writes its report. Then `kbloop simulate-judge v0002 v0001 --data-dir COPY ...` judges the candidate on
questions no round asked, as bench/learning.sh does.

    python bench/refresh_replay.py --data-dir /work/learn/f0 --seed 0 --reward-max-steps 20 \
        --ppo-iterations 2 --out bench/results/refresh-replay-f0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/trainer.py would shadow the trainer package


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="A copy of a round's data directory.")
    parser.add_argument("--seed", type=int, default=0, help="The round's --seed.")
    parser.add_argument("--golden", type=Path, default=REPO / "examples/acme-handbook/golden.jsonl")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--ppo-iterations", type=int, default=4)
    parser.add_argument("--ppo-rollouts", type=int, default=8)
    parser.add_argument("--reward-epochs", type=int, default=2)
    parser.add_argument("--reward-max-steps", type=int, default=0)
    parser.add_argument("--eval-limit", type=int, default=32)
    parser.add_argument("--algo", default="ppo", choices=["ppo", "dpo", "kto"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from core.settings import Settings
    from simulation.config import refresh_configs
    from simulation.simulate import _reseeded
    from trainer.refresh import refresh
    from trainer.worker import refresh_lock

    settings = Settings(data_dir=args.data_dir, golden=args.golden)
    configs = refresh_configs(
        max_tokens=args.max_tokens,
        ppo_iterations=args.ppo_iterations,
        reward_epochs=args.reward_epochs,
        eval_limit=args.eval_limit,
        device=settings.device,
        algo=args.algo,
        ppo_rollouts=args.ppo_rollouts,
    )
    configs.reward = dataclasses.replace(configs.reward, max_steps=args.reward_max_steps)
    seeded = _reseeded(configs, args.seed)  # round 1 of `simulate --seed SEED`
    started = time.perf_counter()
    with refresh_lock(settings.data_dir):
        result = refresh(settings, seeded)
    seconds = time.perf_counter() - started
    report = result.report
    evaluation = report.evaluation
    out = {
        "data_dir": str(args.data_dir),
        "status": result.status,
        "candidate": result.candidate,
        "run_dir": str(result.run_dir),
        "seconds": round(seconds, 1),
        "timings_s": {k: round(v, 1) for k, v in report.timings_s.items()},
        "kl_to_champion": report.kl_to_champion,
        "refused": report.refused,
        "similarity": None
        if evaluation is None or evaluation.candidate is None or evaluation.champion is None
        else {"champion": evaluation.champion.similarity, "candidate": evaluation.candidate.similarity},
        "checks_win_rate": None if evaluation is None else evaluation.checks_win_rate,
        "gate_passed": None if report.gate is None else report.gate.passed,
        "configs": seeded.to_json(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "configs"}, indent=2, default=str))


if __name__ == "__main__":
    main()
