"""The trainer's datasets: feedback from the store as typed examples, and the hygiene that makes them fit
to learn from.

Examples (frozen dataclasses; the losses read `prompt`, `chosen`/`rejected` or `completion`, `label`,
`weight`):
- `PreferencePair`: the chosen answer was preferred to the rejected one (a side-by-side choice A/B);
- `Tie`: a side-by-side `tie` (both fine) or `both_bad` (neither acceptable): no winner;
- `ThumbExample`: an answer labelled good (thumbs up) or bad (thumbs down, with its reasons);
- `Demonstration`: the answer as it should have been (a correction, a golden answer).

Prompts are TRL's standard format: `AnswerRecord.prompt`, the exact chat-template rendering the model saw
with its retrieved passages (feedback.export says why, and what the trainer must do with it). Rows of a
conversational JSONL file keep their messages instead (`prompt_messages`, `Demonstration.messages`)
and get `prompt == ""` until `render_prompts` renders them with a tokenizer's chat template.

`prompt_id` groups examples that ask the same thing, for the held-out split: the sha256 of the question
a rendered RAG prompt asks (or of the whole prompt when it is not one), case and spacing normalized. So
the same question asked with other passages or history, a golden question and an employee's, all
share an id and never land on both sides of a split.

`load_feedback` reads everything from one `Store.snapshot()` and applies feedback.export's rules for
rows that cannot make a sound example (`pair_problem`, `thumb_problem`, superseded corrections), counted
in `skipped` under `<table>.<reason>`. Access groups hold in training: a row whose answer's prompt held
a passage restricted to groups never trains the model served to everyone (`shared`, counted as
`<table>.restricted` and in the report's `restricted`). It records a `Snapshot` (the newest row of
each table) in the result; passing it back as `as_of` reads exactly the same rows again, whatever was
written since.
Then the hygiene, each a pure function usable on its own: `dedupe`, `cap_per_user`,
`balance_positions`; `split_by_prompt` (stable: by question hash, paraphrases together) is left to
the caller. TRL JSONL files (ours from `kbloop
export`, or anyone's) are read by `read_jsonl_preferences`, `read_jsonl_thumbs` and
`read_jsonl_demonstrations`; a malformed line is a DataError naming the file and line, and rows marked
with `restricted_groups` are left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from feedback.connection import rows
from feedback.export import filters, pair_problem, pair_prompt, restricted_groups, thumb_problem
from feedback.filters import time_window, where
from feedback.timestamps import normalize_timestamp, utc_now
from rag.prompting import INSTRUCTION, QUESTION_FORMAT
from trainer.errors import DataError

if TYPE_CHECKING:
    import sqlite3

    from feedback.store import Store

log = logging.getLogger(__name__)
Message = dict[str, str]
Position = Literal["left", "right"]
DEFAULT_PER_USER_CAP = 1000


# -- examples ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """`chosen` was preferred to `rejected` as the answer to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    prompt_id: str
    user_id: str | None
    chosen_position: Position | None  # where the chosen answer was shown; None: not shown side by side
    source: Literal["comparison", "correction", "jsonl"]  # correction: the rewrite over what it replaced
    weight: float = 1.0
    comparison_id: str | None = None
    prompt_messages: tuple[Message, ...] | None = None  # a conversational prompt, until render_prompts


@dataclass(frozen=True)
class Tie:
    """A side-by-side choice without a winner: `tie` (both fine) or `both_bad` (neither acceptable).
    `a` was shown on the left, `b` on the right."""

    prompt: str
    a: str
    b: str
    prompt_id: str
    user_id: str | None
    kind: Literal["tie", "both_bad"]
    comparison_id: str | None = None


@dataclass(frozen=True)
class ThumbExample:
    """`completion` judged good (`label` True) or bad as the answer to `prompt`; `reasons` say what was
    wrong. Source `both_bad`: one side of a side-by-side choice that rejected both."""

    prompt: str
    completion: str
    label: bool
    reasons: tuple[str, ...]
    prompt_id: str
    user_id: str | None
    source: Literal["vote", "both_bad", "jsonl"]
    weight: float = 1.0
    answer_id: str | None = None
    prompt_messages: tuple[Message, ...] | None = None  # a conversational prompt, until render_prompts


