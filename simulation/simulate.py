"""`kbloop simulate`: scripted employees with a hidden preference drive the whole loop, to show it learns.

(One concept at ~540 lines: the round and its five steps, held together by `Loop`; the HTTP harness
(harness.py), the configuration (config.py), the employees (employees.py) and the report
(report.py) live beside it.)

Each round, through the service's HTTP API (the real app, `service.app.create_app`: same routes, auth,
validation and store, served in-process by Starlette's TestClient with httpx's interface; only the
socket is skipped), as employees with their own bearer tokens:
  1. collect  every train question is asked `asks` times, each by another employee
              (`POST /v1/chat/completions`, model `champion`, so a canary's share goes to the canary)
              and voted on (`/api/answers/{id}/vote`), and as often compared side by side by yet
              another (`POST /api/compare` + `/choice`: champion vs
              canary/candidate when one exists, else the champion at two temperatures);
  2. refresh  trainer.refresh: reward model update → PPO (or DPO, `--algo dpo`) → golden-set evaluation
              → `candidate` + gate;
  3. canary   the registry routes `canary_share` of conversations to the candidate (after a smoke test),
              and employees use the Compare tab on the train questions (`asks` times each), which pairs
              champion vs canary: the live human win rate, stored like any comparison;
  4. measure  each held-out question (never voted on) is answered by the candidate and by the champion,
              pinned by version id and greedy, and one employee picks the better: the win rate; then
              `heldout_samples` more times with answers sampled as served, each judged by another
              employee; every rate with a 95% interval over questions;
  5. promote  by the product's automatic-promotion rule (registry.policy.promotion_decision: the gate
              passed and the canary's live win-rate 95% CI lower bound is above 50% with at least
              `min_comparisons` comparisons), or with `override` (recorded as such); otherwise the
              canary stops and the champion keeps serving. The held-out win rate is only reported.

The preference is hidden: the trainer only sees votes and choices. An employee votes up when the
preference's score (plus a little seeded noise, and their own threshold) is above the preference's
bar, picks the higher score side by side (tie within `tie_within`, both bad under `both_bad_below`).
`kbloop simulate-judge` runs step 4 alone, for any two versions on any question bank (e.g. questions
that no round ever asked). Held-out answers are logged like any answer, so from round 2 on PPO may
sample held-out *questions* as rollout prompts (`logged_prompts` takes every logged answer); their
answers are never labelled.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from registry.gate import GateThresholds
from registry.reports import Evaluation, ModelSummary, RefreshReport
from simulation.config import SimulationConfig, SimulationError
from simulation.employees import PREFERENCES, Employee, Preference, QuestionBank
from simulation.harness import _ask, _generate, _ok, _parallel, _same, _service
from simulation.report import _ci, _machine, _mean, _pct, summarize
from trainer.errors import TrainerError
from trainer.prompts import GoldenItem

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.policy import Decision
    from trainer.refresh import RefreshConfigs

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_POINTS = {"win": 1.0, "loss": 0.0}  # a tie or both-bad is half a win
ACTOR = "simulate"


@dataclass
class Loop:
    """One simulation: the client, the employees, the question bank, the hidden preference."""

    client: Any
    settings: Settings
    cfg: SimulationConfig
    bank: QuestionBank
    pref: Preference
    people: list[Employee]
    say: Callable[[str], None]

    def _rng(self, *parts: object) -> random.Random:
        return random.Random("/".join(map(str, (self.cfg.seed, *parts))))

    def _score(self, item: GoldenItem, answer: dict[str, Any]) -> float:
        return self.pref.score(item.question, answer["text"], answer.get("citations") or [], item)

    def collect(self, round_no: int) -> dict[str, Any]:
        """`asks` votes and side-by-side choices per train question, each by another employee."""
        n, cfg = len(self.people), self.cfg

        def vote(job: tuple[int, int, GoldenItem]) -> dict[str, Any]:
            i, k, item = job
            who = self.people[(i + round_no + 2 * k) % n]
            answer = _ask(self.client, who, item.question, cfg.max_tokens, model="champion")
            score = self._score(item, answer)
            value = who.thumbs(self.pref, score, self._rng(round_no, "vote", item.id, k), cfg.noise)
            reasons = self.pref.reasons(item.question, answer["text"], answer["citations"], item)
            body = {"value": value, "reasons": reasons if value == "down" else []}
            _ok(self.client.post(f"/api/answers/{answer['answer_id']}/vote", json=body, headers=who.headers))
            corrected = (
                value == "down"
                and not answer["refused"]
                and self._rng(round_no, "correct", item.id, k).random() < cfg.corrections
            )
            if corrected:
                body = {"text": self.pref.correction(item, answer.get("passages") or [])}
                path = f"/api/answers/{answer['answer_id']}/correction"
                _ok(self.client.post(path, json=body, headers=who.headers))
            return {
                "corrected": corrected,
                "version": answer["model_version"],
                "score": score,
                "value": value,
                "refused": answer["refused"],
                "words": len(answer["text"].split()),
            }

        jobs = self._jobs()
        votes = _parallel(vote, jobs, cfg.concurrency)
        choices = _parallel(lambda job: self.compare(round_no, "compare", job), jobs, cfg.concurrency)
        ups = sum(v["value"] == "up" for v in votes)
        return {
            "votes": len(votes),
            "thumbs_up": ups,
            "thumbs_up_rate": ups / len(votes) if votes else None,
            "corrections": sum(v["corrected"] for v in votes),
            "mean_score": _mean([v["score"] for v in votes]),
            "mean_words": _mean([float(v["words"]) for v in votes]),
            "refused": sum(v["refused"] for v in votes),
            "answered_by": dict(Counter(v["version"] for v in votes)),
            "comparisons": sum(c["choice"] != "skipped" for c in choices),
            "choices": dict(Counter(c["choice"] for c in choices)),
            "pair_versions": dict(Counter("/".join(c["versions"]) for c in choices if "versions" in c)),
            "wins_by_version": dict(Counter(c["winner"] for c in choices if c.get("winner"))),
        }

    def _jobs(self) -> list[tuple[int, int, GoldenItem]]:
        return [(i, k, item) for k in range(self.cfg.asks) for i, item in enumerate(self.bank.train)]

    def compare(self, round_no: int, stage: str, job: tuple[int, int, GoldenItem]) -> dict[str, Any]:
        """One employee's side-by-side choice through the Compare tab's API (champion vs canary when one
        is set, else the champion at two temperatures)."""
        i, k, item = job
        offset = 1 if stage == "compare" else 3  # another employee than the one who voted on it
        who = self.people[(i + round_no + 2 * k + offset) % len(self.people)]
        body = {"question": item.question, "max_tokens": self.cfg.max_tokens}
        response = _generate(self.client, "/api/compare", body, who.headers)
        if response.status_code == 422:  # the retrieval refuses the question: nothing to compare
            return {"choice": "skipped"}
        pair = _ok(response)
        left, right = (self._score(item, pair[side]) for side in ("left", "right"))
        rng, same = self._rng(round_no, stage, item.id, k), _same(pair["left"], pair["right"])
        choice = who.choose(self.pref, left, right, rng, self.cfg.noise, same)
        url = f"/api/compare/{pair['comparison_id']}/choice"
        shown = _ok(self.client.post(url, json={"choice": choice}, headers=who.headers))
        winner = {"A": shown["left_model_version"], "B": shown["right_model_version"]}.get(choice)
        return {
            "choice": choice,
            "winner": winner,
            "versions": sorted({shown["left_model_version"], shown["right_model_version"]}),
        }

    def trial(
        self, round_no: int, champion: str, canary: str, passed: bool
    ) -> tuple[dict[str, Any], Decision]:
        """The canary's live trial: employees compare champion vs canary on the train questions. The
        store's win rate of the pair (95% CI) is reported, and the product's automatic-promotion rule
        (registry.policy.promotion_decision) is applied to the same figures."""
        from feedback.store import Store
        from registry.policy import promotion_decision

        choices = _parallel(
            lambda job: self.compare(round_no, "canary", job), self._jobs(), self.cfg.concurrency
        )
        with Store(self.settings.database_path) as store:
            rates = store.win_rates()
        rule = promotion_decision(rates, champion, canary, passed, self.cfg.min_comparisons)
        out: dict[str, Any] = {
            "comparisons": sum(c["choice"] != "skipped" for c in choices),
            "choices": dict(Counter(c["choice"] for c in choices)),
            "wins_by_version": dict(Counter(c["winner"] for c in choices if c.get("winner"))),
            "win_rate": None,
            "ci": None,
        }
        row = next((r for r in rates if {r.model_a, r.model_b} == {champion, canary}), None)
        if row is not None and row.win_rate_a.rate is not None:
            rate = row.rate_of(canary)
            out["win_rate"], out["ci"] = rate.rate, [rate.low, rate.high]
        return out, rule

    def measure(self, round_no: int, champion: str, challenger: str) -> dict[str, Any]:
        """The challenger vs the champion on the held-out questions, judged by the employees: once on
        greedy answers (`win_rate`, comparable across runs), then `heldout_samples` times on answers
        sampled as served (the chat's default temperature), each time by another employee. Every win
        rate comes with a 95% interval over questions (feedback.stats.clustered_rate)."""
        from feedback.stats import clustered_rate

        n, cfg = len(self.people), self.cfg

        def judge(job: tuple[int, int, GoldenItem]) -> dict[str, Any]:
            i, k, item = job  # k = 0: greedy; k >= 1: the k-th sampled pair
            who = self.people[(i + round_no + k) % n]
            options: dict[str, Any] = {"temperature": 0.0} if k == 0 else {}
            new, old = (
                _ask(self.client, who, item.question, cfg.max_tokens, model=v, **options)
                for v in (challenger, champion)
            )
            if new["refused"] and old["refused"]:  # refused by retrieval: no model answered either
                return {"id": item.id, "sample": k, "outcome": "refused"}
            a, b = self._score(item, new), self._score(item, old)
            stage = "heldout" if k == 0 else f"heldout-sampled-{k}"
            rng, same = self._rng(round_no, stage, item.id), _same(new, old)
            choice = who.choose(self.pref, a, b, rng, cfg.noise, same)
            outcome = {"A": "win", "B": "loss"}.get(choice, choice)
            return {
                "id": item.id,
                "sample": k,
                "question": item.question,
                "outcome": outcome,
                "score_new": a,
                "score_old": b,
                "new": new["text"],
                "old": old["text"],
            }

        jobs = [
            (i, k, item) for k in range(cfg.heldout_samples + 1) for i, item in enumerate(self.bank.heldout)
        ]
        done, lock, step = [0], threading.Lock(), max(1, len(jobs) // 4)

        def judge_and_report(job: tuple[int, int, GoldenItem]) -> dict[str, Any]:
            row = judge(job)
            with lock:
                done[0] += 1
                if done[0] % step == 0 or done[0] == len(jobs):
                    self.say(f"  judged {done[0]}/{len(jobs)} pairs of answers")
            return row

        judged = _parallel(judge_and_report, jobs, max(1, cfg.concurrency // 2))
        greedy = [j for j in judged if j["sample"] == 0]
        counted = [j for j in greedy if j["outcome"] != "refused"]

        def win_rate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
            by_question: dict[str, list[float]] = {}
            for j in rows:
                if j["outcome"] != "refused":
                    by_question.setdefault(j["id"], []).append(_POINTS.get(j["outcome"], 0.5))
            rate = clustered_rate(by_question.values())
            return {
                "judgements": sum(len(v) for v in by_question.values()),
                "questions": len(by_question),
                "outcomes": dict(Counter(j["outcome"] for j in rows)),
                "win_rate": rate.rate,
                "ci": [rate.low, rate.high] if rate.rate is not None else None,
            }

        head = win_rate(greedy)
        bar = self.pref.thumbs_up_above
        return {
            "challenger": challenger,
            "champion": champion,
            "questions": head["questions"],
            "outcomes": head["outcomes"],
            "win_rate": head["win_rate"],
            "ci": head["ci"],
            "sampled": win_rate([j for j in judged if j["sample"] > 0]) if cfg.heldout_samples else None,
            "pooled": win_rate(judged) if cfg.heldout_samples else None,
            "mean_score": {
                "new": _mean([j["score_new"] for j in counted]),
                "old": _mean([j["score_old"] for j in counted]),
            },
            "would_thumbs_up": {
                "new": _mean([float(j["score_new"] > bar) for j in counted]),
                "old": _mean([float(j["score_old"] > bar) for j in counted]),
            },
            "answers": judged,
        }

    def round(self, round_no: int, configs: RefreshConfigs, embedder: Any) -> dict[str, Any]:
        from registry.registry import Registry
        from service.smoke import smoke_test
        from trainer.refresh import refresh
        from trainer.runs import new_run_dir
        from trainer.worker import refresh_lock

        registry = Registry(self.settings.models_dir, GateThresholds.from_settings(self.settings))
        champion = registry.aliases()["champion"]
        out: dict[str, Any] = {"round": round_no, "champion_before": champion}
        timings: dict[str, float] = {}
        out["timings_s"] = timings

        self.say(f"round {round_no}: collecting feedback on {len(self.bank.train)} questions ({champion})")
        started = time.perf_counter()
        out["feedback"] = self.collect(round_no)
        timings["collect"] = time.perf_counter() - started
        fb = out["feedback"]
        self.say(
            f"round {round_no}: {fb['votes']} votes ({fb['thumbs_up_rate']:.0%} up), "
            f"{fb['corrections']} corrections, {fb['comparisons']} choices {fb['choices']} "
            f"in {timings['collect']:.0f} s"
        )

        algo = configs.refresh.algo.upper()
        sft = " → SFT on the corrections" if configs.refresh.sft_first and fb["corrections"] else ""
        self.say(f"round {round_no}: refresh (reward model{sft} → {algo} → golden-set evaluation)")
        started = time.perf_counter()
        seeded = _reseeded(configs, self.cfg.seed + round_no - 1)
        run_dir = new_run_dir(self.settings.data.runs, f"simulate-r{round_no}")
        try:
            with refresh_lock(self.settings.data_dir):
                result = refresh(self.settings, seeded, run_dir=run_dir, embedder=embedder)
        except TrainerError as exc:
            timings["refresh"] = time.perf_counter() - started
            out["refresh"] = {"status": "failed", "error": str(exc)}
            out["champion_after"] = champion
            self.say(f"round {round_no}: refresh failed: {exc}")
            return out
        timings["refresh"] = time.perf_counter() - started
        out["refresh"] = _refresh_summary(result)
        if result.candidate is None:
            out["champion_after"] = champion  # nothing to canary: the champion keeps serving
            self.say(f"round {round_no}: refresh refused: {out['refresh'].get('error')}")
            return out
        candidate = result.candidate
        out["candidate"] = candidate
        gate = registry.gate(candidate)
        out["gate"] = {
            "passed": gate.passed,
            "failed": list(gate.failed),
            "checks": gate.to_json()["checks"],
        }
        r = out["refresh"]
        sim = r["similarity"]
        similarity = (
            f"similarity {sim['champion']:.3f} → {sim['candidate']:.3f}"
            if sim["champion"] is not None and sim["candidate"] is not None
            else "no golden set"
        )
        self.say(
            f"round {round_no}: {candidate} in {timings['refresh']:.0f} s; {similarity}, KL {r['kl']:.2f}, "
            f"gate {'passed' if gate.passed else 'FAILED ' + ', '.join(out['gate']['failed'])}"
        )

        def smoke(version: Any) -> None:
            smoke_test(version, self.settings)

        started = time.perf_counter()
        registry.set_canary(
            candidate,
            self.cfg.canary_share,
            actor=ACTOR,
            smoke=smoke,
            reason=f"simulation round {round_no}: canary the new candidate",
        )
        out["canary"] = {"version": candidate, "share": self.cfg.canary_share}
        timings["canary"] = time.perf_counter() - started

        self.say(f"round {round_no}: canary trial, {candidate} vs {champion} side by side")
        started = time.perf_counter()
        live, rule = self.trial(round_no, champion, candidate, gate.passed)
        out["canary"]["live"] = live
        timings["canary"] += time.perf_counter() - started
        ci = live["ci"] or [float("nan")] * 2
        self.say(
            f"round {round_no}: live win rate {_pct(live['win_rate'])} (95% CI {ci[0]:.2f}–{ci[1]:.2f}) "
            f"over {live['comparisons']} comparisons {live['choices']}"
        )

        self.say(
            f"round {round_no}: {candidate} vs {champion} on {len(self.bank.heldout)} held-out questions"
        )
        started = time.perf_counter()
        out["heldout"] = self.measure(round_no, champion, candidate)
        timings["measure"] = time.perf_counter() - started
        held = out["heldout"]
        self.say(f"round {round_no}: win rate {_pct(held['win_rate'])}{_ci(held['ci'])} {held['outcomes']}")
        if held["pooled"]:
            pooled = held["pooled"]
            self.say(
                f"round {round_no}: with {self.cfg.heldout_samples} sampled answers each, "
                f"{_pct(pooled['win_rate'])}{_ci(pooled['ci'])} over {pooled['judgements']} judgements"
            )

        started = time.perf_counter()
        out["promotion"] = self.operate(registry, round_no, candidate, gate.passed, rule, smoke)
        timings["promote"] = time.perf_counter() - started
        out["champion_after"] = registry.aliases()["champion"]
        self.say(f"round {round_no}: {out['promotion']['action']}: {out['promotion']['reason']}")
        return out

    def operate(
        self, registry: Any, round_no: int, candidate: str, passed: bool, rule: Decision, smoke: Any
    ) -> dict[str, Any]:
        """Promote when the rule says so, or on `override` (audited); otherwise stop the canary."""
        if rule.act or self.cfg.override:
            why = f"simulation round {round_no}: {rule.reason}" + ("" if rule.act else "; overridden")
            registry.promote(candidate, actor=ACTOR, reason=why, override=not passed, smoke=smoke)
            return {"action": "promoted", "override": not rule.act, "rule": rule.reason, "reason": why}
        why = f"simulation round {round_no}: {rule.reason}; canary stopped, champion kept"
        registry.set_canary(None, 0.0, actor=ACTOR, reason=why)
        return {"action": "kept champion", "override": False, "rule": rule.reason, "reason": why}


def _reseeded(configs: RefreshConfigs, seed: int) -> RefreshConfigs:
    """Each round's training seed (data order, initialisation, sampling). The held-out split is not
    seeded: it is a function of the question (trainer.hygiene.heldout_prompt_ids), the same every round."""
    return dataclasses.replace(
        configs,
        refresh=dataclasses.replace(configs.refresh, seed=seed),
        reward=dataclasses.replace(configs.reward, seed=seed),
        sft=dataclasses.replace(configs.sft, seed=seed),
        ppo=dataclasses.replace(configs.ppo, seed=seed),
        dpo=dataclasses.replace(configs.dpo, seed=seed),
        kto=dataclasses.replace(configs.kto, seed=seed),
    )


def _refresh_summary(result: Any) -> dict[str, Any]:
    report: RefreshReport = result.report
    evaluation = report.evaluation or Evaluation()
    cand, champ = evaluation.candidate or ModelSummary(), evaluation.champion or ModelSummary()
    policy = report.policy

    def pair(key: str) -> dict[str, Any]:
        return {"champion": getattr(champ, key), "candidate": getattr(cand, key)}

    return {
        "status": result.status,
        "run_dir": str(result.run_dir),
        "error": report.refused,
        "kl": report.kl_to_champion,
        "ppo_reward": {"first": policy.get("reward_first"), "last": policy.get("reward_last")},
        "similarity": {**pair("similarity"), "delta": evaluation.delta_similarity},
        "citation_correct": pair("citation_correct"),
        "length_tokens": pair("length_tokens"),
        "reward_win_rate": evaluation.reward_win_rate,
        "checks_win_rate": evaluation.checks_win_rate,
        "length_drift": evaluation.length_drift,
        "timings_s": report.timings_s,
    }


# -- the whole simulation -------------------------------------------------------------------------


def _preference(cfg: SimulationConfig, preference: Preference | None) -> Preference:
    if preference is not None:
        return preference
    if cfg.preference not in PREFERENCES:
        raise SimulationError(f"unknown preference {cfg.preference!r}; one of {', '.join(PREFERENCES)}")
    return PREFERENCES[cfg.preference]()


def simulate(
    settings: Settings,
    cfg: SimulationConfig,
    configs: RefreshConfigs,
    bank: QuestionBank,
    *,
    embedder: Any = None,
    preference: Preference | None = None,
    say: Callable[[str], None] = log.info,
    on_round: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Run `cfg.rounds` rounds on the service under `settings.data_dir` (its index must exist), with
    `preference` (default: `PREFERENCES[cfg.preference]`) as the employees' hidden taste. `on_round`
    gets the results so far after every round (the CLI writes them, so a stopped run keeps its rounds)."""
    from registry.registry import Registry

    preference = _preference(cfg, preference)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": _machine(),
        "simulation": {**cfg.to_json(), "preference": preference.name},
        "trainer": configs.to_json(),
        "service": {
            "data_dir": str(settings.data_dir),
            "model": settings.model or "bundled SmolLM2-135M-Instruct",
            "device": settings.device,
            "api": "in-process TestClient (service.app.create_app)",
        },
        "questions": {"train": [i.id for i in bank.train], "heldout": [i.id for i in bank.heldout]},
        "rounds": [],
    }
    with _service(settings, cfg, embedder) as (client, app_settings, people):
        loop = Loop(client, app_settings, cfg, bank, preference, people, say)
        registry = Registry(settings.models_dir, GateThresholds.from_settings(settings))
        for round_no in range(1, cfg.rounds + 1):
            result["rounds"].append(loop.round(round_no, configs, embedder))
            result["history"] = [dataclasses.asdict(e) for e in reversed(registry.history(limit=1000))]
            result["summary"] = summarize(result["rounds"], settings.gate_max_similarity_drop)
            result["seconds"] = time.perf_counter() - started
            result["complete"] = round_no == cfg.rounds
            if on_round is not None:
                on_round(result)
    return result


