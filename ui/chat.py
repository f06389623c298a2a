"""The Chat tab: streamed, cited answers; thumbs on every answer; reasons, a comment, a better answer;
the employee's past conversations, to reopen and continue.

The conversation lives in a per-session `ChatSession` (server side, in `gr.State`): the raw text of
every turn (what the model sees on the next turn) next to what the chatbot shows, and the answer id
of each answer, so a thumbs click on message i maps back to the stored answer. The chatbot's value is
always rebuilt from the session; the browser never sends it back.

Streaming: the text shows as it is generated; the final `Answer` then replaces it with `answer.text`,
which may differ (the answer check can replace a generated answer by passage sentences: `kind`
"extractive", shown with a note above its sources, ui.render).

History: the list beside the chat holds the employee's own conversations from the store
(feedback.conversations), most recently active first. Opening one rebuilds the session from its
stored turns (the cited passages' text looked up in the current index, as far as the employee may
see them), so the next question goes out with that conversation id and its history.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import gradio as gr

from feedback.votes import Reason
from rag.prompting import Passage
from service.answering import Answer, ChatInput
from service.errors import NotReady, Unauthorized
from ui import access
from ui.errors import shown_to_user, toast, user_message
from ui.render import answer_markdown, markdown_text, preview

if TYPE_CHECKING:
    from feedback.conversations import ConversationTurn
    from feedback.records import Citation
    from feedback.store import Store
    from service.api.deps import AppState
    from service.auth import Identity

REASON_LABELS: dict[Reason, str] = {
    Reason.INCORRECT: "Incorrect",
    Reason.OUTDATED: "Outdated",
    Reason.INCOMPLETE: "Incomplete",
    Reason.NOT_HELPFUL: "Not helpful",
    Reason.WRONG_SOURCE: "Wrong source",
    Reason.TOO_LONG: "Too long",
    Reason.UNSAFE: "Unsafe",
}
REASON_CHOICES = [(label, reason.value) for reason, label in REASON_LABELS.items()]
PENDING = "*…*"
HISTORY_SIZE = 30  # conversations listed beside the chat (older ones: GET /api/conversations?offset=)


@dataclass
class Turn:
    role: Literal["user", "assistant"]
    text: str  # as typed / as generated: what the next request sends
    shown: str  # the chatbot's Markdown (escaped; sources under answers)
    answer_id: str | None = None  # the stored answer (assistant turns)


@dataclass
class ChatSession:
    turns: list[Turn] = field(default_factory=list)
    conversation_id: str | None = None

    def chatbot(self) -> list[dict[str, str]]:
        return [{"role": t.role, "content": t.shown} for t in self.turns]

    def busy(self) -> bool:
        """An answer is being written (another event of this page is streaming it)."""
        return bool(self.turns) and self.turns[-1].answer_id is None and self.turns[-1].role == "assistant"

    def messages(self) -> list[dict[str, str]]:
        """The visible conversation as the answerer takes it (answers still being written left out)."""
        return [
            {"role": t.role, "content": t.text}
            for t in self.turns
            if t.role == "user" or t.answer_id is not None
        ]


@dataclass(frozen=True)
class Rated:
    """The answer the feedback form is about, and the thumb given to it."""

    answer_id: str
    value: Literal["up", "down"]
    excerpt: str


async def respond(
    app: AppState, token: str | None, question: str, session: ChatSession
) -> AsyncGenerator[ChatSession, None]:
    """Ask `question` in the session's conversation: yields the session as the answer streams in and
    once more when the answer is complete (stored, with citations). On failure (or when the page
    goes away mid-answer), the question is taken back out of the conversation."""
    question = question.strip()
    if not question:
        raise gr.Error("Type a question first.")
    if session.busy():
        raise gr.Error("Wait for the answer being written to finish.")
    identity = access.identify(app, token)
    answerer = access.answerer(app)
    asked = len(session.turns)
    session.turns.append(Turn("user", question, markdown_text(question)))
    pending = Turn("assistant", "", PENDING)
    session.turns.append(pending)
    request = ChatInput(messages=session.messages(), conversation_id=session.conversation_id)
    try:
        yield session
        async for event in answerer.answer(request, identity):
            if isinstance(event, Answer):
                pending.text, pending.answer_id = event.text, event.answer_id
                pending.shown = answer_markdown(  # replaces what streamed: the checked answer
                    event.text, event.citations, event.passages, refused=event.refused, kind=event.kind
                )
                session.conversation_id = event.conversation_id
            else:
                pending.text += event.text
                pending.shown = markdown_text(pending.text) + " ▍"
            yield session
    finally:  # failed, or the page went away mid-answer: the question was not answered
        if pending.answer_id is None:
            del session.turns[asked:]
    if pending.answer_id is None:  # the answerer always ends with an Answer; be safe if not
        raise gr.Error("The answer was interrupted; please ask again.")


def history(app: AppState, token: str | None) -> list[tuple[str, str]]:
    """The caller's past conversations, most recently active first, as (label, conversation id)."""
    identity = access.identify(app, token)
    listed = access.store(app).list_conversations(identity.user, limit=HISTORY_SIZE)
    return [(history_label(c.title, c.turns, c.last_activity), c.conversation_id) for c in listed]


