"""Prompts for the trainer, rendered exactly as the service renders them: golden questions, and the
prompts the service logged.

- `load_golden`: a golden set (feedback.golden owns the file: id, question, the ideal human answer,
  its sources, whether the knowledge base answers it, a category) as `GoldenItem`s, errors as
  DataError; `deployment_golden`: the deployment's own set (settings `golden_path`), maybe empty.
- `PromptRenderer`: a question → the prompt the service would feed the policy, through the service's
  own steps (rag.context `retrieve` with the service's settings, `render_prompt`: the passages,
  `build_messages`, the tokenizer's chat template with the generation prompt), and whether the service
  would refuse instead. `golden_demonstrations` makes golden answers SFT examples; `golden_prompts`
  makes golden questions PPO / evaluation prompts.
- `logged_prompts`: the rendered prompts of real answers (PPO rollouts), those that held restricted
  passages left out.

Retrieval runs as an employee in `groups` (default: none, i.e. public documents only): a prompt
trained on teaches the model its passages, and the model answers everyone.
The retriever and the tokenizer are heavy: they are passed in, or built by
`PromptRenderer.from_settings` (the tokenizer loads on first use); torch and transformers are imported
inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import RagConfig

__all__ = [
    "GoldenItem",
    "GoldenPrompt",
    "LoggedPrompt",
    "PromptRenderer",
    "RenderedPrompt",
    "deployment_golden",
    "golden_demonstrations",
    "golden_prompts",
    "load_golden",
    "logged_prompts",
]

from feedback.golden import GoldenItem
from feedback.readers import prompted_answers
from rag.prompting import Passage
from trainer.errors import DataError
from trainer.examples import Demonstration, Message, prompt_id
from trainer.feedback_data import shared

if TYPE_CHECKING:
    from core.settings import Settings
    from feedback.store import Store
    from rag.search import Retriever


# -- the golden set ---------------------------------------------------------------------------------
# feedback.golden owns the golden set's file; these names stay here for the trainer's callers.


def load_golden(path: str | os.PathLike[str]) -> list[GoldenItem]:
    """The golden set in `path`, in file order (feedback.golden.load_golden); DataError naming the line
    of a malformed or duplicate item, as the trainer's other readers do."""
    from feedback.errors import InvalidGolden
    from feedback.golden import load_golden as read

    try:
        return read(path)
    except InvalidGolden as exc:
        raise DataError(exc.message) from None


def deployment_golden(settings: Settings) -> list[GoldenItem]:
    """The deployment's golden set (settings `golden_path`): [] when it has none yet."""
    from feedback.errors import InvalidGolden
    from feedback.golden import golden_set

    try:
        return golden_set(settings.golden_path)
    except InvalidGolden as exc:
        raise DataError(exc.message) from None


# -- rendering as the service does ------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedPrompt:
    question: str
    prompt: str  # the text the policy is fed: chat template, passages, rule, generation header
    prompt_id: str
    prompt_tokens: int
    passages: tuple[Passage, ...]
    confidence: float  # the retrieval's P(answerable)
    refused: bool  # the service would answer with a refusal instead of calling the policy
    index_version: str


class PromptRenderer:
    """Renders questions into the prompt the service would build for them (service.answering).

    `settings` are the service's (search_k, answer_passages, refusal_threshold, max_tokens_default);
    `tokenizer` is the policy's, or None to load it from `model` on first use; `context_window` is the
    policy's (the engine reads `max_position_embeddings`; None: read from `model`'s config, else 2048)."""

    def __init__(
        self,
        retriever: Retriever,
        tokenizer: Any = None,
        *,
        settings: Settings | None = None,
        model: str | None = None,
        context_window: int | None = None,
        groups: Collection[str] = (),
    ) -> None:
        from core.settings import get_settings

        if tokenizer is None and model is None:
            raise ValueError("pass the policy's tokenizer, or the model folder to load it from")
        self.retriever = retriever
        self.settings = settings or get_settings()
        self.model = model
        self.groups = tuple(groups)
        self._tokenizer = tokenizer
        self._context_window = context_window

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model: str | None = None,
        embedder: Any = None,
        groups: Collection[str] = (),
    ) -> PromptRenderer:
        """The service's index and policy under `settings.data_dir`: its retriever (the embedder loads on
        the first search), and the tokenizer of `model` (default: the champion's base model, as the
        service serves it), loaded on first use."""
        from rag.search import Retriever
        from registry.errors import ModelNotFound
        from registry.loading import base_model_path
        from registry.versions import ModelDirectory

        if model is None:
            directory = ModelDirectory(settings.models_dir)
            try:
                model = directory.resolve("champion").base
            except ModelNotFound:  # no model versions yet: the base the service would start with
                model = base_model_path(settings.model, settings.models_dir)
        retriever = Retriever(
            settings.resolved_index_dir, RagConfig.from_settings(settings), embedder=embedder
        )
        return cls(retriever, settings=settings, model=model, groups=groups)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.model)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot load the tokenizer of {self.model!r}: {exc}") from exc
        return self._tokenizer

    @property
    def context_window(self) -> int:
        if self._context_window is None:
            config = Path(self.model or "") / "config.json"
            try:
                value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
            except (OSError, ValueError):
                value = None
            self._context_window = int(value or 2048)  # the engine's default too
        return self._context_window

    def render(self, question: str | Sequence[Message]) -> RenderedPrompt:
        """The prompt for a question (or a conversation of user/assistant turns ending with one)."""
        from rag.context import render_prompt, retrieve

        if isinstance(question, str):
            conversation = [{"role": "user", "content": question}]
        else:
            conversation = [dict(m) for m in question if m["role"] in ("user", "assistant")]
        if not conversation or conversation[-1]["role"] != "user" or not conversation[-1]["content"].strip():
            raise DataError(
                f"nothing to render: the last turn must be a non-empty question, got {question!r}"
            )
        found = retrieve(self.retriever, self.settings, conversation, self.groups)
        ids, text = render_prompt(
            self.tokenizer,
            self.context_window,
            conversation,
            found.passages,
            self.settings.max_tokens_default,
        )
        return RenderedPrompt(
            question=conversation[-1]["content"],
            prompt=text,
            prompt_id=prompt_id(text),
            prompt_tokens=len(ids),
            passages=tuple(found.passages),
            confidence=found.result.confidence,
            refused=found.refused,
            index_version=found.result.index_version,
        )