@dataclass(frozen=True)
class Demonstration:
    """`completion` is the answer `prompt` should get. A conversational JSONL row keeps its whole
    conversation in `messages` (the last turn is the assistant's, = `completion`)."""

    prompt: str
    completion: str
    prompt_id: str
    source: Literal["correction", "golden", "jsonl"]
    user_id: str | None
    messages: tuple[Message, ...] | None = None
    answer_id: str | None = None
    corrected: str | None = None  # the answer this correction replaced (a correction's only)


Example = TypeVar("Example", PreferencePair, Tie, ThumbExample, Demonstration)

_QUESTION_START = QUESTION_FORMAT.split("{question}")[0].replace("{passages}", "")  # "\n\nQuestion: "
_QUESTION_END = QUESTION_FORMAT.split("{question}")[1].replace("{instruction}", INSTRUCTION)


def prompt_key(prompt: str) -> str:
    """What a prompt asks: the question of a prompt rendered from the service's RAG template (its last
    user turn), else the prompt itself."""
    end = prompt.rfind(_QUESTION_END)
    start = prompt.rfind(_QUESTION_START, 0, end) if end >= 0 else -1
    return prompt if start < 0 else prompt[start + len(_QUESTION_START) : end]


def prompt_id(prompt: str) -> str:
    """sha256 (hex) of `prompt_key(prompt)` in lower case with runs of spaces made one space."""
    normalized = " ".join(prompt_key(prompt).split()).casefold()
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def conversation_id(messages: Sequence[Message]) -> str:
    """The `prompt_id` of a conversation: its last user turn's."""
    questions = [m["content"] for m in messages if m["role"] == "user"]
    return prompt_id(questions[-1] if questions else "")


# -- chat templates ---------------------------------------------------------------------------------


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text of a conversation: the tokenizer's chat template with the generation prompt."""
    return str(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False))


def render_messages(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, str]:
    """A conversation that ends with the assistant's answer as (prompt, completion): the turns before the
    answer through the chat template (`render_chat`), and the answer."""
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("a demonstration's messages must end with the assistant's answer")
    return render_chat(tokenizer, messages[:-1]), messages[-1]["content"]


def render_prompts(items: Sequence[Example], tokenizer: Any) -> list[Example]:
    """The items with the prompt of each conversational row rendered by the tokenizer's chat template
    (render it with the tokenizer of the model that trains on it); other items unchanged."""
    out: list[Example] = []
    for item in items:
        if isinstance(item, Demonstration) and item.messages is not None and not item.prompt:
            item = replace(item, prompt=render_messages(tokenizer, item.messages)[0])
        elif isinstance(item, PreferencePair | ThumbExample) and item.prompt_messages and not item.prompt:
            item = replace(item, prompt=render_chat(tokenizer, item.prompt_messages))
        out.append(item)
    return out


def correction_pairs(demonstrations: Sequence[Demonstration]) -> list[PreferencePair]:
    """An employee who rewrites an answer prefers the rewrite to it: one pair (correction over the answer
    it replaced) per correction whose texts differ, in the demonstrations' order. Golden and JSONL
    demonstrations replaced nothing and make none."""
    return [
        PreferencePair(d.prompt, d.completion, d.corrected, d.prompt_id, d.user_id, None, "correction")
        for d in demonstrations
        if d.source == "correction" and d.corrected and d.corrected.strip() != d.completion.strip()
    ]


# -- what was read ----------------------------------------------------------------------------------

# the column that says when a row's feedback was given (its last change, for votes and comparisons)
TIME_COLUMNS = {
    "answers": "created_at",
    "votes": "updated_at",
    "vote_events": "created_at",
    "comparisons": "chosen_at",
    "corrections": "created_at",
}


@dataclass(frozen=True)
class TableMark:
    """A table as the snapshot saw it: its row count, largest rowid (0: empty) and newest time."""

    rows: int
    max_rowid: int
    max_time: str | None


