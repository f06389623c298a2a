"""The UI in a real browser (Debian's chromium driven by Playwright) against a live server.

Chat: ask, see the streamed answer and its cited sources, thumbs down with a reason; a follow-up
with markup in it shows up as text. Compare: ask, choose A, see the reveal. Then the rows in SQLite.
Modes: the local user without tokens sees and uses every tab; with a tokens file an employee's token
shows no operator tab. History: a past conversation reopens and continues. An extractive answer shows
its note and sources. Screenshots of each step are saved under the test's tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import EMPLOYEE, OPERATOR, PARKING
from tests.ui.conftest import Live

CHROMIUM = Path("/usr/bin/chromium")
FOLLOW_UP = 'And for <img src=x onerror="window.__pwned=1"> **electric** cars?'
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_chat_feedback_and_compare_end_to_end(live_server: Live, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    page.goto(f"{live_server.url}/ui/")
    expect(page.locator("#kb-token")).to_have_count(0)  # local and without tokens: no token box

    # -- chat: a streamed answer with its sources ---------------------------------------------------
    question = page.locator("#kb-question textarea")
    question.fill(PARKING)
    question.press("Enter")
    answer = page.locator("#kb-chat [data-testid=bot]").last
    expect(answer.locator(".kb-sources")).to_contain_text("policies/parking.md")
    expect(answer.locator(".kb-sources")).to_contain_text("Parking Policy")
    answer.locator(".kb-sources summary").first.click()  # the passage text unfolds
    expect(answer.locator(".kb-sources blockquote").first).to_be_visible()
    page.screenshot(path=str(shots / "1-answer.png"), full_page=True)

    # -- thumbs down, a reason, a comment ----------------------------------------------------------
    page.locator("#kb-chat button[aria-label='Dislike']").last.click()
    form = page.locator("#kb-feedback")
    expect(form).to_be_visible()
    form.locator("#kb-reasons").get_by_text("Outdated").click()
    form.locator("#kb-comment textarea").fill("The price changed last month.")
    page.screenshot(path=str(shots / "2-feedback-form.png"), full_page=True)
    form.locator("#kb-send-feedback").click()
    expect(page.locator("#kb-feedback-status")).to_contain_text("thumbs down (outdated)")
    expect(form).to_be_hidden()

    # -- a follow-up whose markup must show as text --------------------------------------------------
    question.fill(FOLLOW_UP)
    question.press("Enter")
    expect(page.locator("#kb-chat [data-testid=bot]")).to_have_count(2)
    user = page.locator("#kb-chat [data-testid=user]").last
    expect(user).to_contain_text('<img src=x onerror="window.__pwned=1"> **electric** cars?')
    assert page.locator("#kb-chat img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#kb-question textarea")).to_have_value("")
    page.screenshot(path=str(shots / "3-follow-up.png"), full_page=True)

    # -- compare: two anonymous answers, choose A, the reveal -----------------------------------------
    page.get_by_role("tab", name="Compare").click()
    page.locator("#kb-compare-question textarea").fill(PARKING)
    page.locator("#kb-compare-ask").click()
    expect(page.locator("#kb-choose-a")).to_be_enabled()
    expect(page.locator("#kb-answer-a .kb-sources")).to_contain_text("policies/parking.md")
    expect(page.locator("#kb-answer-b .kb-sources")).to_contain_text("policies/parking.md")
    page.screenshot(path=str(shots / "4-compare.png"), full_page=True)
    page.locator("#kb-choose-a").click()
    expect(page.locator("#kb-reveal")).to_contain_text("Answer A was written by model")
    expect(page.locator("#kb-choose-b")).to_be_disabled()
    page.screenshot(path=str(shots / "5-reveal.png"), full_page=True)

    # -- what reached SQLite -------------------------------------------------------------------------
    store = live_server.app.state.kbloop.store
    votes = store.list_votes(user_id="local")
    assert [(v.value.value, [r.value for r in v.reasons], v.comment) for v in votes] == [
        ("down", ["outdated"], "The price changed last month.")
    ]
    voted = store.get_answer(votes[0].answer_id)
    assert voted.question == PARKING and voted.messages == [{"role": "user", "content": PARKING}]
    follow_up = store.list_answers(conversation_id=voted.conversation_id, limit=5)[0]
    assert [m["role"] for m in follow_up.messages] == ["user", "assistant", "user"]
    assert follow_up.messages[-1]["content"] == FOLLOW_UP
    comparisons = store.list_comparisons(user_id="local")
    assert len(comparisons) == 1 and comparisons[0].choice.value == "A"


def test_operator_token_knowledge_upload_and_operator_tab(
    make_live_server: Callable[..., Live], tokens_file: Path, fixture_index: Path, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    index = tmp_path / "index"
    shutil.copytree(fixture_index, index)  # the upload re-indexes: not the shared fixture index
    live = make_live_server(tokens_file=tokens_file, index_dir=index)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page.goto(f"{live.url}/ui/")
    page.locator("#kb-token input").fill(OPERATOR)
    # the page keeps the token in a cookie for Gradio's upload route, which no event guards (ui.uploads)
    page.wait_for_function("document.cookie.includes('kbloop_ui_token=')")
    cookie = {c["name"]: c for c in page.context.cookies()}["kbloop_ui_token"]
    assert cookie["value"] == OPERATOR and cookie["path"] == "/ui" and cookie["sameSite"] == "Strict"

    # two thumbs down (one on a question with markup in it), the last with a suggested answer
    question = page.locator("#kb-question textarea")
    question.fill(FOLLOW_UP)
    question.press("Enter")
    expect(page.locator("#kb-chat [data-testid=bot]")).to_have_count(1)
    # finished (stored, so it can be rated) once the history lists its conversation; the bot message
    # appears while it still streams, and a loaded machine streams slowly
    expect(page.locator("#kb-history")).to_contain_text("1 turn", timeout=60_000)
    page.locator("#kb-chat button[aria-label='Dislike']").last.click()
    expect(page.locator("#kb-feedback")).to_be_visible()
    question.fill(PARKING)
    question.press("Enter")
    expect(page.locator("#kb-chat [data-testid=bot] .kb-sources")).to_be_visible()
    page.locator("#kb-chat button[aria-label='Dislike']").last.click()
    page.locator("#kb-reasons").get_by_text("Incorrect").click()
    page.locator("#kb-correction textarea").fill("Permits cost 45 dollars per month.")
    page.locator("#kb-send-feedback").click()
    expect(page.locator("#kb-feedback-status")).to_contain_text("your suggested answer")

    page.get_by_role("tab", name="Operator").click()
    page.locator("#kb-operator-refresh").click()
    expect(page.locator("#kb-down")).to_contain_text("How much does a parking permit cost")
    expect(page.locator("#kb-down")).to_contain_text('<img src=x onerror="window.__pwned=1"> **electric**')
    assert page.locator("img[src=x]").count() == 0 and page.evaluate("window.__pwned") is None
    expect(page.locator("#kb-thumbs")).to_contain_text("0%")
    expect(page.locator("#kb-inspect-passages")).to_contain_text("policies/parking.md")
    expect(page.locator("#kb-inspect-hint")).to_contain_text("Likely failure: generation")
    page.screenshot(path=str(shots / "6-operator.png"), full_page=True)

    page.get_by_role("tab", name="Knowledge").click()
    page.locator("#kb-documents-refresh").click()
    expect(page.locator("#kb-documents")).to_contain_text("policies/parking.md")
    upload = tmp_path / "Bike policy.md"
    upload.write_text("# Bike policy\n\nBicycles are stored in the basement rack next to door B.\n")
    page.locator("#kb-upload input[type=file]").set_input_files(str(upload))
    expect(page.locator("#kb-upload")).to_contain_text("Bike policy.md")
    page.locator("#kb-add").click()
    expect(page.locator("#kb-add-result")).to_contain_text("published")
    expect(page.locator("#kb-documents")).to_contain_text("uploads/Bike policy.md")
    page.screenshot(path=str(shots / "7-knowledge.png"), full_page=True)

    state = live.app.state.kbloop
    vote, _ = state.store.list_votes(user_id="olga")
    assert vote.value.value == "down" and [r.value for r in vote.reasons] == ["incorrect"]
    assert [c.text for c in state.store.list_corrections(user_id="olga")] == [
        "Permits cost 45 dollars per month."
    ]
    assert (state.settings.data_dir / "uploads" / "Bike policy.md").exists()


# -- local single-user mode, multi-user mode, history, extractive answers (issue 18) ----------------------

ALL_TABS = ("Chat", "Compare", "Knowledge", "Operator", "Models")
OPERATOR_TABS = ("Knowledge", "Operator", "Models")


def test_a_local_user_without_tokens_sees_and_uses_every_tab(
    live_server: Live, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/ui/")  # 127.0.0.1: local single-user mode, the local operator
    expect(page.locator("#kb-token")).to_have_count(0)
    for name in ALL_TABS:
        expect(page.get_by_role("tab", name=name)).to_be_visible()
    # the operator's tabs work for the local user, without any token
    page.get_by_role("tab", name="Knowledge").click()
    page.locator("#kb-documents-refresh").click()
    expect(page.locator("#kb-documents")).to_contain_text("policies/parking.md")
    page.get_by_role("tab", name="Operator").click()
    page.locator("#kb-operator-refresh").click()
    expect(page.locator("#kb-thumbs")).to_be_visible()
    page.get_by_role("tab", name="Models").click()
    expect(page.get_by_text("not an operator")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "local-tabs.png"), full_page=True)


def test_with_a_tokens_file_an_employee_does_not_see_the_operator_tabs(
    make_live_server: Callable[..., Live], tokens_file: Path, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    live = make_live_server(tokens_file=tokens_file)  # multi-user mode, though on loopback
    page.goto(f"{live.url}/ui/")
    token = page.locator("#kb-token input")
    expect(token).to_be_visible()
    expect(page.get_by_role("tab", name="Chat")).to_be_visible()
    for name in OPERATOR_TABS:  # no token yet
        expect(page.get_by_role("tab", name=name)).to_be_hidden()
    token.fill(EMPLOYEE)
    page.wait_for_function("document.cookie.includes('kbloop_ui_token=')")
    question = page.locator("#kb-question textarea")
    question.fill(PARKING)  # the employee can ask (the token took effect)...
    question.press("Enter")
    expect(page.locator("#kb-chat [data-testid=bot] .kb-sources")).to_be_visible()
    for name in OPERATOR_TABS:  # ...and still sees no operator tab
        expect(page.get_by_role("tab", name=name)).to_be_hidden()
    page.screenshot(path=str(tmp_path / "employee-tabs.png"), full_page=True)
    token.fill(OPERATOR)
    for name in OPERATOR_TABS:
        expect(page.get_by_role("tab", name=name)).to_be_visible()
    token.fill(EMPLOYEE)  # back to an employee: hidden again
    for name in OPERATOR_TABS:
        expect(page.get_by_role("tab", name=name)).to_be_hidden()


def test_a_history_entry_reopens_a_conversation_and_continues_it(
    live_server: Live, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/ui/")
    question = page.locator("#kb-question textarea")
    bots = page.locator("#kb-chat [data-testid=bot]")
    history = page.locator("#kb-history")
    question.fill(PARKING)
    question.press("Enter")
    expect(bots.last.locator(".kb-sources")).to_be_visible()
    first_answer = bots.last.locator("p").first.inner_text()
    expect(history).to_contain_text(PARKING)  # listed once answered
    page.locator("#kb-new-conversation").click()
    expect(bots).to_have_count(0)
    question.fill(FOLLOW_UP)  # a second conversation, whose title is markup
    question.press("Enter")
    expect(bots).to_have_count(1)
    expect(history.locator("label")).to_have_count(2)
    expect(history.locator("label").first).to_contain_text('<img src=x onerror="window.__pwned=1">')
    assert page.locator("#kb-history img[src=x]").count() == 0 and page.evaluate("window.__pwned") is None
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

    # reopen the first: its question and answer (with sources) come back, then continue it
    history.locator("label").filter(has_text=PARKING).click()
    expect(page.locator("#kb-chat [data-testid=user]")).to_have_count(1)
    expect(page.locator("#kb-chat [data-testid=user]").first).to_contain_text(PARKING)
    expect(bots).to_have_count(1)
    assert bots.first.locator("p").first.inner_text() == first_answer
    store = live_server.app.state.kbloop.store
    first = next(c for c in store.list_conversations("local") if c.title == PARKING)
    stored = store.conversation(first.conversation_id, "local")[0]
    question.fill("And is there a waiting list?")
    question.press("Enter")
    expect(bots).to_have_count(2)
    expect(history.locator("label").first).to_contain_text(PARKING)  # active again: on top
    page.screenshot(path=str(tmp_path / "continued.png"), full_page=True)
    turns = store.conversation(first.conversation_id, "local")
    assert [t.question for t in turns] == [PARKING, "And is there a waiting list?"]
    latest = store.get_answer(turns[-1].answer_id)
    assert [m["content"] for m in latest.messages] == [PARKING, stored.answer, "And is there a waiting list?"]
    assert store.count_conversations("local") == 2


def test_an_extractive_fallback_renders_with_its_sources(
    live_server: Live, page: Any, tmp_path: Path
) -> None:
    """The tiny random model of the tests writes no sensible answer: the check replaces every one with
    passage sentences (kind "extractive"), and the page shows that text, the note and the sources."""
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/ui/")
    question = page.locator("#kb-question textarea")
    question.fill(PARKING)
    question.press("Enter")
    answer = page.locator("#kb-chat [data-testid=bot]").last
    expect(answer.locator(".kb-extractive")).to_contain_text("did not pass its checks")
    expect(answer.locator(".kb-sources")).to_contain_text("policies/parking.md")
    page.screenshot(path=str(tmp_path / "extractive.png"), full_page=True)
    store = live_server.app.state.kbloop.store
    record = store.list_answers(limit=1)[0]
    assert record.kind == "extractive" and record.citations
    # the page shows the stored (checked) text, not what streamed before the check replaced it
    expect(answer).to_contain_text(record.answer.split("[")[0].strip()[:40])
    # the note sits above the sources
    box_note = answer.locator(".kb-extractive").bounding_box()
    box_sources = answer.locator(".kb-sources").bounding_box()
    assert box_note["y"] < box_sources["y"]
