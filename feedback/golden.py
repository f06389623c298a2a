"""The deployment's golden set: the questions with the answers they should get, and the questions the
knowledge base does not cover (expected refusals). Demonstrations for SFT, the evaluation behind the
promotion gate, the smoke prompt and `kbloop simulate` all read it; operators grow it from employees'
corrections (`POST /api/golden`) or import it (`kbloop golden import`).

The file (settings `golden_path`, default DATA_DIR/golden.jsonl) is JSONL, one item per line:
`id`, `question`, `answer` (the ideal answer; for an unanswerable question the refusal it should get),
`sources` (the documents that answer it, as the index names them), `answerable`, `category`. Any other
field (`phrase`, `split`, ...) is kept as it came. CSV files with the same columns import too
(`sources` joined with ";").

- `load_golden(path)`: a golden-set file that must exist and hold items (a named error otherwise);
  `golden_set(path)`: the deployment's set, empty when there is no file yet.
- `read_items(path)`: a JSONL or CSV file to import, every malformed line reported at once (file, line
  and column); `merge` reports incoming items that repeat an id or a question (after
  `normalize_question`) instead of storing them twice; `add_items` / `add_item` write under a lock
  and atomically (a temporary file renamed over the old one), so a crash never leaves half a set.
- `item_from_answer`: an operator turns a stored answer and its newest correction into an item
  (the answer's question, the correction's text, the sources the answer cited).
- The held-out split is a stable function of the normalised question (`split_of`: a sha256 draw
  compared with the held-out fraction), the same in every run and process, recorded in each item's
  `split` field by `with_splits`. New items get theirs with `DEFAULT_HELDOUT_FRACTION` unless they
  carry one; `kbloop golden split --heldout-fraction F` recomputes them all.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedback.errors import DuplicateGolden, InvalidGolden

if TYPE_CHECKING:
    from feedback.store import Store

CORE_FIELDS = ("id", "question", "answer", "sources", "answerable", "category")
SPLITS = ("train", "heldout")
DEFAULT_HELDOUT_FRACTION = 0.2
MAX_REPORTED_ERRORS = 20
_TRUE, _FALSE = ("true", "yes", "1", "y"), ("false", "no", "0", "n")


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    answer: str  # the ideal human answer (for an unanswerable question: the refusal it should get)
    sources: tuple[str, ...]  # the documents that answer it (source paths as the index names them)
    answerable: bool  # False: the knowledge base does not cover it, the service should refuse
    category: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def split(self) -> str | None:
        """`train` or `heldout` as recorded in the file, None when not split yet."""
        value = self.extra.get("split")
        return value if value in SPLITS else None

    def to_json(self) -> dict[str, Any]:
        """The JSONL row: the core fields first, then the extra ones as they came."""
        core = {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "sources": list(self.sources),
            "answerable": self.answerable,
            "category": self.category,
        }
        return {**core, **{k: v for k, v in self.extra.items() if k not in core}}


@dataclass(frozen=True)
class Duplicate:
    """An incoming item that was not stored because the set already holds its id or its question."""

    at: str  # where it came from (`file:line`, or "request")
    id: str
    question: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    added: tuple[GoldenItem, ...]
    duplicates: tuple[Duplicate, ...]
    total: int  # items in the set after the write
    path: str


# -- questions and the split ------------------------------------------------------------------------


def normalize_question(question: str) -> str:
    """What makes two questions the same: case, runs of spaces and trailing punctuation aside."""
    return " ".join(question.split()).casefold().rstrip(" ?!.").strip()


def split_draw(question: str) -> float:
    """A number in [0, 1) drawn from the normalised question alone (sha256: the same in every process)."""
    digest = hashlib.sha256(("kbloop-golden\x1f" + normalize_question(question)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(question: str, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> str:
    """`heldout` when the question's draw is below `heldout_fraction`, else `train`."""
    if not 0 <= heldout_fraction <= 1:
        raise InvalidGolden(f"the held-out fraction must be in [0, 1], got {heldout_fraction}")
    return "heldout" if split_draw(question) < heldout_fraction else "train"


def with_splits(
    items: Iterable[GoldenItem], heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, *, overwrite: bool = True
) -> list[GoldenItem]:
    """The items with their `split` field set by `split_of` (only where missing unless `overwrite`)."""
    out = []
    for item in items:
        if overwrite or item.split is None:
            item = replace(item, extra={**item.extra, "split": split_of(item.question, heldout_fraction)})
        out.append(item)
    return out


