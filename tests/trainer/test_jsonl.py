"""trainer.jsonl: TRL JSONL files, standard and conversational, as examples; malformed lines as
DataErrors naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.service.tiny import tiny_tokenizer
from trainer.errors import DataError
from trainer.examples import PreferencePair, prompt_id, render_messages, render_prompts
from trainer.jsonl import (
    detect_jsonl_kind,
    read_jsonl_demonstrations,
    read_jsonl_preferences,
    read_jsonl_thumbs,
)

PROMPT = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"
SHORT, LONG = "25 days [1].", "You get 25 vacation days [1]."


def write(path: Path, *rows: Any) -> Path:
    path.write_text(
        "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return path


CONVERSATION = [{"role": "user", "content": "How many vacation days?"}]


def test_preference_files_standard_and_conversational(tmp_path: Path) -> None:
    path = write(
        tmp_path / "prefs.jsonl",
        {"prompt": PROMPT, "chosen": SHORT, "rejected": LONG},
        "\n",
        {
            "prompt": CONVERSATION,
            "chosen": [{"role": "assistant", "content": "25."}],
            "rejected": [{"role": "assistant", "content": "30."}],
        },
        {
            "chosen": [*CONVERSATION, {"role": "assistant", "content": "25."}],
            "rejected": [*CONVERSATION, {"role": "assistant", "content": "30."}],
        },
    )
    assert detect_jsonl_kind(path) == "preferences"
    first, explicit, implicit = read_jsonl_preferences(path)
    assert first == PreferencePair(PROMPT, SHORT, LONG, prompt_id(PROMPT), None, None, "jsonl")
    assert explicit == implicit
    assert (explicit.prompt, explicit.chosen, explicit.rejected, explicit.prompt_messages) == (
        "",
        "25.",
        "30.",
        tuple(CONVERSATION),
    )
    assert explicit.prompt_id == prompt_id("How many vacation days?")
    rendered = render_prompts([first, explicit], tiny_tokenizer())
    assert rendered[0] == first
    assert (
        rendered[1].prompt == "<|im_start|>user\nHow many vacation days?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_thumbs_and_demonstration_files(tmp_path: Path) -> None:
    thumbs = write(
        tmp_path / "thumbs.jsonl",
        {"prompt": PROMPT, "completion": SHORT, "label": True},
        {"prompt": CONVERSATION, "completion": [{"role": "assistant", "content": "No."}], "label": False},
    )
    assert detect_jsonl_kind(thumbs) == "thumbs"
    up, down = read_jsonl_thumbs(thumbs)
    assert (up.prompt, up.completion, up.label, up.source) == (PROMPT, SHORT, True, "jsonl")
    assert (down.prompt, down.completion, down.label, down.prompt_messages) == (
        "",
        "No.",
        False,
        tuple(CONVERSATION),
    )

    demos = write(
        tmp_path / "sft.jsonl",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                *CONVERSATION,
                {"role": "assistant", "content": "25 days."},
            ]
        },
        {"prompt": PROMPT, "completion": SHORT},
        {"prompt": CONVERSATION, "completion": [{"role": "assistant", "content": "25."}]},
    )
    assert detect_jsonl_kind(demos) == "demonstrations"
    chat, plain, split = read_jsonl_demonstrations(demos)
    assert (chat.prompt, chat.completion, chat.source, len(chat.messages or ())) == (
        "",
        "25 days.",
        "jsonl",
        3,
    )
    assert chat.prompt_id == prompt_id("How many vacation days?") == split.prompt_id
    assert (plain.prompt, plain.completion, plain.messages) == (PROMPT, SHORT, None)
    tokenizer = tiny_tokenizer()
    prompt, completion = render_messages(tokenizer, chat.messages or ())
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and prompt.endswith(
        "<|im_start|>assistant\n"
    )
    assert completion == "25 days."
    assert render_prompts([chat], tokenizer)[0].prompt == prompt
    with pytest.raises(DataError, match="assistant"):
        render_messages(tokenizer, CONVERSATION)


@pytest.mark.parametrize(
    ("reader", "lines", "message"),
    [
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": "a", "rejected": "b"}\n', '{"prompt": "q", "chosen": "a",\n'],
            r"bad\.jsonl:2: not valid JSON",
        ),
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": "a", "rejected": "b"}\n', "\n", '{"prompt": "q", "chosen": "a"}\n'],
            r"bad\.jsonl:3: missing 'rejected'",
        ),
        (read_jsonl_preferences, ['["q", "a", "b"]\n'], r"bad\.jsonl:1: expected a JSON object"),
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}\n'],
            r":1: 'chosen' must end with an assistant message",
        ),
        (
            read_jsonl_preferences,
            [
                json.dumps(
                    {
                        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                        "rejected": [
                            {"role": "user", "content": "q2"},
                            {"role": "assistant", "content": "b"},
                        ],
                    }
                )
                + "\n"
            ],
            r":1: without 'prompt'",
        ),
        (
            read_jsonl_thumbs,
            ['{"prompt": "q", "completion": "a", "label": "yes"}\n'],
            r"bad\.jsonl:1: 'label' must be true or false",
        ),
        (
            read_jsonl_thumbs,
            ['{"prompt": "", "completion": "a", "label": true}\n'],
            r":1: 'prompt' must be a non-empty string",
        ),
        (
            read_jsonl_demonstrations,
            ['{"messages": [{"role": "user", "content": "q"}]}\n'],
            r":1: 'messages' must end with an assistant message",
        ),
        (read_jsonl_demonstrations, ['{"messages": [{"role": "user"}]}\n'], r":1: messages\[0\] must be"),
        (read_jsonl_demonstrations, ['{"prompt": "q"}\n'], r":1: 'completion' must be"),
    ],
)
def test_a_malformed_line_is_a_data_error_naming_file_and_line(
    tmp_path: Path, reader: Any, lines: list[str], message: str
) -> None:
    path = write(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(DataError, match=message):
        reader(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.jsonl", "\n  \n")
    for reader in (read_jsonl_preferences, read_jsonl_thumbs, read_jsonl_demonstrations, detect_jsonl_kind):
        with pytest.raises(DataError, match="no examples"):
            reader(empty)
        with pytest.raises(DataError, match="no such file"):
            reader(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown format"):
        detect_jsonl_kind(write(tmp_path / "odd.jsonl", {"text": "hello"}))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "caf\xe9", "completion": "a"}\n')
    with pytest.raises(DataError, match="UTF-8"):
        read_jsonl_demonstrations(latin)
