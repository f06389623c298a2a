"""Golden set, prompts rendered exactly as the service renders them, golden demonstrations, logged prompts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from feedback import Store
from rag.config import RagConfig
from rag.search import Retriever
from tests.conftest import REPO
from tests.feedback.factory import FakeClock, make_record
from tests.service.tiny import tiny_tokenizer
from trainer.errors import DataError
from trainer.examples import prompt_id
from trainer.prompts import (
    GoldenItem,
    PromptRenderer,
    golden_demonstrations,
    golden_prompts,
    load_golden,
    logged_prompts,
)

HANDBOOK = REPO / "examples" / "acme-handbook"
GOLDEN = HANDBOOK / "golden.jsonl"
# two public documents and one for managers only; the golden questions below are about them
INDEXED = (
    "hr/offices-and-hr-contacts.md",
    "hr/leave-and-time-off.md",
    "hr/compensation-bands-manager-guide.md",
)
BOSTON = "Where is the HR department in Boston?"


@pytest.fixture(scope="module")
def handbook_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    from rag.ingest import ingest

    root = tmp_path_factory.mktemp("handbook")
    docs = root / "docs"
    for name in INDEXED:
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HANDBOOK / name, docs / name)
    ingest([docs], root / "index", RagConfig(), embedder=embedder)
    return root / "index"


@pytest.fixture(scope="module")
def golden() -> dict[str, GoldenItem]:
    return {item.id: item for item in load_golden(GOLDEN)}


def handbook_renderer(index: Path, embedder: Any, tmp_path: Path, **overrides: Any) -> PromptRenderer:
    groups = overrides.pop("groups", ())
    settings = Settings(data_dir=tmp_path / "var", index_dir=index, **overrides)
    retriever = Retriever(index, RagConfig.from_settings(settings), embedder=embedder)
    # the tiny tokenizer spends many tokens per word: a wide window keeps every passage in the prompt
    return PromptRenderer(retriever, tiny_tokenizer(), settings=settings, context_window=8192, groups=groups)


def test_the_bundled_golden_set_loads(golden: dict[str, GoldenItem]) -> None:
    assert len(golden) == 68
    assert sum(not item.answerable for item in golden.values()) == 12
    assert golden["a-001"] == GoldenItem(
        "a-001",
        "Where is the HR department in Boston?",
        golden["a-001"].answer,
        ("hr/offices-and-hr-contacts.md",),
        True,
        "hr",
    )
    assert "451 Congress Street" in golden["a-001"].answer
    assert golden["a-029"].sources == () and not golden["a-029"].answerable


def test_a_malformed_golden_set_names_the_line(tmp_path: Path) -> None:
    good = {"id": "g1", "question": "Where?", "answer": "There.", "sources": [], "answerable": True}
    path = tmp_path / "golden.jsonl"
    cases = [
        (
            [good, {**good, "id": "g2", "question": " "}],
            r"golden\.jsonl:2: 'question' must be a non-empty str",
        ),
        ([good, {**good, "answerable": "yes"}], r"golden\.jsonl:2: 'answerable' must be"),
        ([good, {**good, "id": "g2", "sources": "hr.md"}], r"golden\.jsonl:2: 'sources' must be a list"),
        ([good, good], r"golden\.jsonl:2: the id 'g1' is used twice"),
    ]
    for rows, message in cases:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        with pytest.raises(DataError, match=message):
            load_golden(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no examples"):
        load_golden(path)


@pytest.fixture
def served(tmp_path: Path, handbook_index: Path, tiny_base: Path, embedder: Any) -> Iterator[Settings]:
    """Answers from the service (tiny policy, handbook index) to a question and a follow-up, in its store."""
    from service.app import create_app

    settings = Settings(
        data_dir=tmp_path / "var", index_dir=handbook_index, model=str(tiny_base), device="cpu",
        max_tokens_default=8, refusal_threshold=0.0,
    )  # fmt: skip
    with TestClient(create_app(settings, embedder=embedder)) as client:
        for messages in (
            [{"role": "user", "content": BOSTON}],
            [
                {"role": "user", "content": BOSTON},
                {"role": "assistant", "content": "At 451 Congress Street [1]."},
                {"role": "user", "content": "and which floor is it on?"},
            ],
        ):
            response = client.post("/v1/chat/completions", json={"messages": messages, "temperature": 0})
            assert response.status_code == 200, response.text
    yield settings


def test_the_renderer_renders_what_the_service_fed_its_policy(
    served: Settings, handbook_index: Path, tiny_base: Path, embedder: Any
) -> None:
    with Store(served.database_path) as store:
        logged = sorted(store.list_answers(), key=lambda a: len(a.messages))
    assert [a.refused for a in logged] == [False, False]
    renderer = PromptRenderer(
        Retriever(handbook_index, RagConfig.from_settings(served), embedder=embedder),
        settings=served,
        model=str(tiny_base),
    )
    assert renderer.context_window == 512  # the tiny policy's max_position_embeddings, as the engine reads it
    for answer in logged:
        rendered = renderer.render(answer.messages)
        assert rendered.prompt == answer.prompt
        assert rendered.prompt_tokens == answer.prompt_tokens
        assert [p.chunk_id for p in rendered.passages] == [c.chunk_id for c in answer.retrieved[:3]]
        assert rendered.index_version == answer.index_version and rendered.refused is False
    assert renderer.render(BOSTON).prompt_id == prompt_id(BOSTON)
    assert renderer.render(logged[1].messages).prompt_id == prompt_id("and which floor is it on?")

    # from the service's settings alone: the champion's tokenizer, loaded on first use
    again = PromptRenderer.from_settings(served, embedder=embedder)
    assert again.model == str(tiny_base) and again._tokenizer is None
    assert again.render(BOSTON).prompt == logged[0].prompt
    with pytest.raises(DataError, match="question"):
        again.render([{"role": "user", "content": " "}])
    with pytest.raises(ValueError, match="tokenizer"):
        PromptRenderer(renderer.retriever)


def test_golden_answers_become_demonstrations_on_the_service_prompt(
    handbook_index: Path, embedder: Any, golden: dict[str, GoldenItem], tmp_path: Path
) -> None:
    # a-001, a-003: answered by public documents; a-013: by the managers' guide; a-005: by a document
    # that is not indexed; a-029: the handbook does not cover it
    items = [golden[i] for i in ("a-001", "a-003", "a-013", "a-005", "a-029")]
    renderer = handbook_renderer(handbook_index, embedder, tmp_path)
    demonstrations, skipped = golden_demonstrations(renderer, items)
    assert skipped == {"expected_refusal": 1, "source_not_retrieved": 2}
    assert [d.completion for d in demonstrations] == [golden["a-001"].answer, golden["a-003"].answer]
    boston = demonstrations[0]
    assert (boston.source, boston.user_id, boston.messages) == ("golden", None, None)
    assert boston.prompt.startswith("<|im_start|>user\n[1] ")
    assert "451 Congress Street" in boston.prompt  # the passage that holds the answer
    assert boston.prompt.endswith(
        "Question: Where is the HR department in Boston?\nAnswer briefly using the passages above and cite "
        "the passage number in brackets, like [1]. If the passages do not answer the question, say that the "
        "knowledge base does not cover it.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert boston.prompt_id == prompt_id("where is the HR department in  boston?")
    # an employee without groups never sees the managers' guide: its golden answer is not taught to all
    salary = renderer.render(golden["a-013"].question)
    assert "hr/compensation-bands-manager-guide.md" not in {p.source for p in salary.passages}

    managers = handbook_renderer(handbook_index, embedder, tmp_path, groups=("managers",))
    demonstrations, skipped = golden_demonstrations(managers, items)
    assert [d.completion for d in demonstrations][2:] == [golden["a-013"].answer]
    assert skipped == {"expected_refusal": 1, "source_not_retrieved": 1}
    loose, skipped = golden_demonstrations(renderer, items, require_sources=False)
    assert len(loose) == 4 and skipped == {"expected_refusal": 1, "source_not_retrieved": 0}


def test_golden_prompts_leave_out_what_the_service_refuses(
    handbook_index: Path, embedder: Any, golden: dict[str, GoldenItem], tmp_path: Path
) -> None:
    items = [golden[i] for i in ("a-001", "a-029")]
    answering = handbook_renderer(handbook_index, embedder, tmp_path, refusal_threshold=0.0)
    prompts = golden_prompts(answering, items)
    assert [p.item.id for p in prompts] == ["a-001", "a-029"]  # the unanswerable one too: it should refuse
    assert prompts[1].rendered.prompt.endswith("<|im_start|>assistant\n")
    refusing = handbook_renderer(handbook_index, embedder, tmp_path, refusal_threshold=1.0)
    assert golden_prompts(refusing, items) == []
    everything = golden_prompts(refusing, items, include_refused=True)
    assert [p.rendered.refused for p in everything] == [True, True]


def test_logged_prompts_are_distinct_newest_first_or_a_seeded_sample(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store(tmp_path / "feedback.db", clock=clock) as store:
        for answer_id, day, prompt, refused in [
            ("a1", "20", "prompt X", False),
            ("a2", "21", "prompt Y", False),
            ("a3", "22", "prompt X", False),  # asked again
            ("r1", "23", "", True),  # a refusal: the model saw no prompt
            ("a4", "24", "prompt Z", False),
        ]:
            store.record_answer(
                make_record(
                    answer_id, created_at=f"2026-11-{day}T09:00:00.000Z", prompt=prompt, refused=refused,
                    model_version=f"m-{answer_id}",
                )
            )  # fmt: skip
        everything = logged_prompts(store)
        assert [(p.prompt, p.answer_id, p.model_version) for p in everything] == [
            ("prompt Z", "a4", "m-a4"),
            ("prompt X", "a3", "m-a3"),
            ("prompt Y", "a2", "m-a2"),
        ]
        assert everything[0].prompt_id == prompt_id("prompt Z")
        assert [p.answer_id for p in logged_prompts(store, since="2026-11-22")] == ["a4", "a3"]
        assert [p.answer_id for p in logged_prompts(store, until="2026-11-22")] == ["a2", "a1"]
        assert [p.answer_id for p in logged_prompts(store, limit=2, seed=None)] == ["a4", "a3"]
        sample = logged_prompts(store, limit=2, seed=5)
        assert len(sample) == 2 and logged_prompts(store, limit=2, seed=5) == sample
        assert [p.answer_id for p in sample] == [
            p.answer_id for p in everything if p in sample
        ]  # newest first
        draws = {tuple(p.answer_id for p in logged_prompts(store, limit=2, seed=s)) for s in range(30)}
        assert draws == {("a4", "a3"), ("a4", "a2"), ("a3", "a2")}
        assert logged_prompts(store, limit=0) == []
