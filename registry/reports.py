"""The typed results of a refresh, in the form the version's `training.json` keeps them.

- `RefreshReport`: what the pipeline measured (trainer/refresh.py builds it): the policy update's
  metrics, each phase's time, the `Evaluation` and the `GateVerdict`.
- `Evaluation`: candidate and champion side by side: each one's golden-set `ModelSummary`, the deltas,
  the win rates of the judges (reward model, answer checks) and what they were measured on.
- `GateVerdict`: registry/gate.py's `Check`s on a report, and whether all passed.

The gate, the Models tab, `kbloop models show` and `kbloop simulate` read these fields, never string
keys. `to_json` writes the manifest's JSON as it always was, and `from_json` reads any stored report:
keys a class does not name are kept in its `extra` and written back, and a missing key reads as None.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _number(value: Any) -> float | None:
    """A finite number as float; anything else (None, NaN, text) as None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(float(value)) else float(value)


def _known(cls: type[Any], data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the fields of `cls` found in `data`, the other keys) of a stored JSON object (not a dict: none)."""
    if not isinstance(data, dict):
        return {}, {}
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


def _json(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A report dataclass as its stored JSON: its named fields, then `extra`."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in ("extra", *skip)}
    return {**out, **obj.extra}


@dataclass(frozen=True)
class ModelSummary:
    """One model's answers to the golden questions (trainer/evaluation.py `PolicyReport.summary`)."""

    similarity: float | None = None
    citation_correct: float | None = None
    refusal_rate_unanswerable: float | None = None
    length_tokens: float | None = None
    reward: float | None = None
    questions: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> ModelSummary | None:
        if not isinstance(data, dict) or not data:
            return None
        known, extra = _known(cls, data)
        return cls(**{k: _number(v) for k, v in known.items()}, extra=extra)

    def to_json(self) -> dict[str, Any]:
        return _json(self)


@dataclass(frozen=True)
class Evaluation:
    """Candidate vs champion. `golden_set` is "missing" when the deployment has no golden set (then
    `candidate`/`champion` are None and the judges ran on held-out logged prompts only)."""

    golden_set: str | None = None
    golden_path: str | None = None
    candidate: ModelSummary | None = None
    champion: ModelSummary | None = None
    delta_similarity: float | None = None
    delta_reward: float | None = None
    length_drift: float | None = None
    reward_hacking_suspected: bool = False
    reward_win_rate: float | None = None  # the gate's figure, on `reward_win_rate_basis`
    reward_win_rate_basis: str | None = None  # "logged", "golden+logged" or "golden"
    reward_win_rate_prompts: int | None = None  # held-out logged prompts judged
    reward_win_rate_golden: float | None = None
    reward_win_rate_logged: float | None = None
    reward_optimised: bool = False  # the policy was trained against the reward model: reported only
    checks_win_rate: float | None = None  # the answer checks' verdict, on `checks_win_rate_basis`
    checks_win_rate_basis: str | None = None
    answers: tuple[dict[str, Any], ...] = ()  # golden questions with both models' answers
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def golden_missing(self) -> bool:
        return self.golden_set == "missing"

    @classmethod
    def from_json(cls, data: Any) -> Evaluation | None:
        if not isinstance(data, dict) or not data:
            return None
        known, extra = _known(cls, data)
        numbers = {
            k: _number(known.get(k))
            for k in (
                "delta_similarity",
                "delta_reward",
                "length_drift",
                "reward_win_rate",
                "reward_win_rate_golden",
                "reward_win_rate_logged",
                "checks_win_rate",
            )
        }
        prompts = known.get("reward_win_rate_prompts")
        return cls(
            golden_set=known.get("golden_set"),
            golden_path=known.get("golden_path"),
            candidate=ModelSummary.from_json(known.get("candidate")),
            champion=ModelSummary.from_json(known.get("champion")),
            reward_hacking_suspected=bool(known.get("reward_hacking_suspected")),
            reward_win_rate_basis=known.get("reward_win_rate_basis"),
            reward_win_rate_prompts=int(prompts) if isinstance(prompts, int | float) else None,
            reward_optimised=bool(known.get("reward_optimised")),
            checks_win_rate_basis=known.get("checks_win_rate_basis"),
            answers=tuple(known.get("answers") or ()),
            extra=extra,
            **numbers,
        )

    def to_json(self) -> dict[str, Any]:
        out = _json(self, skip=("candidate", "champion", "answers"))
        if self.candidate is not None:
            out["candidate"] = self.candidate.to_json()
        if self.champion is not None:
            out["champion"] = self.champion.to_json()
        if self.answers:
            out["answers"] = list(self.answers)
        return out


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    limit: float
    passed: bool
    detail: str
    ran: bool = True  # False: the check could not be run (no golden set); it does not block the gate

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        return cls(
            str(data["name"]),
            _number(data.get("value")),
            float(data["limit"]),
            bool(data["passed"]),
            str(data.get("detail", "")),
            bool(data.get("ran", True)),
        )


LIVE_NOTE = (
    "no golden set: similarity, citations and refusals were not checked; promote on the canary's "
    "human win rate against the champion (side-by-side comparisons)"
)


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    checks: tuple[Check, ...]

    @property
    def not_run(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.ran)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}
        if self.not_run:
            out["not_run"] = list(self.not_run)
            out["note"] = LIVE_NOTE
        return out

    @classmethod
    def from_json(cls, data: Any) -> GateVerdict | None:
        if not isinstance(data, dict) or "passed" not in data:
            return None
        return cls(bool(data["passed"]), tuple(Check.from_json(c) for c in data.get("checks") or ()))


@dataclass(frozen=True)
class RefreshReport:
    """A refresh's report. `policy` holds the policy update's own metrics, which differ by algorithm
    (PPO's rewards, DPO's margins, ...); the ones the gate and the tools read have properties."""

    policy: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    gate: GateVerdict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kl_to_champion(self) -> float | None:
        return _number(self.policy.get("kl_to_champion"))

    @property
    def kl_to_base(self) -> float | None:
        return _number(self.policy.get("kl_to_base"))

    @property
    def refused(self) -> str | None:
        """Why the policy update refused to publish, when it did."""
        reason = self.policy.get("refused")
        return str(reason) if reason else None

    @classmethod
    def from_json(cls, data: Any) -> RefreshReport:
        known, extra = _known(cls, data)
        return cls(
            policy=dict(known.get("policy") or {}),
            timings_s=dict(known.get("timings_s") or {}),
            evaluation=Evaluation.from_json(known.get("evaluation")),
            gate=GateVerdict.from_json(known.get("gate")),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "timings_s": self.timings_s}
        if self.evaluation is not None:
            out["evaluation"] = self.evaluation.to_json()
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        return {**out, **self.extra}
