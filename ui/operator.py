"""The Operator tab: how each model version does with employees, and why answers fail.

Thumbs-up rates per model version (overall and per day), side-by-side win rates and position bias,
thumbs-down reasons, and the recent thumbs-down answers: each one next to the passages retrieval
gave it, with a guess whether retrieval or generation failed (ui.diagnosis), and a button that makes
the inspected answer and its correction a golden item of the deployment (feedback.golden). Operators
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from feedback.errors import AnswerNotFound
from feedback.golden import add_item, item_from_answer
from feedback.votes import Reason, VoteValue
from ui import access
from ui.diagnosis import diagnose
from ui.errors import shown_to_user, user_message
from ui.render import code, html_text, markdown_text, preview

if TYPE_CHECKING:
    from feedback.stats import ModelThumbs, PairwiseWinRate, Rate, ReasonHistogram
    from service.api.deps import AppState

THUMBS_COLUMNS = ["model version", "thumbs up", "thumbs down", "thumbs-up rate", "95% interval"]
WIN_COLUMNS = ["model A", "model B", "A wins", "B wins", "ties", "both bad", "A win rate", "95% interval"]
REASON_COLUMNS = ["model version", "thumbs down", "without reason", *(r.value for r in Reason)]
DOWN_COLUMNS = ["when (UTC)", "model version", "question", "reasons", "comment"]
VOTES_SCANNED = 500  # the most recent votes searched for thumbs down


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def interval(rate: Rate) -> str:
    return "–" if rate.rate is None else f"{rate.low:.0%}–{rate.high:.0%}"


def thumbs_rows(stats: list[ModelThumbs]) -> list[list[Any]]:
    return [[s.model_version, s.up, s.down, percent(s.overall.rate), interval(s.overall)] for s in stats]


def thumbs_by_day(stats: list[ModelThumbs]) -> pd.DataFrame:
    rows = [
        {"day": day, "model version": s.model_version, "thumbs-up rate": rate.rate, "votes": rate.trials}
        for s in stats
        for day, rate in s.by_day.items()
        if rate.rate is not None
    ]
    return pd.DataFrame(rows, columns=["day", "model version", "thumbs-up rate", "votes"])


def win_rows(rates: list[PairwiseWinRate]) -> list[list[Any]]:
    return [
        [w.model_a, w.model_b, w.wins_a, w.wins_b, w.ties, w.both_bad, percent(w.win_rate_a.rate),
         interval(w.win_rate_a)]
        for w in rates
    ]  # fmt: skip


def reason_rows(histograms: list[ReasonHistogram]) -> list[list[Any]]:
    return [
        [h.model_version, h.down_votes, h.without_reason, *(h.counts.get(r.value, 0) for r in Reason)]
        for h in histograms
    ]


@dataclass(frozen=True)
class DownVote:
    answer_id: str
    when: str
    model_version: str
    question: str
    reasons: tuple[str, ...]
    comment: str | None

    def row(self) -> list[Any]:
        return [self.when, self.model_version, preview(self.question, 90), ", ".join(self.reasons),
                preview(self.comment or "", 90)]  # fmt: skip

    def label(self) -> str:
        return f"{self.when} · {self.model_version} · {preview(self.question, 60)}"


@dataclass(frozen=True)
class Overview:
    thumbs: list[list[Any]]
    by_day: pd.DataFrame
    wins: list[list[Any]]
    bias: str  # Markdown
    reasons: list[list[Any]]
    down: list[DownVote]


def overview(app: AppState, token: str | None, limit: int = 50) -> Overview:
    access.operator(app, token)
    store = access.store(app)
    thumbs = store.thumbs_stats()
    bias = store.position_bias()
    if bias.decisive:
        bias_text = (
            f"Position bias: the left answer won {percent(bias.left_rate.rate)} of {bias.decisive} decisive "
            f"choices (95% interval {interval(bias.left_rate)})"
            + (": **biased**, 50% is outside the interval." if bias.biased else ", consistent with none.")
        )
    else:
        bias_text = "Position bias: no decisive side-by-side choices yet."
    down = []
    for vote in store.list_votes(limit=VOTES_SCANNED):
        if vote.value is not VoteValue.DOWN:
            continue
        try:
            record = store.get_answer(vote.answer_id)
        except AnswerNotFound:
            continue
        down.append(
            DownVote(vote.answer_id, vote.updated_at[:19].replace("T", " "), record.model_version,
                     record.question, tuple(r.value for r in vote.reasons), vote.comment)
        )  # fmt: skip
        if len(down) >= limit:
            break
    return Overview(
        thumbs_rows(thumbs),
        thumbs_by_day(thumbs),
        win_rows(store.win_rates()),
        bias_text,
        reason_rows(store.reason_stats()),
        down,
    )


def inspect(app: AppState, token: str | None, answer_id: str | None) -> tuple[str, str, str]:
    """One answer next to its retrieved passages: (answer Markdown, passages HTML, hint Markdown)."""
    access.operator(app, token)
    if not answer_id:
        return "", "", ""
    store = access.store(app)
    record = store.get_answer(answer_id)
    down = [v for v in store.list_votes(answer_id=answer_id) if v.value is VoteValue.DOWN]
    reasons = sorted({r.value for v in down for r in v.reasons})
    comments = [v.comment for v in down if v.comment]
    corrections = [c.text for c in store.list_corrections(answer_id=answer_id, limit=10)]

    texts: dict[str, str] = {}
    index_note = ""
    try:
        version = access.retriever(app).current()
        for hit in record.retrieved:
            row = version.row_of.get(hit.chunk_id)
            if row is not None:
                texts[hit.chunk_id] = version.chunks[row].text
        if version.version != record.index_version:
            index_note = (
                f"The answer used index version {record.index_version}; passage texts come from the "
                f"current version {version.version} (missing ones changed since)."
            )
    except Exception as exc:  # the index is gone or unreadable: show what the store holds
        index_note = f"Passage texts are unavailable: {user_message(exc)}"

    cited = {c.chunk_id for c in record.citations}
    answer_lines = [
        f"**Question:** {markdown_text(record.question)}",
        f"**Answer** (model {code(record.model_version)}, "
        f"{'refused' if record.refused else markdown_text(record.finish_reason)}, "
        f"confidence {record.confidence:.2f}):",
        "> " + markdown_text(record.answer or "(empty)").replace("\n", "\n> "),
        f"**Reasons:** {markdown_text(', '.join(reasons) or 'none given')}",
        *(f"**Comment:** {markdown_text(c)}" for c in comments),
        *(f"**Suggested answer:** {markdown_text(c)}" for c in corrections),
    ]

    items = []
    for hit in record.retrieved:
        mark = " <b>cited</b>" if hit.chunk_id in cited else ""
        text = texts.get(hit.chunk_id)
        body = html_text(text) if text is not None else "<i>not in the current index</i>"
        items.append(
            f"<li><details><summary>#{hit.rank} <code>{html_text(hit.source)}</code> "
            f"{html_text(hit.section)} (score {hit.score:.3f}){mark}</summary>"
            f"<blockquote>{body}</blockquote></details></li>"
        )
    passages = (
        f"<div class='kb-sources'><b>Retrieved passages</b><ol>{''.join(items)}</ol></div>"
        if items
        else "<div class='kb-sources'><b>Retrieval returned no passages.</b></div>"
    )
    if index_note:
        passages += f"\n\n{markdown_text(index_note)}"

    found = diagnose(
        refused=record.refused,
        retrieved=[(h.rank, h.chunk_id) for h in record.retrieved],
        cited=[c.chunk_id for c in record.citations],
        passage_text=texts,
        reasons=reasons,
        corrections=corrections,
    )
    hint = f"**Likely failure: {found.stage}.** {markdown_text(found.hint)}"
    return "\n\n".join(answer_lines), passages, hint


def add_golden(app: AppState, token: str | None, answer_id: str | None, text: str | None) -> str:
    """The inspected answer as a golden item: its question, `text` or else its newest correction, the
    sources it cited (feedback.golden.item_from_answer). Markdown saying what happened."""
    who = access.operator(app, token)
    if not answer_id:
        return "Pick an answer to inspect first."
    item = item_from_answer(
        access.store(app), answer_id, answer=(text or "").strip() or None, added_by=who.user
    )
    stored, created = add_item(app.settings.golden_path, item)
    if not created:
        return f"Already in the golden set as {code(stored.id)}."
    return (
        f"Added {code(stored.id)} to the golden set ({markdown_text(stored.split or 'no')} side of the "
        f"split): {markdown_text(preview(stored.question, 90))}"
    )


def build(app: AppState, token: gr.Textbox) -> gr.Button:
    """The Operator tab's components and events (inside a `gr.Tab`); returns its refresh button."""
    gr.Markdown("Operators only: enter an operator's access token at the top, then refresh.")
    refresh = gr.Button("Refresh", elem_id="kb-operator-refresh")
    gr.Markdown("### Thumbs-up rate per model version")
    thumbs = gr.Dataframe(headers=THUMBS_COLUMNS, interactive=False, elem_id="kb-thumbs")
    by_day = gr.LinePlot(
        x="day",
        y="thumbs-up rate",
        color="model version",
        y_lim=[0, 1],
        label="Per day the answers were served",
    )
    gr.Markdown("### Side by side")
    wins = gr.Dataframe(headers=WIN_COLUMNS, interactive=False, elem_id="kb-wins")
    bias = gr.Markdown()
    gr.Markdown("### Why answers got a thumbs down")
    reasons = gr.Dataframe(headers=REASON_COLUMNS, interactive=False)
    gr.Markdown("### Recent thumbs-down answers")
    down = gr.Dataframe(headers=DOWN_COLUMNS, interactive=False, wrap=True, elem_id="kb-down")
    pick = gr.Dropdown(label="Inspect an answer", choices=[], elem_id="kb-inspect")
    with gr.Row(equal_height=False):
        with gr.Column():
            answer = gr.Markdown(elem_id="kb-inspect-answer", latex_delimiters=[])
        with gr.Column():
            passages = gr.Markdown(elem_id="kb-inspect-passages", latex_delimiters=[])
    hint = gr.Markdown(elem_id="kb-inspect-hint")
    with gr.Row(equal_height=False):
        golden_text = gr.Textbox(
            label="Golden answer (empty: the newest suggested answer above)",
            lines=2,
            elem_id="kb-golden-answer",
        )
        golden_add = gr.Button("Add to the golden set", elem_id="kb-golden-add")
    golden_note = gr.Markdown(elem_id="kb-golden-note")

    def on_refresh(token_value: str) -> tuple[Any, ...]:
        with shown_to_user():
            o = overview(app, token_value)
        choices = [(d.label(), d.answer_id) for d in o.down]
        return (
            o.thumbs, o.by_day, o.wins, o.bias, o.reasons, [d.row() for d in o.down],
            gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
        )  # fmt: skip

    def on_pick(token_value: str, answer_id: str | None) -> tuple[str, str, str]:
        with shown_to_user():
            return inspect(app, token_value, answer_id)

    def on_golden(token_value: str, answer_id: str | None, text: str) -> str:
        with shown_to_user():
            return add_golden(app, token_value, answer_id, text)

    refresh.click(on_refresh, [token], [thumbs, by_day, wins, bias, reasons, down, pick])
    pick.change(on_pick, [token, pick], [answer, passages, hint])
    golden_add.click(on_golden, [token, pick, golden_text], [golden_note])
    return refresh
