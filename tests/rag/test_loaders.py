from __future__ import annotations

from pathlib import Path

import pytest

from rag.loaders import SkipFile, decode_text, discover, load_document, normalize_groups, sections_from_lines
from tests.conftest import CORPUS

BIG = 10 * 1024 * 1024


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def test_markdown_front_matter_title_groups_and_sections() -> None:
    doc = load_document(CORPUS / "policies" / "vpn.md", "policies/vpn.md", BIG)
    assert doc.title == "VPN Access"
    assert doc.groups == ("engineering",)
    assert [s.path for s in doc.sections] == [("Connecting",), ("Troubleshooting",)]
    assert "Tunnelblick" in doc.sections[0].text
    assert len(doc.content_hash) == 64


def test_markdown_nested_headings_and_code_fences(tmp_path: Path) -> None:
    text = "# Guide\n\nIntro.\n\n## A\n\nalpha\n\n### A1\n\n```\n# not a heading\n```\n\n## B\n\nbeta\n"
    doc = load_document(write(tmp_path, "g.md", text), "g.md", BIG)
    assert doc.title == "Guide"
    assert [s.path for s in doc.sections] == [(), ("A",), ("A", "A1"), ("B",)]
    assert "# not a heading" in doc.sections[2].text


def test_title_falls_back_to_file_name(tmp_path: Path) -> None:
    doc = load_document(
        write(tmp_path, "expense-rules.md", "Just text, no heading."), "expense-rules.md", BIG
    )
    assert doc.title == "Expense rules"


def test_text_file_caps_headings() -> None:
    doc = load_document(CORPUS / "lunch.txt", "lunch.txt", BIG)
    assert doc.title == "Cafeteria Guide"
    assert [s.path for s in doc.sections] == [("Opening Hours",), ("Menu",)]


def test_html_drops_scripts_styles_and_boilerplate() -> None:
    doc = load_document(CORPUS / "security.html", "security.html", BIG)
    everything = "\n".join(s.text for s in doc.sections)
    assert doc.title == "Badge Security"
    assert "never-index" not in everything and "color: red" not in everything
    assert "Copyright" not in everything and "Home | Policies" not in everything
    assert [s.path for s in doc.sections] == [(), ("Lost badges",), ("Visitors",)]
    assert "within 24 hours" in doc.sections[1].text
    assert "- A replacement badge costs 15 dollars." in doc.sections[1].text
    assert "Guest | Always required" in doc.sections[2].text


def test_html_meta_groups(tmp_path: Path) -> None:
    html = (
        '<html><head><meta name="kbloop-groups" content="Legal, HR"></head><body><h1>T</h1><p>x y</p></body>'
    )
    doc = load_document(write(tmp_path, "a.html", html), "a.html", BIG)
    assert doc.groups == ("hr", "legal")


def test_pdf_pages_become_sections() -> None:
    doc = load_document(CORPUS / "handbook.pdf", "handbook.pdf", BIG)
    assert doc.title == "Travel Handbook"
    assert [s.path for s in doc.sections] == [("Page 1",), ("Page 2",)]
    assert "75 dollars" in doc.sections[1].text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"this is not a pdf at all", "corrupt PDF"),
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\n ", "empty file"),
        ("image.txt", b"PNG\x00\x01\x02binary", "binary file"),
        ("notes.docx", b"whatever", "unsupported file type .docx"),
        ("only-front-matter.md", b"---\ntitle: X\n---\n", "no text to index"),
    ],
)
def test_bad_files_are_skipped_with_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    with pytest.raises(SkipFile) as info:
        load_document(write(tmp_path, name, data), name, BIG)
    assert reason in info.value.reason


def test_too_large_file_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "big.md", "word " * 1000)
    with pytest.raises(SkipFile, match="too large"):
        load_document(path, "big.md", max_bytes=1000)


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "locked.md", "secret")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)  # root ignores chmod, so make the read fail directly
    with pytest.raises(SkipFile, match="unreadable: Permission denied"):
        load_document(path, "locked.md", BIG)


def test_non_utf8_text_is_decoded_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "cafe.txt", "Caf\xe9 Menu\n\nCr\xe8me br\xfbl\xe9e on Fridays.".encode("cp1252"))
    doc = load_document(path, "cafe.txt", BIG)
    assert doc.title == "Café Menu"
    assert "Crème brûlée" in doc.sections[0].text
    assert any("Windows-1252" in w for w in doc.warnings)


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    text, warnings = decode_text("Hello wörld".encode("utf-16"))
    assert text == "Hello wörld" and warnings


def test_malformed_front_matter_keeps_text(tmp_path: Path) -> None:
    path = write(tmp_path, "x.md", "---\ntitle: [unclosed\n---\n# Real\n\nbody text\n")
    doc = load_document(path, "x.md", BIG)
    assert doc.title == "Real"
    assert doc.groups == ()


def test_normalize_groups() -> None:
    assert normalize_groups(["HR", " legal ", "hr"]) == ("hr", "legal")
    assert normalize_groups("a, b,,") == ("a", "b")
    assert normalize_groups(None) == ()


def test_discover_skips_hidden_files(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "x")
    write(tmp_path, ".git/config", "x")
    write(tmp_path, "sub/.hidden.md", "x")
    write(tmp_path, "sub/b.md", "x")
    found = [p.relative_to(tmp_path).as_posix() for _, p in discover([tmp_path])]
    assert found == ["a.md", "sub/b.md"]


def test_sections_from_lines_level_one_heading_after_title_is_a_section() -> None:
    title, sections = sections_from_lines(["# Other", "text"], "Given title")
    assert title == "Given title"
    assert sections[0].path == ("Other",)
