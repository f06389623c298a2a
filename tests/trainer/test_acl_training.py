"""Access groups hold in training: a manager's answer whose prompt held the restricted compensation-bands
guide (groups: managers) reaches no training example (pairs, thumbs, SFT demonstrations, PPO prompts,
golden items), and every export marks it."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from feedback import Store
from feedback.errors import InvalidGolden
from feedback.export import export_demonstrations, export_preferences, export_thumbs
from feedback.export_csv import export_csv
from feedback.golden import item_from_answer
from rag.config import RagConfig
from tests.conftest import REPO
from trainer.feedback_data import load_feedback
from trainer.jsonl import read_jsonl_thumbs
from trainer.prompts import logged_prompts

HANDBOOK = REPO / "examples" / "acme-handbook"
RESTRICTED = "hr/compensation-bands-manager-guide.md"
PUBLIC = "hr/offices-and-hr-contacts.md"
MANAGER = "manager-token-0123456789"
EMPLOYEE = "employee-token-0123456789"
BANDS = "What is the Boston salary band for a level L3 software engineer?"
OFFICE = "Where is the HR department in Boston?"


@pytest.fixture(scope="module")
def acl_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    from rag.ingest import ingest

    root = tmp_path_factory.mktemp("acl")
    for name in (RESTRICTED, PUBLIC):
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HANDBOOK / name, root / "docs" / name)
    ingest([root / "docs"], root / "index", RagConfig(), embedder=embedder)
    return root / "index"


def restricted_texts(index: Path) -> list[str]:
    """The passages of the index only managers may read."""
    version = (index / "CURRENT").read_text().strip()
    with (index / "versions" / version / "chunks.jsonl").open(encoding="utf-8") as lines:
        chunks = [json.loads(line) for line in lines if line.strip()]
    texts = [c["text"].strip() for c in chunks if c.get("groups")]
    assert texts and all(c["source"] == RESTRICTED for c in chunks if c.get("groups"))
    return texts


@pytest.fixture
def settings(tmp_path: Path, acl_index: Path, tiny_base: Path, embedder: Any) -> Iterator[Settings]:
    """A manager and an employee each ask, vote up, correct and compare through the API."""
    from service.app import create_app

    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                MANAGER: {"user": "maya", "role": "employee", "groups": ["managers"]},
                EMPLOYEE: {"user": "erin", "role": "employee"},
            }
        )
    )
    settings = Settings(
        data_dir=tmp_path / "var", index_dir=acl_index, model=str(tiny_base), device="cpu",
        max_tokens_default=6, refusal_threshold=0.0, tokens_file=tokens,
        answer_checks=False,  # the tiny model's answers, unchecked: two samples differ, so choices make pairs
    )  # fmt: skip
    with TestClient(create_app(settings, embedder=embedder)) as client:
        for token, question in ((MANAGER, BANDS), (EMPLOYEE, OFFICE)):
            auth = {"Authorization": f"Bearer {token}"}
            body = {"messages": [{"role": "user", "content": question}], "temperature": 1.0, "seed": 1}
            answer = client.post("/v1/chat/completions", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            answer_id = answer.json()["kbloop"]["answer_id"]
            vote = client.post(f"/api/answers/{answer_id}/vote", json={"value": "up"}, headers=auth)
            assert vote.status_code == 200, vote.text
            fixed = client.post(
                f"/api/answers/{answer_id}/correction",
                json={"text": f"The answer to {question}"},
                headers=auth,
            )
            assert fixed.status_code == 200, fixed.text
            pair = client.post("/api/compare", json={"question": question, "max_tokens": 6}, headers=auth)
            assert pair.status_code == 200, pair.text
            chosen = client.post(
                f"/api/compare/{pair.json()['comparison_id']}/choice", json={"choice": "A"}, headers=auth
            )
            assert chosen.status_code == 200, chosen.text
    yield settings


def test_a_restricted_prompt_never_reaches_a_shared_training_example(settings: Settings) -> None:
    secret = restricted_texts(settings.resolved_index_dir)

    def holds_secret(prompt: str) -> bool:
        return any(text in prompt for text in secret)

    with Store(settings.database_path) as store:
        answers = store.list_answers()
        restricted = [a for a in answers if a.user_id == "maya"]
        public = [a for a in answers if a.user_id == "erin"]
        # the manager's prompts really held the guide (else this test would prove nothing)
        assert restricted and all(a.passage_groups == ["managers"] for a in restricted)
        assert all(holds_secret(a.prompt) for a in restricted)
        assert public and all(a.passage_groups == [] and not holds_secret(a.prompt) for a in public)

        # nor can an operator make it a golden item (the golden set trains SFT and judges the gate)
        with pytest.raises(InvalidGolden, match="restricted to managers"):
            item_from_answer(store, restricted[0].answer_id)
        assert item_from_answer(store, public[0].answer_id, answer="On the 4th floor.").question == OFFICE

        data = load_feedback(store)
        counted: Counter[str] = Counter()
        prompts = logged_prompts(store, restricted=counted)

    examples = [*data.pairs, *data.ties, *data.thumbs, *data.demonstrations]
    assert data.pairs and data.thumbs and data.demonstrations, (
        data.skipped
    )  # the employee's feedback still trains
    assert not any(holds_secret(e.prompt) for e in examples)
    assert all(e.user_id == "erin" for e in examples)
    assert data.report["restricted"] == {"comparison": 1, "vote": 1, "correction": 1}
    assert data.skipped["vote.restricted"] == 1 and data.skipped["correction.restricted"] == 1

    # PPO rollouts: the logged prompts of the manager's answers (asked and compared) are left out
    assert prompts and not any(holds_secret(p.prompt) for p in prompts)
    assert {p.answer_id for p in prompts} <= {a.answer_id for a in public}
    assert counted["answer.restricted"] == len(restricted)  # each answer (asked, and both compared)


def test_exports_mark_restricted_rows_and_the_trainer_leaves_them_out(
    settings: Settings, tmp_path: Path
) -> None:
    secret = restricted_texts(settings.resolved_index_dir)

    def holds_secret(prompt: str) -> bool:
        return any(text in prompt for text in secret)

    with Store(settings.database_path) as store:
        thumbs, prefs, demos = io.StringIO(), io.StringIO(), io.StringIO()
        export_thumbs(store, thumbs)
        export_preferences(store, prefs)
        export_demonstrations(store, demos, style="prompt")
        votes_csv = io.StringIO(newline="")
        export_csv(store, votes_csv, "votes")
    for out in (thumbs, prefs, demos):
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        marks = sorted((r["restricted_groups"], holds_secret(r["prompt"])) for r in rows)
        assert marks == [([], False), (["managers"], True)]
    lines = votes_csv.getvalue().splitlines()
    assert lines[0].endswith(",restricted_groups")
    assert sorted(line.rsplit(",", 1)[1] for line in lines[1:]) == ["", "managers"]

    # training from the exported file elsewhere: the marked row stays out there too
    path = tmp_path / "thumbs.jsonl"
    path.write_text(thumbs.getvalue(), encoding="utf-8")
    read = read_jsonl_thumbs(path)
    assert len(read) == 1 and not holds_secret(read[0].prompt)
