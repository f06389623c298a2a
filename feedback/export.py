"""Training data from the store as JSONL in TRL's dataset formats, one example per line.

- `export_preferences`: `{"prompt", "chosen", "rejected"}` from decided comparisons (DPO, reward model);
- `export_thumbs`: `{"prompt", "completion", "label"}` from current thumbs up/down (KTO, unpaired);
- `export_demonstrations`: `{"messages": [...]}` from corrections (SFT), or `{"prompt", "completion"}`.

Format: TRL's *standard* format with an explicit prompt, not the conversational one. The prompt is
`AnswerRecord.prompt`, the exact text the model was fed: the chat template's rendering of the
conversation with the retrieved passages, the rule, and the generation header, after the history was
trimmed to the context window. That is what the preference is about. The conversational format would
need the message list the model saw; the store keeps the conversation as the client sent it and the
ids of the retrieved chunks, not the passage texts nor which turns were trimmed, so it could only be
approximated (and re-retrieving from a newer index would pair a choice with passages nobody saw).
Consequences for the trainer: do not apply a chat template again (TRL leaves standard-format prompts
as they are), tokenize the prompt without adding special tokens, and use the tokenizer of the model
family that rendered it (the prompt holds its special tokens).

Rows that cannot make a sound example are left out and counted in the summary's `skipped`:
- preferences: `tie` and `both_bad` choices (no winner); `prompt_mismatch` when the two answers saw
  different prompts (other passages, history or chat template: not a pair over one prompt);
  `no_prompt` when both were refusals (refused answers have no prompt: the model was not called);
  `empty_answer` when either answer is empty. When exactly one side is a refusal, the other side's
  prompt is used: the refusal text is what the service said instead, a fair target for that prompt.
- thumbs: `withdrawn` votes, `no_prompt` (votes on refusals), `empty_answer`.
- demonstrations: `superseded` corrections (a newer one by the same user of the same answer exists in
  the window), `no_prompt` in the prompt style (a correction of a refusal has no rendered prompt; the
  messages style keeps it), `no_question` when the conversation does not end with a user turn.
The preference and thumbs rules are `pair_problem` and `thumb_problem`; the trainer's datasets
(trainer.feedback_data, over feedback.readers' rows) apply the same ones.

Access groups: every row carries `restricted_groups`, the access groups of the passages its prompt held
(`restricted_groups`; [] when all were public). A row with groups must never train a model served to
everyone: kbloop's trainer leaves such rows out (trainer.feedback_data.shared, and trainer.jsonl's
readers), and so must anyone who trains on an export.

Filters: `since <= t < until` on when the feedback was given (a vote's current value, a comparison's
choice, a correction), so a refresh can take "what arrived since the last one"; `model_version` on the
answer (for comparisons: either side). Rows stream from a read-only snapshot one at a time and go to
the output as they come; a file path is written through a temporary file renamed at the end, so a
failed export never leaves a complete-looking file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from feedback.connection import rows
from feedback.filters import time_window, where

if TYPE_CHECKING:
    from feedback.store import Store

Destination = str | os.PathLike[str] | TextIO


@dataclass(frozen=True)
class ExportSummary:
    kind: str
    written: int
    skipped: dict[str, int]  # why rows were left out -> how many
    path: str | None  # the file written; None when the output was a stream


@contextmanager
def open_destination(out: Destination, *, newline: str | None = None) -> Iterator[tuple[TextIO, str | None]]:
    """A text stream to write to, and the final path when `out` is a path (written atomically)."""
    if not isinstance(out, str | os.PathLike):
        yield out, None
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline=newline) as stream:
            yield stream, str(path)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def filters(
    time_column: str,
    model_columns: tuple[str, ...],
    since: str | None,
    until: str | None,
    model_version: str | None,
) -> tuple[list[str], list[Any]]:
    """SQL clauses for the export window and the model version (matched by any of `model_columns`)."""
    clauses, params = time_window(time_column, since, until)
    if model_version is not None:
        clauses.append("(" + " OR ".join(f"{column} = ?" for column in model_columns) + ")")
        params += [model_version] * len(model_columns)
    return clauses, params


def pair_problem(left_prompt: str, right_prompt: str, left_answer: str, right_answer: str) -> str | None:
    """Why two compared answers cannot make one example over one prompt (`prompt_mismatch`, `no_prompt`,
    `empty_answer`; see the module docstring), or None when they can: `pair_prompt` is then their prompt."""
    prompts = {p for p in (left_prompt, right_prompt) if p}
    if len(prompts) != 1:
        return "prompt_mismatch" if prompts else "no_prompt"
    if not left_answer.strip() or not right_answer.strip():
        return "empty_answer"
    return None


def pair_prompt(left_prompt: str, right_prompt: str) -> str:
    """The prompt of a pair `pair_problem` accepted: the one both saw, or the non-refusal side's."""
    return left_prompt or right_prompt