# -- parsing ----------------------------------------------------------------------------------------


def _text(at: str, row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidGolden(f"{at}: {key!r} must be a non-empty str, got {value!r}")
    return value


def parse_item(row: Mapping[str, Any], at: str) -> GoldenItem:
    """A golden item from a decoded row; InvalidGolden naming `at` and the column otherwise."""
    item_id, question, answer = _text(at, row, "id"), _text(at, row, "question"), _text(at, row, "answer")
    if item_id != item_id.strip() or len(item_id) > 256:
        raise InvalidGolden(f"{at}: 'id' must be at most 256 characters without surrounding spaces")
    if not isinstance(row.get("answerable"), bool):
        raise InvalidGolden(f"{at}: 'answerable' must be true or false, got {row.get('answerable')!r}")
    sources = row.get("sources", [])
    if not isinstance(sources, list | tuple) or not all(isinstance(s, str) and s.strip() for s in sources):
        raise InvalidGolden(f"{at}: 'sources' must be a list of document paths, got {sources!r}")
    category = row.get("category", "")
    if category is None:
        category = ""
    if not isinstance(category, str):
        raise InvalidGolden(f"{at}: 'category' must be a string, got {category!r}")
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise InvalidGolden(f"{at}: 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    extra = {k: v for k, v in row.items() if k not in CORE_FIELDS}
    return GoldenItem(item_id, question, answer, tuple(sources), row["answerable"], category, extra)


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield f"{path}:{number}", line
    except UnicodeDecodeError as exc:
        raise InvalidGolden(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _decode_jsonl(at: str, line: str) -> Mapping[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidGolden(f"{at}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise InvalidGolden(f"{at}: expected a JSON object, got {type(row).__name__}")
    return row


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidGolden(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in ("id", "question", "answer", "answerable") if c not in header]
    if missing:
        raise InvalidGolden(f"{path}:1: the header lacks the columns {missing}; it has {header}")
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        yield f"{path}:{reader.line_num}", row


def _decode_csv(at: str, row: dict[str, Any]) -> Mapping[str, Any]:
    if None in row:
        raise InvalidGolden(f"{at}: more cells than the header has columns")
    out: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "") or k in CORE_FIELDS}
    flag = (row.get("answerable") or "").strip().lower()
    if flag not in _TRUE + _FALSE:
        raise InvalidGolden(f"{at}: 'answerable' must be true or false, got {row.get('answerable')!r}")
    out["answerable"] = flag in _TRUE
    out["sources"] = [s.strip() for s in (row.get("sources") or "").split(";") if s.strip()]
    for key in ("id", "question", "answer", "category"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip()
    return out


def read_items(path: str | os.PathLike[str]) -> list[tuple[str, GoldenItem]]:
    """The items of a JSONL file or a CSV file (by its `.csv` suffix) with where each came from.
    InvalidGolden listing every malformed line (up to MAX_REPORTED_ERRORS) when any is."""
    path = Path(path)
    if not path.is_file():
        raise InvalidGolden(f"{path}: no such file")
    is_csv = path.suffix.lower() == ".csv"
    rows = _csv_rows(path) if is_csv else _jsonl_rows(path)
    items: list[tuple[str, GoldenItem]] = []
    errors: list[str] = []
    for at, raw in rows:
        try:
            row = _decode_csv(at, raw) if is_csv else _decode_jsonl(at, raw)
            items.append((at, parse_item(row, at)))
        except InvalidGolden as exc:
            errors.append(exc.message)
    if errors:
        hidden = len(errors) - MAX_REPORTED_ERRORS
        more = f"\n... and {hidden} more" if hidden > 0 else ""
        raise InvalidGolden("\n".join(errors[:MAX_REPORTED_ERRORS]) + more)
    return items


def load_golden(path: str | os.PathLike[str]) -> list[GoldenItem]:
    """A golden-set file, in file order: InvalidGolden for a missing or empty file, a malformed line, or
    an id used twice (each named with its line)."""
    found = read_items(path)
    if not found:
        raise InvalidGolden(f"{path}: no examples (the file is empty)")
    seen: set[str] = set()
    for at, item in found:
        if item.id in seen:
            raise InvalidGolden(f"{at}: the id {item.id!r} is used twice; give each item its own id")
        seen.add(item.id)
    return [item for _, item in found]


def golden_set(path: str | os.PathLike[str]) -> list[GoldenItem]:
    """The deployment's golden set: [] when the file does not exist yet or holds no item."""
    path = Path(path)
    if not path.exists() or not path.read_bytes().strip():
        return []
    return load_golden(path)


# -- writing ----------------------------------------------------------------------------------------


def merge(
    existing: Sequence[GoldenItem], incoming: Sequence[tuple[str, GoldenItem]]
) -> tuple[list[GoldenItem], list[Duplicate]]:
    """The incoming items to add, in order, and those that repeat an id or a normalised question of the
    set or of an earlier incoming item (reported with what they repeat)."""
    ids = {item.id for item in existing}
    questions = {normalize_question(item.question): item.id for item in existing}
    added: list[GoldenItem] = []
    duplicates: list[Duplicate] = []
    for at, item in incoming:
        key = normalize_question(item.question)
        if item.id in ids:
            reason = f"the id {item.id!r} is already in the golden set"
        elif key in questions:
            reason = f"the same question is already in the golden set as {questions[key]!r}"
        else:
            ids.add(item.id)
            questions[key] = item.id
            added.append(item)
            continue
        duplicates.append(Duplicate(at, item.id, item.question, reason))
    return added, duplicates


def write_golden(path: str | os.PathLike[str], items: Iterable[GoldenItem]) -> None:
    """Replace the file with `items`, atomically: a temporary file beside it, synced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            for item in items:
                stream.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive lock on the golden set (a lock file beside it) across processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def add_items(
    path: str | os.PathLike[str],
    incoming: Sequence[tuple[str, GoldenItem]],
    *,
    replace_all: bool = False,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> ImportReport:
    """Add the incoming items that are not duplicates (`replace_all`: they become the whole set), give
    the new ones a split, and write the set atomically under the lock."""
    with locked(path):
        existing = [] if replace_all else golden_set(path)
        added, duplicates = merge(existing, incoming)
        added = with_splits(added, heldout_fraction, overwrite=False)
        items = [*existing, *added]
        if added or replace_all:
            write_golden(path, items)
    return ImportReport(tuple(added), tuple(duplicates), len(items), str(path))


def add_item(path: str | os.PathLike[str], item: GoldenItem) -> tuple[GoldenItem, bool]:
    """Add one item (with its split): (the stored item, True), or (the stored one, False) when the same
    item (id, question and answer) is already there: a retried request is stored once. DuplicateGolden
    when another item holds its id or its question."""
    report = add_items(path, [("request", item)])
    if report.added:
        return report.added[0], True
    same = [
        i for i in golden_set(path) if (i.id, i.question, i.answer) == (item.id, item.question, item.answer)
    ]
    if same:
        return same[0], False
    raise DuplicateGolden(report.duplicates[0].reason)


def item_from_answer(
    store: Store,
    answer_id: str,
    *,
    question: str | None = None,
    answer: str | None = None,
    answerable: bool = True,
    category: str = "",
    added_by: str = "",
) -> GoldenItem:
    """An operator's golden item from a stored answer: its question (or `question`), the newest
    correction's text (or `answer`), the sources the answer cited. AnswerNotFound for an unknown
    answer; InvalidGolden when there is no correction and no `answer`, a text is empty, or the answer's
    prompt held passages restricted to access groups (ACL-safe training: see trainer.feedback_data.shared)."""
    record = store.get_answer(answer_id)
    if record.passage_groups:  # its question and correction are about text only those groups may read
        raise InvalidGolden(
            f"answer {answer_id!r} was given from passages restricted to {', '.join(record.passage_groups)}; "
            "the golden set trains and evaluates the model served to everyone, so it cannot hold it"
        )
    if answer is None:
        newest = store.list_corrections(answer_id=answer_id, limit=1)
        if not newest:
            raise InvalidGolden(
                f"answer {answer_id!r} has no correction yet; send the golden answer as 'answer'"
            )
        answer = newest[0].text
    sources = list(dict.fromkeys(c.source for c in record.citations))
    extra = {"from_answer": answer_id, **({"added_by": added_by} if added_by else {})}
    row = {
        "id": f"answer-{answer_id}",
        "question": record.question if question is None else question,
        "answer": answer,
        "sources": sources,
        "answerable": answerable,
        "category": category,
        **extra,
    }
    return parse_item(row, "request")


def resplit(path: str | os.PathLike[str], heldout_fraction: float) -> list[GoldenItem]:
    """Record every item's split for `heldout_fraction` (atomically, under the lock); the items."""
    with locked(path):
        items = with_splits(golden_set(path), heldout_fraction)
        if items:
            write_golden(path, items)
    return items