def history_label(title: str, turns: int, last_activity: str) -> str:
    """One line of the history list, plain text: `title · 3 turns · 2026-12-02 10:05`."""
    when = last_activity[:16].replace("T", " ")
    return f"{preview(title, 60) or '(no question)'} · {turns} turn{'s' if turns != 1 else ''} · {when}"


def reopen(app: AppState, token: str | None, conversation_id: str) -> ChatSession:
    """A session holding the caller's own stored conversation `conversation_id`, ready to continue."""
    identity = access.identify(app, token)
    turns = access.store(app).conversation(conversation_id, identity.user)
    if not turns:
        raise gr.Error("That conversation is not in your history any more.")
    texts = _passage_texts(app, [c for t in turns for c in t.citations], identity)
    session = ChatSession(conversation_id=conversation_id)
    for turn in turns:
        session.turns.append(Turn("user", turn.question, markdown_text(turn.question)))
        session.turns.append(Turn("assistant", turn.answer, _restored(turn, texts), turn.answer_id))
    return session


def _restored(turn: ConversationTurn, texts: dict[str, str]) -> str:
    passages = [
        Passage(c.n, c.chunk_id, c.source, c.title, c.section, texts.get(c.chunk_id, ""))
        for c in turn.citations
    ]
    return answer_markdown(turn.answer, turn.citations, passages, refused=turn.refused, kind=turn.kind)


def _passage_texts(app: AppState, citations: list[Citation], identity: Identity) -> dict[str, str]:
    """The text of each cited chunk still in the current index and visible to `identity` (a chunk
    re-indexed away, or restricted since, is shown by its title only)."""
    from rag.search import visible

    if not citations or app.retriever is None:
        return {}
    try:
        version = app.retriever.current()
    except Exception:  # no index yet, or it cannot be read: the titles alone will do
        return {}
    texts = {}
    for citation in citations:
        row = version.row_of.get(citation.chunk_id)
        if row is not None and visible(version.chunks[row], identity.groups):
            texts[citation.chunk_id] = version.chunks[row].text
    return texts


def rate(app: AppState, token: str | None, session: ChatSession, index: Any, liked: Any) -> Rated | None:
    """Record a thumbs click on chatbot message `index`: up (liked True), down (False) or withdrawn
    (anything else). Returns what the feedback form is about now (None: nothing)."""
    position = index[0] if isinstance(index, list | tuple) else index
    if not isinstance(position, int) or not 0 <= position < len(session.turns):
        raise gr.Error("That message is no longer in this conversation.")
    turn = session.turns[position]
    if turn.role != "assistant" or turn.answer_id is None:
        raise gr.Error("Only finished answers can be rated.")
    identity = access.identify(app, token)
    store = access.store(app)
    _check_asker(store, turn.answer_id, identity)
    value: Literal["up", "down", "none"] = "up" if liked is True else "down" if liked is False else "none"
    store.vote(turn.answer_id, identity.user, value)
    if value == "none":
        return None
    return Rated(turn.answer_id, value, preview(turn.text))


def send_feedback(
    app: AppState,
    token: str | None,
    rated: Rated | None,
    reasons: list[str] | None,
    comment: str | None,
    correction: str | None,
) -> str:
    """Store the form: the vote again with its reasons and comment, and the suggested answer. Returns
    what was recorded, as plain text."""
    if rated is None:
        raise gr.Error("Rate an answer with a thumb first.")
    identity = access.identify(app, token)
    store = access.store(app)
    _check_asker(store, rated.answer_id, identity)
    comment = (comment or "").strip() or None
    correction = (correction or "").strip()
    chosen = list(reasons or []) if rated.value == "down" else []
    store.vote(rated.answer_id, identity.user, rated.value, reasons=chosen, comment=comment)
    recorded = ["thumbs " + rated.value + (f" ({', '.join(chosen)})" if chosen else "")]
    if comment:
        recorded.append("your comment")
    if correction:
        store.add_correction(rated.answer_id, identity.user, correction)
        recorded.append("your suggested answer")
    return "Thank you. Recorded: " + ", ".join(recorded) + "."


def _check_asker(store: Store, answer_id: str, identity: Identity) -> None:
    """Only who asked (or an operator) rates an answer, as in the API; the token may have changed
    since the question was asked."""
    if not identity.may_access(store.get_answer(answer_id).user_id):
        raise gr.Error("This answer was given to someone else: only they can rate it. Ask again.")


