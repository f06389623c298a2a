"""The Models tab (operators): every version with its evaluation beside the champion's, the gate, the
PPO training curves, and the buttons that promote, canary and roll back, with the alias history.

Above them, the background trainer: the running refresh (phase, progress, ETA, live metrics, read by
trainer/status.py from the run folders) and buttons that start a refresh now or stop the running one
(trainer/worker.py).

It calls the registry (registry.registry) exactly as the API and `kbloop models` do; the actor is the
operator whose token is entered at the top.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from registry.gate import GateThresholds
from registry.reports import LIVE_NOTE, Evaluation, GateVerdict, ModelSummary, RefreshReport
from ui import access
from ui.errors import shown_to_user
from ui.render import markdown_text

if TYPE_CHECKING:
    from registry.registry import Registry
    from service.api.deps import AppState

VERSION_COLUMNS = [
    "version",
    "aliases",
    "parent",
    "created",
    "gate",
    "similarity",
    "citations",
    "refusals",
    "length",
    "KL",
]
HISTORY_COLUMNS = ["when (UTC)", "alias", "action", "from", "to", "by", "override", "reason"]
METRICS = ("reward", "kl", "entropy", "response_length")


def registry(app: AppState) -> Registry:
    from registry.registry import Registry

    return Registry(app.settings.models_dir, GateThresholds.from_settings(app.settings))


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def version_rows(rows: list[dict[str, Any]], share: float) -> list[list[Any]]:
    out = []
    for row in rows:
        report = RefreshReport.from_json(row.get("report"))
        cand = (report.evaluation.candidate if report.evaluation else None) or ModelSummary()
        gate = GateVerdict.from_json(row.get("gate"))
        aliases = ", ".join(row["aliases"]) + (f" ({share:.0%})" if "canary" in row["aliases"] else "")
        out.append(
            [
                row["id"],
                aliases,
                row.get("parent") or "-",
                (row.get("created") or "")[:16].replace("T", " "),
                "-" if gate is None else ("passed" if gate.passed else "failed"),
                _num(cand.similarity),
                _num(cand.citation_correct),
                _num(cand.refusal_rate_unanswerable),
                _num(cand.length_tokens, 1),
                _num(report.kl_to_champion, 2),
            ]
        )
    return out


def details(row: dict[str, Any]) -> str:
    """The version's evaluation beside the champion's at training time, and its gate checks (escaped)."""
    evaluation = RefreshReport.from_json(row.get("report")).evaluation or Evaluation()
    cand, champ = evaluation.candidate, evaluation.champion
    lines = [f"### {markdown_text(row['id'])} (parent {markdown_text(row.get('parent') or '-')})"]
    if cand is not None:
        champ = champ or ModelSummary()
        lines += ["| golden set | this version | champion then |", "|---|---|---|"]
        for key, label in (
            ("similarity", "answer similarity"),
            ("citation_correct", "cites the right source"),
            ("refusal_rate_unanswerable", "refuses unanswerable"),
            ("length_tokens", "length (tokens)"),
            ("reward", "reward model score"),
        ):
            lines.append(f"| {label} | {_num(getattr(cand, key))} | {_num(getattr(champ, key))} |")
        lines.append(
            f"\nReward-model win rate vs the champion: {_num(evaluation.reward_win_rate)}"
            + (" (reported only: PPO optimised it)" if evaluation.reward_optimised else "")
            + f"; answer-checks win rate {_num(evaluation.checks_win_rate)}; "
            f"length drift {_num(evaluation.length_drift)}"
            + (
                "; **possible reward hacking** (reward up, similarity down)"
                if evaluation.reward_hacking_suspected
                else ""
            )
        )
    else:
        lines.append("No golden-set evaluation stored for this version.")
    gate = GateVerdict.from_json(row.get("gate"))
    if gate is not None:
        lines.append(f"\n**Gate {'passed' if gate.passed else 'failed'}**")
        if gate.not_run:
            lines.append(markdown_text(LIVE_NOTE))
        for check in gate.checks:
            mark = "–" if not check.ran else "✔" if check.passed else "✘"
            lines.append(
                f"- {mark} {markdown_text(check.name)}: {_num(check.value)} "
                f"(limit {_num(check.limit)}) — {markdown_text(check.detail)}"
            )
    return "\n".join(lines)


def training_curves(row: dict[str, Any]) -> pd.DataFrame:
    """PPO metrics per iteration of the run that produced the version (long format for a line plot)."""
    run = row.get("run")
    path = Path(run) / "ppo" / "metrics.jsonl" if run else None
    records: list[dict[str, Any]] = []
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            records += [{"step": m["step"], "metric": k, "value": float(m[k])} for k in METRICS if k in m]
    return pd.DataFrame(records, columns=["step", "metric", "value"])


def trainer_markdown(status: dict[str, Any]) -> str:
    """The trainer's status (trainer/status.py `trainer_status`) as Markdown, every value escaped."""
    from trainer.status import format_seconds

    lines = [f"**Trainer:** {'refreshing' if status.get('running') else 'idle'}"]
    refresh = status.get("refresh")
    if refresh:
        name = markdown_text(Path(refresh["folder"]).name)
        lines.append(f"\nRefresh {name}: **{markdown_text(str(refresh['status']))}**")
        if refresh.get("stop_requested"):
            lines.append(f"\nStop requested at {markdown_text(str(refresh['stop_requested']))}")
        if refresh["phases"]:
            lines += ["", "| phase | status | progress | ETA | live metrics |", "|---|---|---|---|---|"]
        for phase in refresh["phases"]:
            progress = phase.get("progress") or {}
            done, total = progress.get("done"), progress.get("total")
            share = f"{done}/{total} {progress.get('unit', '')}" if total else "-"
            label = markdown_text(str(progress.get("phase") or phase["name"]))
            eta = progress.get("eta_s")
            running = progress.get("state") == "running" and phase["status"] == "running"
            metrics = ", ".join(
                f"{markdown_text(k)} {v:.4g}"
                for k, v in (phase.get("metrics") or {}).items()
                if k not in ("step", "epoch") and isinstance(v, int | float)
            )
            lines.append(
                f"| {label} | {markdown_text(str(phase['status']))} | {share} | "
                f"{format_seconds(float(eta)) if running and eta is not None else '-'} | {metrics or '-'} |"
            )
        if refresh.get("error"):
            lines.append(f"\nError: {markdown_text(str(refresh['error']))}")
    last = status.get("last")
    if last:
        lines.append(
            f"\nLast refresh: {markdown_text(str(last.get('status')))}, started "
            f"{markdown_text(str(last.get('started')))}, "
            f"candidate {markdown_text(str(last.get('candidate') or '-'))}"
        )
    return "\n".join(lines)