def golden_demonstrations(
    renderer: PromptRenderer, items: Sequence[GoldenItem], *, require_sources: bool = True
) -> tuple[list[Demonstration], dict[str, int]]:
    """Golden answers as demonstrations (source "golden") on the prompts the service would build.

    Left out, and counted: `expected_refusal` items (the handbook does not cover them; the service
    refuses them before the model is called, so their refusal text is not a policy output to imitate),
    and with `require_sources`, `source_not_retrieved` items whose sources are not among the prompt's
    passages (imitating them would teach the model to state facts its passages do not hold)."""
    demonstrations: list[Demonstration] = []
    skipped: Counter[str] = Counter({"expected_refusal": 0, "source_not_retrieved": 0})
    for item in items:
        if not item.answerable:
            skipped["expected_refusal"] += 1
            continue
        rendered = renderer.render(item.question)
        if require_sources and item.sources and not {p.source for p in rendered.passages} & set(item.sources):
            skipped["source_not_retrieved"] += 1
            continue
        demonstrations.append(Demonstration(rendered.prompt, item.answer, rendered.prompt_id, "golden", None))
    return demonstrations, dict(skipped)


@dataclass(frozen=True)
class GoldenPrompt:
    item: GoldenItem
    rendered: RenderedPrompt


def golden_prompts(
    renderer: PromptRenderer, items: Sequence[GoldenItem], *, include_refused: bool = False
) -> list[GoldenPrompt]:
    """Golden questions rendered as PPO or evaluation prompts, unanswerable ones included (the policy
    should say the handbook does not cover them). Questions the service would refuse before calling the
    policy are left out unless `include_refused` (an evaluation of the whole service wants them)."""
    prompts = [GoldenPrompt(item, renderer.render(item.question)) for item in items]
    return [p for p in prompts if include_refused or not p.rendered.refused]


# -- logged prompts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedPrompt:
    prompt: str
    prompt_id: str
    answer_id: str  # the newest answer that was given to this prompt
    model_version: str


def logged_prompts(
    store: Store,
    *,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    seed: int | None = 0,
    restricted: Counter[str] | None = None,
) -> list[LoggedPrompt]:
    """Distinct prompts the policy was fed (refusals have none) by answers created in [since, until),
    newest first: all of them, or `limit` of them: a sample drawn with `seed`, or with `seed=None` the
    newest. Streams from one snapshot; a sample keeps only `limit` prompts in memory. Prompts that held a
    passage restricted to access groups are left out (trainer.feedback_data.shared), counted in
    `restricted` under `answer.restricted` when a counter is given."""
    restricted = Counter() if restricted is None else restricted
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    rng = random.Random(seed) if seed is not None else None
    seen: set[bytes] = set()
    picked: list[tuple[int, LoggedPrompt]] = []  # (position newest first, prompt)
    with store.snapshot() as conn:
        for row in prompted_answers(conn, since=since, until=until):
            if not shared((row.passage_groups,), "answer", restricted):
                continue
            digest = hashlib.sha256(row.prompt.encode("utf-8")).digest()
            if digest in seen:
                continue
            seen.add(digest)
            n = len(seen) - 1
            found = LoggedPrompt(row.prompt, prompt_id(row.prompt), row.answer_id, row.model_version)
            if limit is None or len(picked) < limit:
                picked.append((n, found))
            elif rng is None:
                break
            else:  # reservoir sampling: every distinct prompt is kept with probability limit / n
                slot = rng.randrange(n + 1)
                if slot < limit:
                    picked[slot] = (n, found)
    return [p for _, p in sorted(picked, key=lambda x: x[0])]
