"""TRL JSONL files as examples: ours from `kbloop export`, or anyone's.

`read_jsonl_preferences` (`{"prompt", "chosen", "rejected"}`), `read_jsonl_thumbs` (`{"prompt",
"completion", "label"}`) and `read_jsonl_demonstrations` (`{"messages"}` or `{"prompt", "completion"}`)
read TRL's standard (strings) and conversational (message lists) formats; `detect_jsonl_kind` says which
a file holds from its first row. A malformed line is a DataError naming the file and line, and rows
marked with non-empty `restricted_groups` are left out (`shared_jsonl_rows`): they never train the
shared model. Conversational prompts stay messages until trainer.examples' `render_prompts`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from trainer.errors import DataError
from trainer.examples import Demonstration, Message, PreferencePair, ThumbExample, conversation_id, prompt_id

log = logging.getLogger(__name__)

JsonlKind = Literal["preferences", "thumbs", "demonstrations"]


def jsonl_rows(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of a JSONL file with where each is (`file:line`), blank lines skipped.
    DataError for a missing file, a line that is not a JSON object, or a file without any."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    found = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                at = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{at}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{at}: expected a JSON object, got {type(row).__name__}")
                found.append((at, row))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not found:
        raise DataError(f"{path}: no examples (the file is empty)")
    return found


def shared_jsonl_rows(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """`jsonl_rows` without the rows `kbloop export` marked with non-empty `restricted_groups` (their
    prompt held passages restricted to access groups: they never train the shared model); how many
    were left out is logged."""
    found = jsonl_rows(path)
    kept = [(at, row) for at, row in found if not row.get("restricted_groups")]
    if len(kept) < len(found):
        log.warning("%s: %d restricted rows left out of training", path, len(found) - len(kept))
    return kept


def detect_jsonl_kind(path: str | os.PathLike[str]) -> JsonlKind:
    """What a TRL JSONL file holds, from its first example's keys."""
    at, row = jsonl_rows(path)[0]
    if "chosen" in row and "rejected" in row:
        return "preferences"
    if "label" in row:
        return "thumbs"
    if "messages" in row or ("prompt" in row and "completion" in row):
        return "demonstrations"
    raise DataError(
        f"{at}: unknown format with keys {sorted(row)}; expected prompt/chosen/rejected (preferences), "
        "prompt/completion/label (thumbs), or messages or prompt/completion (demonstrations)"
    )


def _messages(at: str, key: str, value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{at}: {key!r} must be a non-empty list of {{'role', 'content'}} messages")
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise DataError(f"{at}: {key}[{i}] must be a {{'role': str, 'content': str}} message, got {m!r}")
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _text(at: str, key: str, value: Any) -> str:
    """A string field, or the content of the final assistant turn of a conversational one."""
    if isinstance(value, list):
        turns = _messages(at, key, value)
        if turns[-1]["role"] != "assistant":
            raise DataError(f"{at}: {key!r} must end with an assistant message")
        value = turns[-1]["content"]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{at}: {key!r} must be a non-empty string or a list of messages, got {value!r}")
    return value


def _prompt(at: str, row: dict[str, Any]) -> tuple[str, tuple[Message, ...] | None, str]:
    """(prompt text or "", the prompt conversation or None, prompt_id) of a row's `prompt`."""
    if "prompt" not in row:
        raise DataError(f"{at}: missing 'prompt'")
    value = row["prompt"]
    if isinstance(value, list):
        turns = _messages(at, "prompt", value)
        if not any(m["role"] == "user" for m in turns):
            raise DataError(f"{at}: the 'prompt' conversation has no user message")
        return "", turns, conversation_id(turns)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{at}: 'prompt' must be a non-empty string or a list of messages, got {value!r}")
    return value, None, prompt_id(value)


def read_jsonl_preferences(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """`{"prompt", "chosen", "rejected"}` rows, standard (strings) or conversational (message lists:
    the answers are the final assistant turns; without a prompt, the turns chosen and rejected share)."""
    pairs = []
    for at, row in shared_jsonl_rows(path):
        for key in ("chosen", "rejected"):
            if key not in row:
                raise DataError(f"{at}: missing {key!r}; a preference needs prompt, chosen and rejected")
        if "prompt" not in row:  # TRL's implicit prompt: the turns before the two answers
            chosen, rejected = (
                _messages(at, "chosen", row["chosen"]),
                _messages(at, "rejected", row["rejected"]),
            )
            if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
                raise DataError(
                    f"{at}: without 'prompt', chosen and rejected must share every turn but the last"
                )
            row = {**row, "prompt": list(chosen[:-1])}
        prompt, turns, pid = _prompt(at, row)
        chosen_text, rejected_text = (
            _text(at, "chosen", row["chosen"]),
            _text(at, "rejected", row["rejected"]),
        )
        pairs.append(
            PreferencePair(
                prompt, chosen_text, rejected_text, pid, None, None, "jsonl", prompt_messages=turns
            )
        )
    return pairs


def read_jsonl_thumbs(path: str | os.PathLike[str]) -> list[ThumbExample]:
    """`{"prompt", "completion", "label"}` rows (TRL's unpaired preference format), label true or false."""
    thumbs = []
    for at, row in shared_jsonl_rows(path):
        prompt, turns, pid = _prompt(at, row)
        if not isinstance(row.get("label"), bool):
            raise DataError(f"{at}: 'label' must be true or false, got {row.get('label')!r}")
        completion = _text(at, "completion", row.get("completion"))
        thumbs.append(
            ThumbExample(prompt, completion, row["label"], (), pid, None, "jsonl", prompt_messages=turns)
        )
    return thumbs


def read_jsonl_demonstrations(path: str | os.PathLike[str]) -> list[Demonstration]:
    """`{"messages": [...]}` rows ending with the assistant's answer, or `{"prompt", "completion"}` rows
    (strings; message lists are joined into one conversation)."""
    demonstrations = []
    for at, row in shared_jsonl_rows(path):
        if "messages" in row or isinstance(row.get("prompt"), list):
            if "messages" in row:
                turns = _messages(at, "messages", row["messages"])
            else:
                answer = _text(at, "completion", row.get("completion"))
                turns = (*_messages(at, "prompt", row["prompt"]), {"role": "assistant", "content": answer})
            completion = _text(at, "messages", list(turns))
            if not any(m["role"] == "user" for m in turns[:-1]):
                raise DataError(f"{at}: the conversation has no user message before the answer")
            demonstrations.append(
                Demonstration("", completion, conversation_id(turns[:-1]), "jsonl", None, messages=turns)
            )
            continue
        prompt, _, pid = _prompt(at, row)
        completion = _text(at, "completion", row.get("completion"))
        demonstrations.append(Demonstration(prompt, completion, pid, "jsonl", None))
    return demonstrations