def thumb_problem(value: str, prompt: str, answer: str) -> str | None:
    """Why a current vote cannot make a thumbs example (`withdrawn`, `no_prompt`, `empty_answer`), or None."""
    if value == "none":
        return "withdrawn"
    if not prompt:
        return "no_prompt"
    if not answer.strip():
        return "empty_answer"
    return None


def restricted_groups(*passage_groups: str | None) -> list[str]:
    """The access groups of the passages an example's prompts held: the union of its answers'
    `passage_groups` columns (JSON lists; NULL or "[]" when every passage was public), sorted. Non-empty:
    the example must never train the model served to everyone (trainer.feedback_data.shared)."""
    groups: set[str] = set()
    for text in passage_groups:
        value = json.loads(text) if text else []
        if isinstance(value, list):
            groups.update(g for g in value if isinstance(g, str) and g)
    return sorted(groups)


def _line(stream: TextIO, example: dict[str, Any]) -> None:
    stream.write(json.dumps(example, ensure_ascii=False) + "\n")


def export_preferences(
    store: Store,
    out: Destination,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> ExportSummary:
    """`{"prompt", "chosen", "rejected"}` per decisive comparison, in the order they were chosen."""
    clauses, params = filters(
        "c.chosen_at", ("l.model_version", "r.model_version"), since, until, model_version
    )
    sql = (
        "SELECT c.choice, l.prompt AS left_prompt, l.answer AS left_answer, "
        "r.prompt AS right_prompt, r.answer AS right_answer, l.passage_groups AS left_groups, "
        "r.passage_groups AS right_groups FROM comparisons c "
        "JOIN answers l ON l.answer_id = c.left_answer_id JOIN answers r ON r.answer_id = c.right_answer_id"
        f"{where(['c.choice IS NOT NULL', *clauses])} ORDER BY c.chosen_at, c.rowid"
    )
    skipped = Counter({key: 0 for key in ("tie", "both_bad", "prompt_mismatch", "no_prompt", "empty_answer")})
    written = 0
    with store.snapshot() as conn, open_destination(out) as (stream, path):
        for row in rows(conn, sql, params):
            if row["choice"] not in ("A", "B"):
                skipped[row["choice"]] += 1
                continue
            problem = pair_problem(
                row["left_prompt"], row["right_prompt"], row["left_answer"], row["right_answer"]
            )
            if problem is not None:
                skipped[problem] += 1
                continue
            chosen, rejected = ("left", "right") if row["choice"] == "A" else ("right", "left")
            _line(
                stream,
                {
                    "prompt": pair_prompt(row["left_prompt"], row["right_prompt"]),
                    "chosen": row[f"{chosen}_answer"],
                    "rejected": row[f"{rejected}_answer"],
                    "restricted_groups": restricted_groups(row["left_groups"], row["right_groups"]),
                },
            )
            written += 1
    return ExportSummary("preferences", written, dict(skipped), path)


def export_thumbs(
    store: Store,
    out: Destination,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> ExportSummary:
    """`{"prompt", "completion", "label"}` per current vote (label True for up), oldest vote first.
    Each user's vote is its own example: two users disagreeing on an answer give two labels."""
    clauses, params = filters("v.updated_at", ("a.model_version",), since, until, model_version)
    sql = (
        "SELECT v.value, a.prompt, a.answer, a.passage_groups FROM votes v JOIN answers a USING (answer_id)"
        f"{where(clauses)} ORDER BY v.updated_at, v.rowid"
    )
    skipped = Counter({key: 0 for key in ("withdrawn", "no_prompt", "empty_answer")})
    written = 0
    with store.snapshot() as conn, open_destination(out) as (stream, path):
        for row in rows(conn, sql, params):
            problem = thumb_problem(row["value"], row["prompt"], row["answer"])
            if problem is not None:
                skipped[problem] += 1
            else:
                _line(
                    stream,
                    {
                        "prompt": row["prompt"],
                        "completion": row["answer"],
                        "label": row["value"] == "up",
                        "restricted_groups": restricted_groups(row["passage_groups"]),
                    },
                )
                written += 1
    return ExportSummary("thumbs", written, dict(skipped), path)


def export_demonstrations(
    store: Store,
    out: Destination,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
    style: Literal["messages", "prompt"] = "messages",
) -> ExportSummary:
    """One example per (answer, user): their newest correction in the window, oldest first.

    `messages` style: `{"messages": [...conversation, {"role": "assistant", "content": correction}]}`,
    TRL's conversational SFT format. The conversation is what the user saw, without the retrieved
    passages (the store does not keep their text), so it teaches the answer, not how to read it from
    passages. `prompt` style: `{"prompt": <rendered prompt, passages included>, "completion": correction}`,
    TRL's standard prompt-completion format: the same input the model had, for a RAG model.
    """
    if style not in ("messages", "prompt"):
        raise ValueError(f"style must be 'messages' or 'prompt', got {style!r}")
    clauses, params = filters("k.created_at", ("a.model_version",), since, until, model_version)
    newer, newer_params = time_window("n.created_at", since, until)
    newer_where = "".join(f" AND {clause}" for clause in newer)
    sql = (
        "SELECT k.text, a.messages, a.prompt, a.passage_groups, EXISTS (SELECT 1 FROM corrections n "
        "WHERE n.answer_id = k.answer_id AND n.user_id = k.user_id AND "
        f"(n.created_at > k.created_at OR (n.created_at = k.created_at AND n.rowid > k.rowid)){newer_where}"
        ") AS superseded FROM corrections k JOIN answers a USING (answer_id)"
        f"{where(clauses)} ORDER BY k.created_at, k.rowid"
    )
    skipped = Counter({key: 0 for key in ("superseded", "no_prompt", "no_question")})
    written = 0
    with store.snapshot() as conn, open_destination(out) as (stream, path):
        for row in rows(conn, sql, [*newer_params, *params]):
            if row["superseded"]:
                skipped["superseded"] += 1
                continue
            groups = restricted_groups(row["passage_groups"])
            if style == "prompt":
                if not row["prompt"]:
                    skipped["no_prompt"] += 1
                    continue
                example = {"prompt": row["prompt"], "completion": row["text"], "restricted_groups": groups}
                _line(stream, example)
            else:
                turns = [{"role": m["role"], "content": m["content"]} for m in json.loads(row["messages"])]
                if not turns or turns[-1]["role"] != "user":
                    skipped["no_question"] += 1
                    continue
                messages = [*turns, {"role": "assistant", "content": row["text"]}]
                _line(stream, {"messages": messages, "restricted_groups": groups})
            written += 1
    return ExportSummary(f"demonstrations-{style}", written, dict(skipped), path)
