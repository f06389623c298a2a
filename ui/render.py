"""Text the UI shows, made safe: user, document and model text never reaches the page as markup.

Gradio renders chat messages and `gr.Markdown` as Markdown with raw HTML allowed. Every piece of text
that did not come from this module is therefore escaped twice over:
- `markdown_text`: Markdown punctuation gets a backslash (no links, images, emphasis, headings or
  LaTeX can be smuggled in), then HTML's special characters become entities;
- `html_text`: inside an HTML block Markdown is not parsed, so only HTML escaping, and newlines
  become `<br>` (a blank line would end the HTML block and let the rest be read as Markdown).
Pure functions over plain data: no Gradio import.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Protocol

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start markup
# (links, images, emphasis, code, headings, tables, strikethrough, LaTeX). `<`, `>` and `&` are left to
# html.escape: a backslash before an entity would show the entity itself.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$=:])")
_LINE_BREAKS = re.compile(r"\r\n?|\n")


class SourceLike(Protocol):
    """What a citation (feedback.records.Citation) or a passage (rag.prompting.Passage) shares."""

    @property
    def n(self) -> int: ...

    @property
    def source(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def section(self) -> str: ...


class PassageLike(SourceLike, Protocol):
    @property
    def chunk_id(self) -> str: ...

    @property
    def text(self) -> str: ...


def html_text(text: str) -> str:
    """`text` as HTML element content or attribute value: escaped, newlines as `<br>`."""
    return _LINE_BREAKS.sub("<br>", html.escape(text, quote=True))


def markdown_text(text: str) -> str:
    """`text` as Markdown that renders to exactly `text` (line breaks kept), with no markup in it."""
    lines = _LINE_BREAKS.split(text)
    return "\n".join(html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", line), quote=True) for line in lines)


def code(text: str) -> str:
    """`text` in a monospace span, for Markdown. (Not backticks: in a code span, Markdown shows the
    backslashes and entities of `markdown_text` as they are.)"""
    return f"<code>{markdown_text(text)}</code>"


def source_label(item: SourceLike) -> str:
    """`Title — Section` as plain text (either part may be empty)."""
    parts = [p for p in (item.title.strip(), item.section.strip()) if p]
    return " — ".join(parts) or item.source


def sources_html(
    citations: Sequence[SourceLike], passages: Sequence[PassageLike], *, refused: bool = False
) -> str:
    """The source list under an answer, one HTML block (no blank line in it): what the answer cites,
    each with its passage text in a `<details>`; when it cites nothing, the passages it was given."""
    if refused or not passages:
        return ""
    by_n = {p.n: p for p in passages}
    if citations:
        heading = "Sources"
        shown: list[tuple[SourceLike, str]] = [(c, by_n[c.n].text if c.n in by_n else "") for c in citations]
    else:
        heading = "Passages the answer was given (it cites none of them)"
        shown = [(p, p.text) for p in passages]
    items = []
    for item, text in shown:
        summary = (
            f"<span class='kb-source-n'>[{item.n}]</span> "
            f"<span class='kb-source-title'>{html_text(source_label(item))}</span> "
            f"<code class='kb-source-path'>{html_text(item.source)}</code>"
        )
        body = f"<blockquote>{html_text(text)}</blockquote>" if text else ""
        items.append(f"<li><details><summary>{summary}</summary>{body}</details></li>")
    return f"<div class='kb-sources'><b>{heading}</b><ol>{''.join(items)}</ol></div>"


EXTRACTIVE_NOTE = "Quoted from the sources: the generated answer did not pass its checks."


def kind_note(kind: str) -> str:
    """A one-line HTML note on how the answer was made, when the reader should know (else "")."""
    if kind == "extractive":
        return f"<p class='kb-extractive'>{html_text(EXTRACTIVE_NOTE)}</p>"
    return ""


def answer_markdown(
    text: str,
    citations: Sequence[SourceLike] = (),
    passages: Sequence[PassageLike] = (),
    *,
    refused: bool = False,
    kind: str = "generated",
) -> str:
    """An answer as shown in the chat or a comparison pane: the text, then, for an extractive answer
    (service.answering: passage sentences that replaced a generated answer that failed its checks), a
    note saying so, then its sources."""
    body = markdown_text(text) if text.strip() else "*(empty answer)*"
    below = [part for part in (kind_note(kind), sources_html(citations, passages, refused=refused)) if part]
    return "\n\n".join([body, *below])


def preview(text: str, limit: int = 80) -> str:
    """The start of `text` on one line, for labels (plain text: escape it where it is rendered)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