def judge(
    settings: Settings,
    cfg: SimulationConfig,
    challenger: str,
    champion: str,
    items: Sequence[GoldenItem],
    *,
    embedder: Any = None,
    preference: Preference | None = None,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Step 4 alone: the employees judge `challenger` vs `champion` (version ids of the registry under
    `settings.models_dir`) on the answerable `items` with sources, greedy and `cfg.heldout_samples`
    times sampled. Nothing is trained or promoted; the answers are logged like any."""
    from registry.errors import UnknownVersion
    from registry.registry import Registry

    preference = _preference(cfg, preference)
    registry = Registry(settings.models_dir, GateThresholds.from_settings(settings))
    try:  # aliases name their version: the answers are pinned by id
        challenger, champion = (registry.version(v).id for v in (challenger, champion))
    except UnknownVersion as exc:
        raise SimulationError(f"{exc}; `kbloop models list` shows the versions") from None
    if challenger == champion:
        raise SimulationError(f"{challenger} against itself says nothing; name two versions")
    questions = QuestionBank.usable(items)
    if not questions:
        raise SimulationError("the question bank has no answerable questions with sources")
    started = time.perf_counter()
    with _service(settings, cfg, embedder) as (client, app_settings, people):
        loop = Loop(client, app_settings, cfg, QuestionBank((), questions), preference, people, say)
        n = len(questions)
        say(f"{challenger} vs {champion} on {n} questions: greedy + {cfg.heldout_samples} sampled")
        measured = loop.measure(1, champion, challenger)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": _machine(),
        "simulation": {**cfg.to_json(), "preference": preference.name},
        "service": {"data_dir": str(settings.data_dir), "device": settings.device},
        "question_ids": [i.id for i in questions],
        "seconds": time.perf_counter() - started,
        **measured,
    }
