"""Every command group fails the same way: `error [code]: message` on stderr and exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.errors import fail
from rag.errors import IndexNotFound

runner = CliRunner()
LINE = re.compile(r"^error \[[a-z_]+\]: \S", re.M)


def test_fail_prints_a_named_error_or_a_code_and_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail(IndexNotFound("no index at var/index")).exit_code == 2
    assert fail("invalid_input", "--pairs is empty").exit_code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error [index_not_found]: no index at var/index",
        "error [invalid_input]: --pairs is empty",
    ]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["export", "nonsense"], "invalid_input"),
        (["export", "preferences"], "store_unavailable"),
        (["search", "where is HR"], "index_not_found"),
        (["models", "promote", "v0042", "--reason", "x"], "unknown_version"),
        (["train", "reward", "--from-jsonl", "missing.jsonl"], "invalid_data"),
    ],
)
def test_each_command_group_prints_one_error_format(
    args: list[str], code: str | None, tmp_path: Path
) -> None:
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert LINE.search(done.output), done.output
    if code is not None:
        assert f"error [{code}]" in done.output


def test_a_misconfigured_setting_fails_every_command_with_a_named_error() -> None:
    from typer.testing import CliRunner

    from cli.app import app
    from core.settings import get_settings

    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(app, ["models", "list"], env={"KBLOOP_DEVICE": "tpu"})
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 2
    assert "error [invalid_config]: KBLOOP_DEVICE:" in done.output and "Traceback" not in done.output
