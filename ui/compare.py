"""The Compare tab: one question, two anonymous answers side by side, one choice, then the reveal.

Which model version wrote which answer stays on the server (in the session's `gr.State`) until the
choice is stored; positions were drawn at random by service.comparing.create_pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from feedback.comparisons import Choice
from service.comparing import create_pair
from ui import access
from ui.errors import shown_to_user
from ui.render import answer_markdown, code

if TYPE_CHECKING:
    from service.answering import Answer
    from service.api.deps import AppState

CHOICE_TEXT = {
    Choice.A: "Answer A is better",
    Choice.B: "Answer B is better",
    Choice.TIE: "They are equally good",
    Choice.BOTH_BAD: "Both are bad",
}


@dataclass(frozen=True)
class Side:
    answer_id: str
    model_version: str


@dataclass(frozen=True)
class Shown:
    """A pair on screen, its authors not yet revealed."""

    comparison_id: str
    left: Side
    right: Side


async def ask(app: AppState, token: str | None, question: str) -> tuple[Shown, str, str]:
    """Two answers to `question`: the pair (kept server side) and the Markdown of each pane."""
    question = question.strip()
    if not question:
        raise gr.Error("Type a question first.")
    identity = access.identify(app, token)
    pair = await create_pair(access.answerer(app), identity, [{"role": "user", "content": question}])

    def pane(answer: Answer) -> str:
        return answer_markdown(answer.text, answer.citations, answer.passages)

    shown = Shown(
        pair.comparison.comparison_id,
        Side(pair.left.answer_id, pair.left.model_version),
        Side(pair.right.answer_id, pair.right.model_version),
    )
    return shown, pane(pair.left), pane(pair.right)


def choose(app: AppState, token: str | None, shown: Shown | None, choice: Choice) -> str:
    """Store the choice (final) and return the reveal as Markdown."""
    if shown is None:
        raise gr.Error("Ask a question first: there is no pair to judge.")
    identity = access.identify(app, token)
    store = access.store(app)
    store.choose(shown.comparison_id, identity.user, choice)
    lines = [f"**Your choice:** {CHOICE_TEXT[choice]}. Thank you.", ""]
    for name, side in (("A", shown.left), ("B", shown.right)):
        generation = store.get_answer(side.answer_id).generation
        temperature = generation.get("temperature")
        how = f" at temperature {temperature}" if isinstance(temperature, int | float) else ""
        lines.append(f"- Answer {name} was written by model {code(side.model_version)}{how}")
    return "\n".join(lines)


def build(app: AppState, token: gr.Textbox) -> None:
    """The Compare tab's components and events (inside a `gr.Tab`)."""
    shown = gr.State(None)
    gr.Markdown(
        "Ask a question and get two anonymous answers. Pick the better one: your choice teaches the "
        "assistant which answers people prefer. Which model wrote which is shown after you choose."
    )
    with gr.Row():
        question = gr.Textbox(
            show_label=False,
            placeholder="Type a question and press Enter",
            elem_id="kb-compare-question",
            scale=8,
            max_length=4000,
        )
        go = gr.Button("Get two answers", variant="primary", scale=1, elem_id="kb-compare-ask")
    with gr.Row(equal_height=True):
        with gr.Column():
            gr.Markdown("### Answer A")
            left = gr.Markdown(elem_id="kb-answer-a", latex_delimiters=[])
        with gr.Column():
            gr.Markdown("### Answer B")
            right = gr.Markdown(elem_id="kb-answer-b", latex_delimiters=[])
    with gr.Row():
        buttons = {
            Choice.A: gr.Button("A is better", interactive=False, elem_id="kb-choose-a"),
            Choice.B: gr.Button("B is better", interactive=False, elem_id="kb-choose-b"),
            Choice.TIE: gr.Button("Tie", interactive=False, elem_id="kb-choose-tie"),
            Choice.BOTH_BAD: gr.Button("Both bad", interactive=False, elem_id="kb-choose-both-bad"),
        }
    reveal = gr.Markdown(elem_id="kb-reveal")

    def enable(on: bool) -> list[Any]:
        return [gr.Button(interactive=on) for _ in buttons]

    async def on_ask(token_value: str, text: str) -> tuple[Any, ...]:
        with shown_to_user():
            pair, a, b = await ask(app, token_value, text)
        return (pair, a, b, "", *enable(True))

    def chooser(choice: Choice) -> Any:
        def on_choose(token_value: str, current: Shown | None) -> tuple[Any, ...]:
            with shown_to_user():
                text = choose(app, token_value, current, choice)
            return (None, text, *enable(False))

        return on_choose

    pane_outputs = [shown, left, right, reveal, *buttons.values()]
    question.submit(on_ask, [token, question], pane_outputs, concurrency_limit=None)  # as in ui.chat
    go.click(on_ask, [token, question], pane_outputs, concurrency_limit=None)
    for choice, button in buttons.items():
        button.click(chooser(choice), [token, shown], [shown, reveal, *buttons.values()])