@dataclass(frozen=True)
class Snapshot:
    """What `load_feedback` read, for a run's manifest. Reading with `as_of=` this snapshot takes the
    same rows again: votes as of vote event `max_rowid`, comparisons up to `max_rowid` chosen by
    `max_time` (a choice made in the same millisecond after the snapshot would be taken too),
    corrections up to `max_rowid`; with the same filters."""

    db_path: str
    schema_version: int
    taken_at: str
    tables: dict[str, TableMark]
    since: str | None = None
    until: str | None = None
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        try:
            tables = {name: TableMark(**mark) for name, mark in data["tables"].items()}
            return cls(**{**data, "tables": tables})
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"not a feedback snapshot ({exc}); pass the `snapshot` of a run manifest"
            ) from None


@dataclass(frozen=True)
class FeedbackData:
    pairs: tuple[PreferencePair, ...]
    ties: tuple[Tie, ...]
    thumbs: tuple[ThumbExample, ...]
    demonstrations: tuple[Demonstration, ...]
    snapshot: Snapshot
    skipped: dict[str, int]  # "<table or kind>.<reason>" -> rows left out
    report: dict[str, Any] = field(default_factory=dict)  # what was read and what the hygiene changed


# -- reading the store ------------------------------------------------------------------------------


def load_feedback(
    store_or_db_path: Store | str | os.PathLike[str],
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
    per_user_cap: int | None = DEFAULT_PER_USER_CAP,
    seed: int = 0,
    as_of: Snapshot | None = None,
) -> FeedbackData:
    """Every example the store holds, from one consistent snapshot, deduplicated, capped at
    `per_user_cap` examples of each kind per user (None: no cap; the choice is seeded) and with the
    pairs' positions balanced.

    - comparisons chosen A/B → pairs (chosen/rejected from the recorded left/right); `tie` → Tie;
      `both_bad` → Tie and a thumbs-down ThumbExample for each answer (both were judged bad);
    - current votes (withdrawn ones left out) → ThumbExample with the reasons;
    - the newest correction of each (answer, user) → Demonstration.
    `since <= t < until` on when the feedback was given, `model_version` on the answer (either side of
    a comparison), as in feedback.export. `as_of`: read only what that snapshot held (its filters too).
    """
    from feedback.store import Store

    if as_of is not None:
        given = {"since": since, "until": until, "model_version": model_version}
        recorded = {"since": as_of.since, "until": as_of.until, "model_version": as_of.model_version}
        if any(v is not None and _canonical(k, v) != recorded[k] for k, v in given.items()):
            raise DataError(f"as_of carries its own filters {recorded}; leave since/until/model_version out")
        since, until, model_version = as_of.since, as_of.until, as_of.model_version
    since, until = _canonical("since", since), _canonical("until", until)
    if per_user_cap is not None and per_user_cap < 1:
        raise ValueError(f"per_user_cap must be at least 1 (or None for no cap), got {per_user_cap}")
    if isinstance(store_or_db_path, Store):
        return _load(store_or_db_path, since, until, model_version, per_user_cap, seed, as_of)
    path = Path(store_or_db_path)
    if not path.is_file():
        raise DataError(f"no feedback database at {path}; check the data directory")
    with Store(path) as store:
        return _load(store, since, until, model_version, per_user_cap, seed, as_of)


def _canonical(name: str, value: str | None) -> str | None:
    if value is None or name == "model_version":
        return value
    try:
        return normalize_timestamp(value)
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{name}: {exc}") from None


