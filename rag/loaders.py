"""Loading files into documents: Markdown, plain text, HTML and PDF, with headings kept as sections.

A loader never aborts an ingest: a file it cannot use raises `SkipFile` with a reason that the ingest
summary lists. Every format ends up as the same `Document`: a title, access groups and an ordered list
of sections, each with its heading path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*\r?\n?", re.DOTALL)
_CAPS_HEADING = re.compile(r"^[A-Z0-9][A-Z0-9 &/,:()'\-]{2,78}$")


class SkipFile(Exception):
    """The file can't be indexed; `reason` says why, in words fit for the ingest summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    path: tuple[str, ...]  # headings below the document title, outermost first; () = the preamble
    text: str


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the ingested root, with forward slashes
    title: str
    groups: tuple[str, ...]  # access groups; empty = public
    sections: tuple[Section, ...]
    content_hash: str  # sha256 of the file's bytes
    warnings: tuple[str, ...] = field(default=())  # e.g. "decoded as cp1252"


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def discover(paths: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """Yield (root, file) for every non-hidden file under the given files and folders, sorted."""
    for given in paths:
        if given.is_file():
            yield given.parent, given
            continue
        for path in sorted(given.rglob("*")):
            rel = path.relative_to(given)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            yield given, path


def load_document(path: Path, source: str, max_bytes: int) -> Document:
    """Read and parse one file. Raises `SkipFile` for anything that can't become a useful document."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SkipFile(f"unsupported file type {suffix or '(no extension)'}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SkipFile(f"too large ({size / 1e6:.1f} MB; the cap is {max_bytes / 1e6:.1f} MB)")
        data = path.read_bytes()
    except OSError as exc:
        raise SkipFile(f"unreadable: {exc.strerror or exc}") from exc
    if not data.strip():
        raise SkipFile("empty file")
    digest = file_hash(data)
    if suffix == ".pdf":
        title, groups, sections, warnings = _parse_pdf(data)
    else:
        text, warnings = decode_text(data)
        if suffix in (".html", ".htm"):
            title, groups, sections = _parse_html(text)
        else:
            title, groups, sections = _parse_text(text, caps_headings=suffix == ".txt")
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise SkipFile("no text to index")
    title = title or Path(source).stem.replace("-", " ").replace("_", " ").strip().capitalize()
    return Document(
        source=source,
        title=title,
        groups=groups,
        sections=tuple(sections),
        content_hash=digest,
        warnings=tuple(warnings),
    )


def decode_text(data: bytes) -> tuple[str, list[str]]:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252; binary data is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), ["decoded as UTF-16"]
        except UnicodeDecodeError as exc:
            raise SkipFile("invalid UTF-16 text") from exc
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise SkipFile("not UTF-8 and not decodable as Windows-1252 text") from exc
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > len(text) * 0.01:
        raise SkipFile("binary file (control characters in the text)")
    return text, ["not UTF-8: decoded as Windows-1252"]


def normalize_groups(value: Any) -> tuple[str, ...]:
    """Front-matter `groups` as a sorted tuple of lowercase names: accepts a list or a comma string."""
    if value is None:
        return ()
    items = (
        value.split(",") if isinstance(value, str) else list(value) if isinstance(value, list) else [value]
    )
    return tuple(sorted({str(item).strip().lower() for item in items if str(item).strip()}))


def split_front_matter(text: str) -> tuple[dict[str, Any], str, list[str]]:
    """YAML front matter between `---` lines at the top; a malformed block is kept as text, with a warning."""
    import yaml

    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text, []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text, ["front matter is not valid YAML: ignored"]
    if not isinstance(meta, dict):
        return {}, text, ["front matter is not a mapping: ignored"]
    return meta, text[match.end() :], []


def _parse_text(text: str, caps_headings: bool) -> tuple[str, tuple[str, ...], list[Section]]:
    meta, body, _ = split_front_matter(text)
    title = str(meta.get("title") or "").strip()
    lines = body.splitlines()
    if caps_headings and not title:
        # Plain-text convention of the handbook: the first non-empty line is the title.
        for i, line in enumerate(lines):
            if line.strip():
                title = line.strip()
                lines = lines[i + 1 :]
                break
    title, sections = sections_from_lines(lines, title, caps_headings)
    return title, normalize_groups(meta.get("groups")), sections


def sections_from_lines(
    lines: list[str], title: str, caps_headings: bool = False
) -> tuple[str, list[Section]]:
    """Split Markdown-like lines at headings. A level-1 heading names the document when no title is set."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []  # (level, heading) of the open headings
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(buffer).strip()
        if content:
            sections.append(Section(tuple(h for _, h in stack), content))
        buffer.clear()

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            buffer.append(line)
            continue
        match = None if in_fence else _HEADING.match(line)
        if match:
            level, heading = len(match.group(1)), match.group(2).strip()
        elif (
            not in_fence
            and caps_headings
            and _CAPS_HEADING.match(line.strip())
            and any(c.isalpha() for c in line)
        ):
            level, heading = 2, line.strip().title()
        else:
            buffer.append(line)
            continue
        flush()
        if level == 1 and not title:
            title = heading
            continue
        if level == 1 and heading.lower() == title.lower():
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
    flush()
    return title, sections


# --- HTML -------------------------------------------------------------------------------------------

_DROP_TAGS = {"script", "style", "noscript", "template", "nav", "footer", "svg", "iframe", "form", "button"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "aside", "header", "ul", "ol", "li", "table", "thead", "tbody",
    "tr", "pre", "blockquote", "dl", "dt", "dd", "figure", "figcaption", "caption", "br", "hr", "body",
}  # fmt: skip
_HEADING_TAGS = {f"h{i}": i for i in range(1, 7)}


def _parse_html(text: str) -> tuple[str, tuple[str, ...], list[Section]]:
    try:
        from bs4 import BeautifulSoup, NavigableString, Tag
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        from rag.errors import missing_extra

        raise missing_extra("beautifulsoup4") from exc

    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    groups: tuple[str, ...] = ()
    for meta in soup.find_all("meta"):
        if str(meta.get("name", "")).lower() in ("kbloop-groups", "groups"):
            groups = normalize_groups(str(meta.get("content", "")))
    lines: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        joined = re.sub(r"\s+", " ", "".join(inline)).strip()
        if joined:
            lines.append(joined)
        inline.clear()

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a Comment, CData, Doctype...
                    inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if name in _DROP_TAGS:
                continue
            if name in _HEADING_TAGS:
                flush()
                heading = child.get_text(" ", strip=True)
                if heading:
                    lines.extend(["", "#" * _HEADING_TAGS[name] + " " + heading, ""])
            elif name == "tr":
                flush()
                cells = [c.get_text(" ", strip=True) for c in child.find_all(["td", "th"])]
                lines.append(" | ".join(c for c in cells if c))
            elif name == "li":
                flush()
                inline.append("- ")
                walk(child)
                flush()
            elif name in _BLOCK_TAGS:
                flush()
                walk(child)
                flush()
                if name in ("p", "ul", "ol", "table", "pre", "blockquote", "dl"):
                    lines.append("")
            else:
                walk(child)

    walk(soup.body if soup.body else soup)
    flush()
    title, sections = sections_from_lines(lines, title)
    return title, groups, sections


# --- PDF --------------------------------------------------------------------------------------------


def _parse_pdf(data: bytes) -> tuple[str, tuple[str, ...], list[Section], list[str]]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        from rag.errors import missing_extra

        raise missing_extra("pypdf") from exc
    import io
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise SkipFile("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        meta_title = str(info.title).strip() if info and info.title else ""
        keywords = str(info.get("/Keywords", "")) if info else ""
    except SkipFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise SkipFile(f"corrupt PDF: {exc}") from exc
    groups: tuple[str, ...] = ()
    if keywords.lower().startswith("groups:"):
        groups = normalize_groups(keywords.split(":", 1)[1])
    sections = [
        Section((f"Page {number}",), _tidy_pdf_text(text))
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    if not sections:
        raise SkipFile("PDF has no extractable text (scanned images?)")
    title = meta_title or sections[0].text.splitlines()[0].strip()[:120]
    return title, groups, sections, []


def _tidy_pdf_text(text: str) -> str:
    # Re-join words hyphenated across line ends and collapse runs of spaces.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return re.sub(r"[ \t]+", " ", text).strip()
