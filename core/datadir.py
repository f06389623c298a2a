"""`DataDir`: every path kbloop keeps under its data directory (`KBLOOP_DATA_DIR`), named once.

kbloop.db               the feedback store (answers, votes, comparisons, corrections)
.kbloop.lock            held by the process that serves or restores this folder
index/                  the retrieval index's versions (unless KBLOOP_INDEX_DIR names another)
golden.jsonl            the golden set (unless KBLOOP_GOLDEN names another)
models/                 model versions, aliases.json and registry.db
runs/                   one folder per training run (refresh, reward, dpo, simulate ...)
reward/latest.json      the reward model the next refresh warm-starts from
trainer/                the background trainer: state.json, lock, worker.log
logs/                   the generation engines' server logs
uploads/                documents uploaded through the UI, before ingestion
simulate/tokens.json    the simulated employees' API tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "kbloop.db"

    @property
    def lock(self) -> Path:
        return self.root / ".kbloop.lock"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def golden(self) -> Path:
        return self.root / "golden.jsonl"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def latest_reward(self) -> Path:
        return self.root / "reward" / "latest.json"

    @property
    def trainer(self) -> Path:
        return self.root / "trainer"

    @property
    def trainer_state(self) -> Path:
        return self.trainer / "state.json"

    @property
    def trainer_lock(self) -> Path:
        return self.trainer / "lock"

    @property
    def trainer_log(self) -> Path:
        return self.trainer / "worker.log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def simulate_tokens(self) -> Path:
        return self.root / "simulate" / "tokens.json"