def build(app: AppState, token: gr.Textbox, blocks: gr.Blocks) -> None:
    """The Chat tab's components and events (inside a `gr.Tab`)."""
    session = gr.State(ChatSession())
    rated = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            restart = gr.Button("New conversation", size="sm", elem_id="kb-new-conversation")
            past = gr.Radio(
                choices=[],
                label="Your conversations",
                info="Most recent first; pick one to continue it.",
                elem_id="kb-history",
                interactive=True,
            )
            reload = gr.Button("Refresh", size="sm", elem_id="kb-history-refresh")
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="kb-chat",
                height=460,
                feedback_options=("Like", "Dislike"),
                latex_delimiters=[],
                buttons=["copy", "copy_all"],
                placeholder="Ask about policies, IT, offices… Answers cite the documents they come from.",
            )
            with gr.Row():
                question = gr.Textbox(
                    show_label=False,
                    placeholder="Type a question and press Enter",
                    elem_id="kb-question",
                    scale=8,
                    max_length=4000,
                )
                ask = gr.Button("Ask", variant="primary", scale=1, elem_id="kb-ask")
    with gr.Column(visible=False, variant="panel", elem_id="kb-feedback") as form:
        about = gr.Markdown()
        reasons = gr.CheckboxGroup(REASON_CHOICES, label="What was wrong?", elem_id="kb-reasons")
        comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=2000, elem_id="kb-comment")
        correction = gr.Textbox(
            label="Suggest a better answer (optional)", lines=3, max_length=8000, elem_id="kb-correction"
        )
        send = gr.Button("Send feedback", elem_id="kb-send-feedback")
    status = gr.Markdown(elem_id="kb-feedback-status")

    async def on_ask(
        token_value: str, text: str, current: ChatSession
    ) -> AsyncIterator[tuple[list[dict[str, str]], ChatSession, str]]:
        failed: Exception | None = None
        try:
            async for updated in respond(app, token_value, text, current):
                yield updated.chatbot(), updated, ""
        except gr.Error:
            raise
        except Exception as exc:
            failed = exc
        if failed is not None:
            yield current.chatbot(), current, text  # the question goes back into the box
            raise toast(user_message(failed)) from failed

    def on_like(token_value: str, current: ChatSession, data: gr.LikeData) -> tuple[Any, ...]:
        with shown_to_user():
            target = rate(app, token_value, current, data.index, data.liked)
        if target is None:
            return gr.Column(visible=False), None, "", gr.CheckboxGroup(), "", "", "Your vote was withdrawn."
        thumb = "Thumbs up" if target.value == "up" else "Thumbs down"
        heading = f"**{thumb} for:** {markdown_text(target.excerpt)}"
        return (
            gr.Column(visible=True),
            target,
            heading,
            gr.CheckboxGroup(value=[], visible=target.value == "down"),
            "",
            "",
            "Vote recorded. Tell us more below if you like.",
        )

    def on_send(
        token_value: str, target: Rated | None, chosen: list[str], note: str, better: str
    ) -> tuple[Any, ...]:
        with shown_to_user():
            done = send_feedback(app, token_value, target, chosen, note, better)
        return gr.Column(visible=False), None, markdown_text(done)

    def on_restart() -> tuple[Any, ...]:
        return [], ChatSession(), gr.Column(visible=False), None, "", gr.Radio(value=None)

    def on_history(token_value: str, current: ChatSession) -> Any:
        try:
            choices = history(app, token_value)
        except (Unauthorized, NotReady):  # no token typed yet, or still starting: nothing to list
            choices = []
        except Exception as exc:
            raise toast(user_message(exc)) from exc
        ids = {cid for _, cid in choices}
        return gr.Radio(
            choices=choices, value=current.conversation_id if current.conversation_id in ids else None
        )

    def on_open(token_value: str, conversation_id: str | None) -> tuple[Any, ...]:
        if not conversation_id:
            raise gr.Error("Pick a conversation first.")
        with shown_to_user():
            opened = reopen(app, token_value, conversation_id)
        return opened.chatbot(), opened, gr.Column(visible=False), None, ""

    # answers stream concurrently: the engine batches them and its queue answers "busy" when full
    outputs = [chatbot, session, question]
    submitted = question.submit(on_ask, [token, question, session], outputs, concurrency_limit=None)
    clicked = ask.click(on_ask, [token, question, session], outputs, concurrency_limit=None)
    asking: list[dict[str, Any]] = [submitted, clicked]  # gradio's Dependency is a dict
    chatbot.like(on_like, [token, session], [form, rated, about, reasons, comment, correction, status])
    send.click(on_send, [token, rated, reasons, comment, correction], [form, rated, status])
    fresh = [chatbot, session, form, rated, status, past]
    restart.click(on_restart, None, fresh, cancels=asking)
    chatbot.clear(on_restart, None, fresh, cancels=asking)  # the chatbot's own trash button
    # the history: listed when the page opens, a token is typed, on Refresh and after every answer
    listing: dict[str, Any] = {
        "fn": on_history,
        "inputs": [token, session],
        "outputs": [past],
        "queue": False,
    }
    blocks.load(**listing)
    token.change(**listing)
    reload.click(**listing)
    submitted.then(**listing)
    clicked.then(**listing)
    past.input(on_open, [token, past], [chatbot, session, form, rated, status], cancels=asking)