def history_rows(reg: Registry) -> list[list[Any]]:
    return [
        [
            e.at.replace("T", " ")[:19],
            e.alias,
            e.action,
            e.from_version or "-",
            e.to_version or "-",
            e.actor,
            "yes" if e.override else "",
            e.reason,
        ]
        for e in reg.history(limit=100)
    ]


def build(app: AppState, token: gr.Textbox) -> None:
    gr.Markdown(
        "Operators only. Promotion needs a passed gate or an explicit override; every change is kept "
        "in the history with who, when and why."
    )
    trainer = gr.Markdown(elem_id="kb-trainer-status", latex_delimiters=[])
    with gr.Row():
        trainer_refresh = gr.Button("Trainer status", elem_id="kb-trainer-refresh")
        trainer_start = gr.Button("Start a refresh now", elem_id="kb-trainer-start")
        trainer_stop = gr.Button("Stop the running refresh", variant="stop", elem_id="kb-trainer-stop")
    refresh = gr.Button("Refresh", elem_id="kb-models-refresh")
    table = gr.Dataframe(headers=VERSION_COLUMNS, interactive=False, elem_id="kb-versions")
    pick = gr.Dropdown(label="Version", choices=[], elem_id="kb-version")
    info = gr.Markdown(elem_id="kb-version-details", latex_delimiters=[])
    curves = gr.LinePlot(x="step", y="value", color="metric", label="PPO training (per iteration)")
    reason = gr.Textbox(label="Reason (kept in the history)", elem_id="kb-reason")
    with gr.Row():
        override = gr.Checkbox(label="Override a failed gate", elem_id="kb-override")
        share = gr.Slider(0, 1, value=0.1, step=0.05, label="Canary share of conversations")
    with gr.Row():
        promote = gr.Button("Promote to champion", variant="primary", elem_id="kb-promote")
        canary = gr.Button("Start canary", elem_id="kb-canary")
        stop = gr.Button("Stop canary", elem_id="kb-stop-canary")
        rollback = gr.Button("Roll back the champion", variant="stop", elem_id="kb-rollback")
    status = gr.Markdown(elem_id="kb-models-status")
    history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True, elem_id="kb-history")

    def load(token_value: str, chosen: str | None = None) -> tuple[Any, ...]:
        with shown_to_user():
            access.operator(app, token_value)
            reg = registry(app)
            rows = [reg.describe(v.id) for v in reg.models.versions()]
        ids = [r["id"] for r in rows]
        chosen = chosen if chosen in ids else (ids[-1] if ids else None)
        row = next((r for r in rows if r["id"] == chosen), None)
        return (
            version_rows(rows, reg.canary_share()),
            gr.Dropdown(choices=ids, value=chosen),
            details(row) if row else "",
            training_curves(row) if row else pd.DataFrame(),
            history_rows(reg),
        )

    def show(token_value: str, chosen: str | None) -> tuple[str, pd.DataFrame]:
        with shown_to_user():
            access.operator(app, token_value)
            if not chosen:
                return "", pd.DataFrame()
            row = registry(app).describe(chosen)
        return details(row), training_curves(row)

    def act(kind: str) -> Any:
        def handler(
            token_value: str, chosen: str | None, why: str, force: bool, part: float
        ) -> tuple[Any, ...]:
            with shown_to_user():
                who = access.operator(app, token_value).user
                reg = registry(app)
                runtime = access.answerer(app).runtime

                def smoke(version: Any) -> None:
                    runtime.engine(version)

                if kind == "promote":
                    event = reg.promote(chosen or "", actor=who, reason=why, override=force, smoke=smoke)
                elif kind == "canary":
                    event = reg.set_canary(chosen, part, actor=who, reason=why or "canary", smoke=smoke)
                elif kind == "stop":
                    event = reg.set_canary(None, 0.0, actor=who, reason=why or "canary stopped")
                else:
                    event = reg.rollback(actor=who, reason=why or "rollback", smoke=smoke)
            done = f"**{event.alias}**: {event.from_version or '-'} → {event.to_version or '-'}"
            return (done, *load(token_value, chosen))

        return handler

    def trainer_view(token_value: str) -> str:
        from trainer.status import trainer_status

        with shown_to_user():
            access.operator(app, token_value)
        return trainer_markdown(trainer_status(app.settings.data_dir))

    def trainer_start_now(token_value: str) -> str:
        from trainer.errors import TrainerError
        from trainer.worker import start_refresh_process

        with shown_to_user():
            access.operator(app, token_value)
        try:
            pid, log_path = start_refresh_process(app.settings.data_dir)
        except TrainerError as exc:
            return f"{markdown_text(str(exc))}\n\n" + trainer_view(token_value)
        started = f"Refresh started (process {pid}, log {markdown_text(log_path.name)})."
        return f"{started}\n\n" + trainer_view(token_value)

    def trainer_stop_now(token_value: str) -> str:
        from trainer.errors import TrainerError
        from trainer.worker import request_stop_refresh

        with shown_to_user():
            access.operator(app, token_value)
        try:
            folder = request_stop_refresh(app.settings.data_dir)
        except TrainerError as exc:
            return f"{markdown_text(str(exc))}\n\n" + trainer_view(token_value)
        asked = f"Stop requested for {markdown_text(folder.name)}: it stops after its current training step."
        return f"{asked}\n\n" + trainer_view(token_value)

    trainer_refresh.click(trainer_view, [token], [trainer])
    trainer_start.click(trainer_start_now, [token], [trainer])
    trainer_stop.click(trainer_stop_now, [token], [trainer])

    outputs = [table, pick, info, curves, history]
    refresh.click(load, [token], outputs)
    pick.change(show, [token, pick], [info, curves])
    for button, kind in ((promote, "promote"), (canary, "canary"), (stop, "stop"), (rollback, "rollback")):
        button.click(act(kind), [token, pick, reason, override, share], [status, *outputs])
