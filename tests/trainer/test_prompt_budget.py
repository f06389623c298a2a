"""One prompt, served and trained: a prompt the service renders, encoded for any training use under any
budget, starts with its system turn and holds passage [1]; over budget it loses its lowest-ranked
passages, never its beginning."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from core.settings import Settings
from rag.config import RagConfig
from rag.search import Retriever
from tests.conftest import REPO
from tests.service.tiny import tiny_tokenizer
from tests.trainer.synthetic import Pair, Thumb
from trainer.dpo import encode_pairs
from trainer.kto import encode_thumbs
from trainer.prompts import PromptRenderer, RenderedPrompt
from trainer.reward import encode_items
from trainer.tokens import count, encode, encode_prompt, length_budget, parse_rag_prompt, quantile

HANDBOOK = REPO / "examples" / "acme-handbook"
# SmolLM2-Instruct's chat template writes a system turn of its own when the conversation has none (the
# service sends none): the tiny tokenizer gets the same behaviour
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ANSWER = "The HR department in Boston is on the 4th floor, Suite 410 [1]."


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    tok = tiny_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any, tokenizer: Any) -> RenderedPrompt:
    """A prompt rendered by the service's own steps (retrieve, render_prompt) from the handbook."""
    from rag.ingest import ingest

    root = tmp_path_factory.mktemp("handbook")
    for name in ("hr/offices-and-hr-contacts.md", "hr/leave-and-time-off.md", "it/vpn.md"):
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HANDBOOK / name, root / "docs" / name)
    ingest([root / "docs"], root / "index", RagConfig(), embedder=embedder)
    settings = Settings(data_dir=root / "var", index_dir=root / "index")
    retriever = Retriever(root / "index", RagConfig.from_settings(settings), embedder=embedder)
    renderer = PromptRenderer(retriever, tokenizer, settings=settings, context_window=8192)
    rendered = renderer.render("Where is the HR department in Boston?")
    assert len(rendered.passages) >= 3 and not rendered.refused
    return rendered


def test_a_served_prompt_parses_back_into_its_passages(served: RenderedPrompt) -> None:
    parts = parse_rag_prompt(served.prompt)
    assert parts is not None
    assert parts.passages == tuple(p.text.strip() for p in served.passages)
    assert parts.render(parts.passages) == served.prompt  # nothing lost in the round trip
    assert parts.prefix.startswith("<|im_start|>system\n" + SYSTEM)


def encodings(tokenizer: Any, prompt: str, budget: int) -> dict[str, list[int]]:
    """The prompt as each training use encodes it (ids of the prompt part) within `budget` tokens."""
    pair, thumb = Pair(prompt, ANSWER, "I do not know."), Thumb(prompt, ANSWER, True)
    reward = encode_items(tokenizer, [pair], [thumb], budget)
    sft = encode(tokenizer, prompt, ANSWER, budget, add_eos=True)
    dpo_chosen, dpo_rejected = encode_pairs(tokenizer, [pair], budget)[0]
    kto_answer, _ = encode_thumbs(tokenizer, [thumb, thumb], budget)[0]
    out = {
        "reward (pair)": reward[0].seqs[0],
        "reward (thumb)": reward[1].seqs[0],
        "sft": sft.ids,
        "dpo chosen": dpo_chosen.ids,
        "dpo rejected": dpo_rejected.ids,
        "kto": kto_answer.ids,
        "ppo prompt": encode_prompt(tokenizer, prompt, budget - 64),
    }
    for name, ids in out.items():
        assert len(ids) <= budget, name
    return out


def test_every_encoding_keeps_the_system_turn_and_passage_1(tokenizer: Any, served: RenderedPrompt) -> None:
    full = count(tokenizer, served.prompt)
    first, last = served.passages[0].text.strip(), served.passages[-1].text.strip()
    # roomy; a little short (the last passage goes); only passage [1] fits
    one_passage = count(tokenizer, parse_rag_prompt(served.prompt).render([first]))  # type: ignore[union-attr]
    for budget in (full + 200, full + 10, one_passage + 64 + 30):
        for name, ids in encodings(tokenizer, served.prompt, budget).items():
            text = tokenizer.decode(ids)
            assert text.startswith("<|im_start|>system\n" + SYSTEM), (name, budget, text[:80])
            assert first in text, (name, budget)  # passage [1], whole
            assert "Question: Where is the HR department in Boston?" in text, (name, budget)
            if budget < full:
                assert last not in text, (name, budget)  # the lowest-ranked passage went first
    # a budget below passage [1] alone: it is shortened from its end, the system turn still leads
    for name, ids in encodings(tokenizer, served.prompt, one_passage + 30).items():
        text = tokenizer.decode(ids)
        assert text.startswith("<|im_start|>system\n" + SYSTEM), name
        assert first[:40] in text and "[1] " in text, name


def test_budgets_derive_from_the_prompts_p95() -> None:
    # 20 prompts of 100..290 tokens: position 0.95·19 = 18.05 between 280 and 290 → 280.5, rounded up 281
    lengths = [100 + 10 * k for k in range(20)]
    assert quantile(lengths, 0.95) == pytest.approx(280.5)
    assert length_budget(lengths, 256) == 281 + 256
    assert quantile([1, 2, 3, 4], 0.5) == 2.5 and quantile([7], 0.95) == 7
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_the_tokens_module_no_longer_cuts_from_the_left(tokenizer: Any, served: RenderedPrompt) -> None:
    prompt_ids = tokenizer(served.prompt, add_special_tokens=False)["input_ids"]
    kept = encode_prompt(tokenizer, served.prompt, len(prompt_ids) - 20)
    assert kept[:5] == prompt_ids[:5] and kept != prompt_ids[20:]