def _load(
    store: Store,
    since: str | None,
    until: str | None,
    model_version: str | None,
    per_user_cap: int | None,
    seed: int,
    as_of: Snapshot | None,
) -> FeedbackData:
    skipped: Counter[str] = Counter()
    window = (since, until, model_version)
    with store.snapshot() as conn:
        marks = _marks(conn)
        if as_of is not None:
            _check_contains(marks, as_of, store)
        bounds = as_of.tables if as_of is not None else marks
        version = int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0)
        pairs, ties, bad = _comparisons(conn, bounds["comparisons"], window, skipped)
        thumbs = _votes(conn, bounds["vote_events"], window, skipped) + bad
        demonstrations = _corrections(conn, bounds["corrections"], window, skipped)
    snapshot = Snapshot(str(store.path.resolve()), version, utc_now(), bounds, since, until, model_version)
    read = {
        "pairs": len(pairs),
        "ties": sum(t.kind == "tie" for t in ties),
        "both_bad": sum(t.kind == "both_bad" for t in ties),
        "thumbs_up": sum(t.label for t in thumbs),
        "thumbs_down": sum(not t.label and t.source == "vote" for t in thumbs),
        "both_bad_thumbs": len(bad),
        "demonstrations": len(demonstrations),
    }
    report: dict[str, Any] = {
        "read": read,
        # examples whose prompt held a passage restricted to access groups: kept out of training
        "restricted": {t: skipped[f"{t}.restricted"] for t in ("comparison", "vote", "correction")},
        "per_user_cap": per_user_cap,
        "seed": seed,
        "dedupe": {},
    }
    kinds: dict[str, list[Any]] = {
        "pairs": pairs,
        "ties": ties,
        "thumbs": thumbs,
        "demonstrations": demonstrations,
    }
    dropped: dict[str, dict[str, int]] = {}
    for kind, items in kinds.items():
        items, report["dedupe"][kind] = dedupe(items)
        skipped[f"{kind}.duplicate"] += report["dedupe"][kind]["duplicates"]
        if per_user_cap is not None:
            items, dropped[kind] = cap_per_user(items, per_user_cap, seed)
            skipped[f"{kind}.per_user_cap"] += sum(dropped[kind].values())
        kinds[kind] = items
    report["capped"] = dropped
    balanced, report["positions"] = balance_positions(kinds["pairs"])
    return FeedbackData(
        tuple(balanced),
        tuple(kinds["ties"]),
        tuple(kinds["thumbs"]),
        tuple(kinds["demonstrations"]),
        snapshot,
        {k: v for k, v in sorted(skipped.items()) if v},
        report,
    )


def _marks(conn: sqlite3.Connection) -> dict[str, TableMark]:
    marks = {}
    for table, column in TIME_COLUMNS.items():
        n, rowid, newest = conn.execute(
            f"SELECT count(*), coalesce(max(rowid), 0), max({column}) FROM {table}"
        ).fetchone()
        marks[table] = TableMark(int(n), int(rowid), newest)
    return marks


def _check_contains(marks: dict[str, TableMark], as_of: Snapshot, store: Store) -> None:
    beyond = [t for t, m in as_of.tables.items() if t in marks and m.max_rowid > marks[t].max_rowid]
    if beyond or set(TIME_COLUMNS) - set(as_of.tables):
        raise DataError(
            f"the snapshot of {as_of.db_path} names rows that {store.path} does not hold "
            f"({beyond or 'tables'}); read it from the database the run used"
        )


Window = tuple[str | None, str | None, str | None]  # since, until, model_version


def shared(row: Any, columns: Sequence[str], table: str, skipped: Counter[str]) -> bool:
    """Whether a row may train the model served to everyone: none of its answers' prompts held a passage
    restricted to access groups (`columns` name their `passage_groups`). A restricted row is left out
    and counted under `<table>.restricted`. Every reader of the store that makes training examples or
    prompts calls this (`load_feedback`'s readers, trainer.prompts.logged_prompts): the one place where
    access groups hold in training."""
    if restricted_groups(*(row[c] for c in columns)):
        skipped[f"{table}.restricted"] += 1
        return False
    return True


