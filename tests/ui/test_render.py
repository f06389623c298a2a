"""Escaping: no user, document or model text reaches the page as markup."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from feedback.records import Citation
from rag.prompting import Passage
from service.answering import Answer
from ui.render import (
    EXTRACTIVE_NOTE,
    answer_markdown,
    code,
    html_text,
    kind_note,
    markdown_text,
    preview,
    source_label,
    sources_html,
)

SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'
MARKDOWN_TRICKS = "[click](javascript:alert(1)) ![i](http://evil/x.png) **bold** `code` # head $$x$$"


@dataclass(frozen=True)
class P:
    n: int
    chunk_id: str
    source: str
    title: str
    section: str
    text: str


@dataclass(frozen=True)
class C:
    n: int
    chunk_id: str
    source: str
    section: str
    title: str


def no_raw_tags(out: str) -> None:
    assert "<script" not in out.lower()
    assert "<img" not in out.lower()
    assert 'onerror="' not in out


@pytest.mark.parametrize("payload", [SCRIPT, IMG])
def test_html_text_escapes_tags_and_quotes(payload: str) -> None:
    out = html_text(payload + "\nnext line")
    no_raw_tags(out)
    assert "&lt;" in out and "<br>" in out
    assert html_text("a\"b'c") == "a&quot;b&#x27;c"


@pytest.mark.parametrize("payload", [SCRIPT, IMG])
def test_markdown_text_escapes_html(payload: str) -> None:
    out = markdown_text(payload)
    no_raw_tags(out)
    assert out.startswith("&lt;")


def test_markdown_text_neutralises_markdown() -> None:
    out = markdown_text(MARKDOWN_TRICKS)
    # every link, image, emphasis, code, heading and LaTeX marker is backslash-escaped
    for marker in ("[", "]", "(", ")", "!", "*", "`", "#", "$"):
        assert re.search(r"(?<!\\)" + re.escape(marker), out) is None, marker
    assert "javascript\\:" in out  # no autolink either


def test_markdown_text_keeps_lines_and_entities_readable() -> None:
    assert markdown_text("a & b\r\nc") == "a &amp; b\nc"
    assert markdown_text("1. first") == "1\\. first"


def test_sources_list_escapes_document_text() -> None:
    passages = [P(1, "c1", "evil/<b>.md", IMG, SCRIPT, "text " + SCRIPT + "\n\nafter a blank line")]
    citations = [C(1, "c1", "evil/<b>.md", SCRIPT, IMG)]
    for out in (sources_html(citations, passages), sources_html([], passages)):
        no_raw_tags(out)
        assert "\n" not in out  # one HTML block: a blank line would end it
        assert "<details><summary>" in out and "<blockquote>" in out
        assert "evil/&lt;b&gt;.md" in out


def test_sources_prefer_citations_and_skip_refusals() -> None:
    passages = [P(1, "c1", "a.md", "A", "", "alpha"), P(2, "c2", "b.md", "B", "Sec", "beta")]
    cited = sources_html([C(2, "c2", "b.md", "Sec", "B")], passages)
    assert cited.startswith("<div class='kb-sources'><b>Sources</b>")
    assert "b.md" in cited and "a.md" not in cited and "beta" in cited
    uncited = sources_html([], passages)
    assert "cites none" in uncited and "a.md" in uncited and "b.md" in uncited
    assert sources_html([], passages, refused=True) == ""
    assert sources_html([], []) == ""


def test_answer_markdown_escapes_model_text_and_appends_sources() -> None:
    passages = [P(1, "c1", "a.md", "A", "S", "alpha")]
    out = answer_markdown(IMG + " [1]", [], passages)
    no_raw_tags(out)
    text, sources = out.split("\n\n", 1)
    assert text == markdown_text(IMG + " [1]")
    assert sources.startswith("<div class='kb-sources'>")
    assert answer_markdown("  ") == "*(empty answer)*"


def test_labels() -> None:
    assert source_label(P(1, "c", "a.md", "Title", "Section", "")) == "Title — Section"
    assert source_label(P(1, "c", "a.md", "", "", "")) == "a.md"
    assert preview("a  b\nc", 10) == "a b c"
    assert preview("x" * 20, 10) == "x" * 9 + "…"


def test_code_is_html_not_a_markdown_code_span() -> None:
    # inside backticks Markdown would show markdown_text's backslashes and entities literally
    assert code("v-1.2 <x>") == "<code>v\\-1\\.2 &lt;x&gt;</code>"


def extractive_answer(text: str = "Permits cost 45 dollars per month [1].") -> Answer:
    """An answer as service.answering gives it when the check replaced the generated text."""
    parking = Passage(
        1, "parking#0", "policies/parking.md", "Parking Policy", "Permits", "Permits cost 45 dollars."
    )
    hr = Passage(2, "leave#0", "hr/leave.md", "Leave", "", "Employees get 25 days.")
    cited = Citation(1, "parking#0", "policies/parking.md", "Permits", "Parking Policy")
    return Answer(
        "a1", "c1", text, False, 0.9, [cited], [parking, hr], "v0001", "idx", "stop", 100, 12,
        kind="extractive",
    )  # fmt: skip


def test_an_extractive_answer_shows_its_note_between_the_text_and_its_sources() -> None:
    answer = extractive_answer()
    out = answer_markdown(
        answer.text, answer.citations, answer.passages, refused=answer.refused, kind=answer.kind
    )
    text, note, sources = out.split("\n\n")
    assert text == markdown_text("Permits cost 45 dollars per month [1].")
    assert note == f"<p class='kb-extractive'>{EXTRACTIVE_NOTE}</p>"
    assert "did not pass its checks" in note
    assert sources.startswith("<div class='kb-sources'><b>Sources</b>")
    assert "policies/parking.md" in sources and "Permits cost 45 dollars." in sources
    assert "hr/leave.md" not in sources  # the sources are what the answer cites


def test_only_an_extractive_answer_gets_the_note() -> None:
    answer = extractive_answer()
    for kind in ("generated", "refusal"):
        out = answer_markdown(answer.text, answer.citations, answer.passages, kind=kind)
        assert "kb-extractive" not in out and kind_note(kind) == ""
    # an extractive answer with no sources left (all filtered) still says how it was made
    assert answer_markdown("Quoted.", kind="extractive").endswith(kind_note("extractive"))


def test_an_extractive_answer_is_escaped_like_any_other() -> None:
    answer = extractive_answer(IMG + " [1]")
    out = answer_markdown(answer.text, answer.citations, answer.passages, kind=answer.kind)
    no_raw_tags(out)
    assert out.count("kb-extractive") == 1