def _comparisons(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> tuple[list[PreferencePair], list[Tie], list[ThumbExample]]:
    clauses, params = filters("c.chosen_at", ("l.model_version", "r.model_version"), *window)
    sql = (
        "SELECT c.comparison_id, c.user_id, c.choice, c.left_answer_id, c.right_answer_id, "
        "l.prompt AS left_prompt, l.answer AS left_answer, r.prompt AS right_prompt, "
        "r.answer AS right_answer, l.passage_groups AS left_groups, r.passage_groups AS right_groups "
        "FROM comparisons c JOIN answers l ON l.answer_id = c.left_answer_id "
        "JOIN answers r ON r.answer_id = c.right_answer_id"
        f"{where(['c.choice IS NOT NULL', 'c.rowid <= ?', 'c.chosen_at <= ?', *clauses])} "
        "ORDER BY c.chosen_at, c.rowid"
    )
    pairs: list[PreferencePair] = []
    ties: list[Tie] = []
    bad: list[ThumbExample] = []
    for row in rows(conn, sql, [bound.max_rowid, bound.max_time or "", *params]):
        if not shared(row, ("left_groups", "right_groups"), "comparison", skipped):
            continue
        left, right, choice = row["left_answer"], row["right_answer"], row["choice"]
        problem = pair_problem(row["left_prompt"], row["right_prompt"], left, right)
        if problem is None and choice in ("A", "B") and left == right:
            problem = "identical_answers"  # nothing to learn from which copy was picked
        if problem is not None:
            skipped[f"comparison.{problem}"] += 1
            continue
        prompt = pair_prompt(row["left_prompt"], row["right_prompt"])
        pid, user, cid = prompt_id(prompt), row["user_id"], row["comparison_id"]
        if choice in ("A", "B"):
            side: Position = "left" if choice == "A" else "right"
            chosen, rejected = (left, right) if choice == "A" else (right, left)
            pairs.append(PreferencePair(prompt, chosen, rejected, pid, user, side, "comparison", 1.0, cid))
            continue
        ties.append(Tie(prompt, left, right, pid, user, choice, cid))
        if choice == "both_bad":
            for answer_id, text in ((row["left_answer_id"], left), (row["right_answer_id"], right)):
                bad.append(ThumbExample(prompt, text, False, (), pid, user, "both_bad", 1.0, answer_id))
    return pairs, ties, bad


def _votes(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> list[ThumbExample]:
    """Each vote's value as of vote event `bound` (its latest event then), oldest first."""
    clauses, params = filters("e.created_at", ("a.model_version",), *window)
    sql = (
        "SELECT e.answer_id, e.user_id, e.value, e.reasons, a.prompt, a.answer, a.passage_groups "
        "FROM vote_events e "
        "JOIN answers a USING (answer_id) WHERE e.event_id = (SELECT max(n.event_id) FROM vote_events n "
        "WHERE n.answer_id = e.answer_id AND n.user_id = e.user_id AND n.event_id <= ?)"
        f"{''.join(f' AND {c}' for c in clauses)} ORDER BY e.created_at, e.event_id"
    )
    thumbs = []
    for row in rows(conn, sql, [bound.max_rowid, *params]):
        if not shared(row, ("passage_groups",), "vote", skipped):
            continue
        problem = thumb_problem(row["value"], row["prompt"], row["answer"])
        if problem is not None:
            skipped[f"vote.{problem}"] += 1
            continue
        reasons = tuple(json.loads(row["reasons"]))
        thumbs.append(
            ThumbExample(
                row["prompt"], row["answer"], row["value"] == "up", reasons, prompt_id(row["prompt"]),
                row["user_id"], "vote", 1.0, row["answer_id"],
            )
        )  # fmt: skip
    return thumbs


def _corrections(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> list[Demonstration]:
    """The newest correction of each (answer, user) in the window, oldest first (feedback.export's rule)."""
    clauses, params = filters("k.created_at", ("a.model_version",), *window)
    newer, newer_params = time_window("n.created_at", window[0], window[1])
    sql = (
        "SELECT k.answer_id, k.user_id, k.text, a.prompt, a.answer, a.passage_groups, "
        "EXISTS (SELECT 1 FROM corrections n "
        "WHERE n.answer_id = k.answer_id AND n.user_id = k.user_id AND n.rowid <= ? AND "
        "(n.created_at > k.created_at OR (n.created_at = k.created_at AND n.rowid > k.rowid))"
        f"{''.join(f' AND {c}' for c in newer)}) AS superseded FROM corrections k JOIN answers a "
        f"USING (answer_id){where(['k.rowid <= ?', *clauses])} ORDER BY k.created_at, k.rowid"
    )
    demonstrations = []
    for row in rows(conn, sql, [bound.max_rowid, *newer_params, bound.max_rowid, *params]):
        if not shared(row, ("passage_groups",), "correction", skipped):
            continue
        if row["superseded"] or not row["prompt"]:
            skipped["correction.superseded" if row["superseded"] else "correction.no_prompt"] += 1
            continue
        demonstrations.append(
            Demonstration(
                row["prompt"], row["text"], prompt_id(row["prompt"]), "correction", row["user_id"],
                answer_id=row["answer_id"], corrected=row["answer"],
            )
        )  # fmt: skip
    return demonstrations


# -- hygiene ----------------------------------------------------------------------------------------


def _frozen(messages: Sequence[Message] | None) -> Hashable:
    return None if messages is None else tuple(tuple(sorted(m.items())) for m in messages)


def _keys(item: PreferencePair | Tie | ThumbExample | Demonstration) -> tuple[Hashable, Hashable | None]:
    """(what makes two examples the same, what the example that contradicts this one would have)."""
    if isinstance(item, PreferencePair):
        asked = (item.prompt, _frozen(item.prompt_messages))
        return (*asked, item.chosen, item.rejected), (*asked, item.rejected, item.chosen)
    if isinstance(item, ThumbExample):
        asked = (item.prompt, _frozen(item.prompt_messages))
        return (*asked, item.completion, item.label), (*asked, item.completion, not item.label)
    if isinstance(item, Tie):
        other = "tie" if item.kind == "both_bad" else "both_bad"
        return (item.prompt, frozenset((item.a, item.b)), item.kind), (
            item.prompt,
            frozenset((item.a, item.b)),
            other,
        )
    return (item.prompt, _frozen(item.messages), item.completion), None


def dedupe(items: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Identical examples kept once (the first; users and positions aside): the same prompt, chosen and
    rejected; the same prompt, completion and label; the same tie of the same two answers; the same
    demonstration. Contradicting examples (the same pair in both directions, the same answer thumbed up
    and down, a tie and a both_bad of the same answers) are all kept: each is a real judgment, and
    people disagree. Returns the kept items in order and {"duplicates", "conflicts"} counts (a conflict:
    two kept examples contradicting each other)."""
    seen: set[Hashable] = set()
    kept: list[Example] = []
    for item in items:
        key, _ = _keys(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    conflicts = sum(1 for item in kept if (opposite := _keys(item)[1]) is not None and opposite in seen)
    return kept, {"duplicates": len(items) - len(kept), "conflicts": conflicts // 2}


def cap_per_user(items: Sequence[Example], cap: int, seed: int) -> tuple[list[Example], dict[str, int]]:
    """At most `cap` items per user, so a few prolific raters do not speak for everyone. A user with
    more keeps a random `cap` of them, drawn from (seed, user) alone (another user's data does not change
    the draw); items without a user (JSONL, golden) are not capped. Returns the kept items in their
    order and {user: items dropped}."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    by_user: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.user_id is not None:
            by_user[item.user_id].append(i)
    drop: set[int] = set()
    dropped: dict[str, int] = {}
    for user in sorted(by_user):
        mine = by_user[user]
        if len(mine) > cap:
            keep = set(random.Random(f"{seed}\x1f{user}").sample(mine, cap))
            drop.update(i for i in mine if i not in keep)
            dropped[user] = len(mine) - cap
    return [item for i, item in enumerate(items) if i not in drop], dropped


def balance_positions(pairs: Sequence[PreferencePair]) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Weights that make pairs chosen on the left and on the right carry equal total weight, so a
    position bias of the raters (people pick the left answer more often) is not learnt as quality.
    Each weight is scaled by total / (2 × its side's total); pairs without a position keep theirs, and
    nothing changes unless both sides have pairs. The report has the counts and the left-win share
    before balancing (None without positioned pairs) and the two factors."""
    sides: dict[str, float] = {"left": 0.0, "right": 0.0}
    counts: Counter[str] = Counter()
    for p in pairs:
        if p.chosen_position is not None:
            sides[p.chosen_position] += p.weight
            counts[p.chosen_position] += 1
    positioned = counts["left"] + counts["right"]
    report: dict[str, Any] = {
        "left": counts["left"],
        "right": counts["right"],
        "unpositioned": len(pairs) - positioned,
        "left_win_share": counts["left"] / positioned if positioned else None,
        "factors": None,
    }
    if sides["left"] <= 0 or sides["right"] <= 0:
        return list(pairs), report
    total = sides["left"] + sides["right"]
    factors = {side: total / (2 * weight) for side, weight in sides.items()}
    report["factors"] = factors
    return [
        p if p.chosen_position is None else replace(p, weight=p.weight * factors[p.chosen_position])
        for p in pairs
    ], report


# MiniLM (the bundled all-MiniLM-L6-v2) cosine at or above which two questions are paraphrases. Measured
# by bench/paraphrase_threshold.py (2026-12-02): the 2,278 pairs of distinct golden questions reach 0.700
# at most (none at 0.72); 17 written paraphrases of golden questions have a median of 0.779 and 10 of 17
# are at or above 0.72; no question of bench/questions/extra-heldout.jsonl comes within 0.68 of a golden
# one. Paraphrases below it stay apart (separate hashes): a leak this threshold does not catch.
PARAPHRASE_COSINE = 0.72


def _unit(key: str) -> float:
    """A number in [0, 1) from `key` alone (a prompt_id: the question's normalised-text hash)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64


def paraphrase_groups(
    questions: dict[str, str], embed: Any, threshold: float = PARAPHRASE_COSINE
) -> dict[str, str]:
    """prompt_id -> the id that decides its side: the smallest id of its group of near-duplicate
    questions (union-find over the pairs whose embeddings' cosine is >= `threshold`). `questions` maps
    prompt_id -> question text; `embed(texts)` returns one vector per text."""
    import numpy as np

    ids = sorted(questions)
    parent = {pid: pid for pid in ids}

    def root(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    if len(ids) >= 2:
        vectors = np.asarray(embed([questions[pid] for pid in ids]), dtype=np.float64)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        similar = np.argwhere(np.triu(vectors @ vectors.T, k=1) >= threshold)
        for a, b in similar.tolist():
            ra, rb = root(ids[a]), root(ids[b])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the group's root is its smallest id
    return {pid: root(pid) for pid in ids}


def split_by_prompt(
    items: Sequence[Example],
    heldout_fraction: float,
    *,
    embed: Any = None,
    threshold: float = PARAPHRASE_COSINE,
) -> tuple[list[Example], list[Example]]:
    """(train, held out): a stable function of the question, the same in every round and refresh and
    for every seed. Every example of a prompt_id is on the same side, and with `embed` (the bundled
    MiniLM's `encode`) so is every paraphrase (`paraphrase_groups`): a group is held out when the
    number drawn from its smallest prompt_id (a hash of the normalised question) is below
    `heldout_fraction`, so it stays held out as data grows, in the split of every kind of example.
    With few groups: at least one stays in train, and a fraction above 0 holds out at least one when
    there are two or more."""
    held = heldout_prompt_ids(items, heldout_fraction, embed=embed, threshold=threshold)
    return [i for i in items if i.prompt_id not in held], [i for i in items if i.prompt_id in held]


class Prompted(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def prompt_id(self) -> str: ...


def heldout_prompt_ids(
    items: Iterable[Prompted],
    heldout_fraction: float,
    *,
    embed: Any = None,
    threshold: float = PARAPHRASE_COSINE,
) -> set[str]:
    """The prompt_ids `split_by_prompt` holds out of `items` (anything with a prompt and a prompt_id:
    examples, logged prompts), so every kind of data can be split by one decision."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    questions: dict[str, str] = {}
    for item in items:  # the question a prompt asks, as the prompt_id hashed it
        questions.setdefault(item.prompt_id, " ".join(prompt_key(item.prompt).split()))
    if embed is not None:
        group = paraphrase_groups(questions, embed, threshold)
    else:
        group = {pid: pid for pid in questions}
    draws = {g: _unit(g) for g in sorted(set(group.values()))}
    held = {g for g, u in draws.items() if u < heldout_fraction}
    if held and len(held) == len(draws):
        held.discard(max(draws, key=draws.__getitem__))
    if not held and heldout_fraction > 0 and len(draws) >= 2:
        held.add(min(draws, key=draws.__getitem__))
    return {pid for pid, g in group.items() if g in held}


# -- TRL JSONL files --------------------------------------------------------------------------------

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
