"""Checks of an answer against the passages it was given: pure functions over plain text.

The service runs them on every generated answer before it is final (a failing answer is replaced by an
extractive one, rag/extractive.py), and the trainer turns them into the verifiable part of its reward.
Everything here is computed from the answer, the question and the prompt's passages, never from a
reference answer, so it applies to any question of any corpus.

- citation markers: `[n]` naming a passage that was shown, or not;
- degeneration: a word n-gram or a sentence said again and again (loops), or nothing but markers;
- echo: the answer repeats the prompt's scaffolding ("Question: ...", the instruction, "passage 2 is");
- grounding: the share of the answer's checkable facts (numbers, emails, URLs, capitalised names) that
  occur in the passages it cites (all shown passages when it cites none).

(One concept at ~440 lines: the checks share the tokenisation of answers and passages into sentences,
n-grams and checkable facts.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

MARKER = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\[(\"'])|\n+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s)\]>\"']+|www\.[^\s)\]>\"']+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?:%|\b)")
# two or more capitalised words in a row (Ananya Rao, Meridian Tech Park), or a word with inner capitals
# or digits (SCADA, 4G, iPhone): the names an answer can get wrong
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[ -](?:[A-Z][a-z]+|[A-Z]{2,}))+\b|\b[A-Z]{2,}[A-Z0-9]*\b")
# words that echo the prompt's scaffolding rather than answer (rag/prompting.py writes it)
_ECHO = re.compile(
    r"(^|\n)\s*(question|answer briefly|passages?)\s*:|answer briefly using the passages|"
    r"\bthe passages? (?:\d+ |\[\d+\] )?(?:is|are) about\b|\bpassage \d+ (?:is|says|states)\b",
    re.IGNORECASE,
)
_NOT_COVERED = re.compile(
    r"\b(?:does not|doesn't|do not|don't|cannot|can't)\s+(?:cover|answer|mention|contain|say|provide)|"
    r"\bnot (?:covered|mentioned)\b|\bno information\b",
    re.IGNORECASE,
)


def says_not_covered(text: str) -> bool:
    """Whether the text says the passages (or the knowledge base) do not answer the question."""
    return bool(_NOT_COVERED.search(text))


def markers(text: str) -> list[int]:
    """Every `[n]` in the text, in order, repeats included."""
    return [int(m.group(1)) for m in MARKER.finditer(text)]


def invalid_markers(text: str, shown: int) -> list[int]:
    """The marker numbers that name no shown passage (1..shown), each once, in order."""
    out: list[int] = []
    for n in markers(text):
        if not 1 <= n <= shown and n not in out:
            out.append(n)
    return out


def drop_invalid_markers(text: str, shown: int) -> str:
    """The text without markers naming no shown passage (and without the space left before them)."""

    def keep(match: re.Match[str]) -> str:
        return match.group(0) if 1 <= int(match.group(1)) <= shown else ""

    cleaned = MARKER.sub(keep, text)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """The share of the text's word n-grams that occurred earlier in it (0 = none repeat)."""
    tokens = words(MARKER.sub(" ", text))
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def degeneration(text: str, n: int = 4, max_repeats: int = 2, max_share: float = 0.25) -> str | None:
    """Why the text is a loop, or None: a word n-gram said more than `max_repeats` times, more than
    `max_share` of its n-grams repeated, a sentence said twice, or nothing but citation markers."""
    body = MARKER.sub(" ", text)
    tokens = words(body)
    if text.strip() and not tokens:
        return "only citation markers"
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    if grams:
        gram, count = grams.most_common(1)[0]
        if count > max_repeats:
            return f"repeats {' '.join(gram)!r} {count} times"
    if repeated_ngram_share(text, n) > max_share:
        return f"{repeated_ngram_share(text, n):.0%} of its {n}-word sequences repeat"
    seen: set[str] = set()
    for sentence in sentences(body):
        key = " ".join(words(sentence))
        if len(key.split()) >= 4 and key in seen:
            return f"repeats the sentence {sentence[:60]!r}"
        seen.add(key)
    return None


def echo(text: str, question: str = "") -> str | None:
    """Why the text echoes the prompt instead of answering, or None."""
    match = _ECHO.search(text)
    if match:
        return f"echoes the prompt ({match.group(0).strip()[:40]!r})"
    q = " ".join(words(question))
    if len(q.split()) >= 4:
        for sentence in sentences(text):
            if " ".join(words(sentence)) == q:
                return "repeats the question"
    return None


def _norm(fact: str) -> str:
    return re.sub(r"[\s,]+", "", fact.lower().rstrip(".")).replace("’", "'")


def _strip_common(name: str, starts_sentence: bool = False) -> str:
    """A name match without leading common words ("The Boston Office" -> "Boston Office") or, at a
    sentence start, its first word when two or more remain ("Call Ananya Rao" -> "Ananya Rao"); "" when
    what is left is one ordinary capitalised word (a sentence start, not a name)."""
    from rag.lexical import STOPWORDS

    parts = re.split(r"([ -])", name)
    while len(parts) > 2 and parts[0].lower() in STOPWORDS:
        parts = parts[2:]
    if starts_sentence and len(parts) >= 5 and not parts[0].isupper():
        parts = parts[2:]
    rest = "".join(parts)
    if len(parts) == 1 and not rest.isupper():
        return ""
    return rest


_LIST_NUMBER = re.compile(r"(^|\n)\s*\d{1,2}[.)](?=\s)")


def facts(text: str) -> list[str]:
    """The answer's checkable facts, each once: emails, URLs, numbers, multi-word or all-caps names.
    Citation markers and list numbers ("1.", "2)") are not facts."""
    body = _LIST_NUMBER.sub(r"\1", MARKER.sub(" ", text))
    found: list[str] = []
    for pattern in (_EMAIL, _URL):
        for m in pattern.finditer(body):
            found.append(m.group(0).rstrip(".,;:"))
        body = pattern.sub(" ", body)
    found += [m.group(0) for m in _NUMBER.finditer(body)]
    for m in _NAME.finditer(body):
        before = body[: m.start()].rstrip()
        starts_sentence = not before or before[-1] in ".!?:\n"
        name = _strip_common(m.group(0), starts_sentence)
        if name:
            found.append(name)
    out: list[str] = []
    for fact in found:
        if fact and _norm(fact) not in {_norm(f) for f in out}:
            out.append(fact)
    return out


def grounding(text: str, cited: Sequence[str]) -> tuple[float, list[str]]:
    """(share of the text's facts found in the cited passages' text, the facts not found). A text with no
    checkable fact is fully grounded (1.0): there is nothing in it to get wrong."""
    found = facts(text)
    if not found:
        return 1.0, []
    haystack = _norm(" ".join(cited))
    missing = [f for f in found if _norm(f) not in haystack]
    return 1.0 - len(missing) / len(found), missing


def content_words(text: str) -> set[str]:
    from rag.lexical import STOPWORDS

    return {w for w in words(text) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def support(text: str, passages: Sequence[str]) -> float:
    """The share of the text's content words (crudely stemmed) that occur in the passages; 1.0 for a
    text without content words."""
    mine = {_stem(w) for w in content_words(MARKER.sub(" ", text))}
    if not mine:
        return 1.0
    theirs = {_stem(w) for w in content_words(" ".join(passages))}
    return len(mine & theirs) / len(mine)


def coverage(question: str, text: str) -> float:
    """The share of the question's content words (crudely stemmed) that the text uses; 1.0 for a
    question without content words."""
    asked = {_stem(w) for w in content_words(question)}
    if not asked:
        return 1.0
    return len(asked & {_stem(w) for w in content_words(text)}) / len(asked)


# Questions whose answer is a quantity, a duration, a date or a time ("how long", "when", "by when"):
# the sentence that answers them states one. The answer-type check of classic question answering.
_ASKS_QUANTITY = re.compile(
    r"\b(how (many|much|long|often|big|large|far|old|soon|early|late|fast|high|low|small)|when|"
    r"what (time|day|days|date|dates|hours|percentage|percent|age|size|limit|amount|rate)|"
    r"which (day|days|date|month|months|year)|deadline|by when)\b",
    re.IGNORECASE,
)
_STATES_QUANTITY = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    r"hundred|thousand|half|once|twice|daily|weekly|monthly|quarterly|annually|yearly|noon|midnight|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekdays?|weekends?)\b",
    re.IGNORECASE,
)


def asks_quantity(question: str) -> bool:
    """The question asks for a number, a duration, a date or a time."""
    return bool(_ASKS_QUANTITY.search(question))


_ENUMERATOR = re.compile(r"^\s*\d{1,2}[.)]\s+", re.MULTILINE)  # "1. " opening a list item


def states_quantity(text: str) -> bool:
    """The text states a number, a duration, a date or a time (digits, number words, weekdays...);
    citation markers and list numbers ("1. ") do not count."""
    return bool(_STATES_QUANTITY.search(_ENUMERATOR.sub(" ", MARKER.sub(" ", text))))


@dataclass(frozen=True)
class AnswerCheck:
    """The checks of one answer. `failures` names every check it failed; an empty list passes."""

    invalid_markers: list[int]
    degeneration: str | None
    echo: str | None
    grounding: float  # 0..1
    ungrounded: list[str]
    cites: list[int]  # valid passage numbers the answer cites
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_answer(
    text: str, question: str, passages: Sequence[str], min_grounding: float = 0.6
) -> AnswerCheck:
    """Check an answer to `question` written from `passages` (their texts, [1] first). Grounding fails
    below `min_grounding`, or when any number, email or URL of the answer is not in its cited passages
    (the facts a small model invents most)."""
    shown = len(passages)
    bad = invalid_markers(text, shown)
    cites = [n for n in dict.fromkeys(markers(text)) if 1 <= n <= shown]
    loop = degeneration(text)
    echoed = echo(text, question)
    cited_text = [passages[n - 1] for n in cites] or list(passages)
    share, missing = grounding(text, cited_text)
    failures: list[str] = []
    if not text.strip():
        failures.append("empty answer")
    if bad:
        failures.append(f"cites passages that were not shown: {bad}")
    if loop:
        failures.append(loop)
    if echoed:
        failures.append(echoed)
    hard = [f for f in missing if any(c.isdigit() for c in f) or "@" in f or "/" in f]
    if share < min_grounding or hard:
        failures.append(f"facts not in the cited passages: {', '.join((hard or missing)[:5])}")
    return AnswerCheck(bad, loop, echoed, share, missing, cites, failures)


_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s*\[\d{1,3}\])*\s+(?=\S)|\n+")


class StreamingCheck:
    """The checks applied sentence by sentence while an answer streams, so nothing shown is retracted.

    `feed(piece)` returns the text that passed and can be shown now: whole sentences whose invalid
    citation markers were dropped, that do not echo the prompt, repeat an earlier sentence or n-gram, or
    state a number, email or URL missing from their cited passages. The first failing sentence stops the
    answer (`failed` names why); `finish()` checks the unfinished last sentence. An answer that stopped
    before any sentence passed has `shown == ""`: the caller replaces it (rag/extractive.py).
    """

    def __init__(
        self,
        question: str,
        passages: Sequence[str],
        ngram: int = 4,
        max_repeats: int = 2,
        *,
        enabled: bool = True,
        min_coverage: float = 0.0,
        min_support: float = 0.0,
        max_held_sentences: int = 3,
    ) -> None:
        self.question = question
        # the answer must cover this much of the question (rag.grounding.coverage) before any of it is
        # shown, else it is about something else (a passage the model copied instead of answering)
        self.min_coverage = min_coverage
        # an answer still held back after this many sentences fails there: a small model that has not
        # addressed the question in three sentences rarely does later, and decoding the rest only delays
        # the extractive answer that replaces it
        self.max_held_sentences = max_held_sentences
        self._held_sentences = 0
        # each sentence's content words must be this much in the passages: a small model's fluent
        # sentence about something the passages never say has no invented number, but few of their words
        self.min_support = min_support
        self.enabled = enabled  # False: every sentence passes as it is (operators debugging the raw model)
        self.passages = list(passages)
        self.ngram, self.max_repeats = ngram, max_repeats
        self.pending = ""
        self.shown = ""
        self.failed: str | None = None
        self._separator = " "  # what ended the previous sentence: a space or a line break
        self.held: str | None = "" if enabled and min_coverage > 0 else None  # passed, not yet shown

    def _check(self, sentence: str) -> tuple[str, str | None]:
        """(the sentence as it may be shown, why it fails or None)."""
        if not self.enabled:
            return sentence, None
        clean = drop_invalid_markers(sentence, len(self.passages))
        if not words(MARKER.sub(" ", clean)):
            return "", None  # a stray marker or full stop: nothing to show, nothing wrong
        echoed = echo(clean, self.question)
        if echoed:
            return clean, echoed
        if not self.shown and says_not_covered(clean):
            # retrieval judged the question answerable before the model was called: its passages are the
            # best the knowledge base has, so quoting them beats the model's stock refusal
            return clean, "says the passages do not answer"
        candidate = f"{self.shown} {clean}".strip()
        loop = degeneration(candidate, self.ngram, self.max_repeats)
        if loop:
            return clean, loop
        cites = [n for n in dict.fromkeys(markers(clean)) if 1 <= n <= len(self.passages)]
        cited = [self.passages[n - 1] for n in cites] or self.passages
        share, missing = grounding(clean, cited)
        hard = [f for f in missing if any(c.isdigit() for c in f) or "@" in f or "/" in f]
        if hard or share < 0.5:
            return clean, f"facts not in the cited passages: {', '.join((hard or missing)[:5])}"
        backed = support(clean, self.passages)
        if backed < self.min_support:
            return clean, f"only {backed:.0%} of its words are in the passages"
        return clean, None

    def _typed(self, text: str) -> bool:
        """The text has the kind of answer the question asks for (a quantity or a time), or it asks
        for neither."""
        return not asks_quantity(self.question) or states_quantity(text)

    def _accept(self, sentence: str, ended_by: str) -> str:
        clean, why = self._check(sentence)
        if why is not None:
            self.failed = why
            return ""
        if not clean:
            return ""
        out = (self._separator if self.shown else "") + clean
        self._separator = ended_by
        self.shown += out
        if self.held is None:
            return out
        # sentences wait until together they address the question well enough (min_coverage) and, when
        # it asks how much, how long or when, state a quantity or a time
        self.held += out
        self._held_sentences += 1
        covered = coverage(self.question, self.shown)
        if covered < self.min_coverage or not self._typed(self.shown):
            if self.max_held_sentences and self._held_sentences >= self.max_held_sentences:
                self.failed = f"does not address the question in {self._held_sentences} sentences"
                self.shown, self.held = "", None
            return ""
        released, self.held = self.held, None
        return released

    def feed(self, piece: str) -> str:
        if self.failed is not None:
            return ""
        if not self.enabled:  # nothing to check: no reason to hold text back until a sentence ends
            self.shown += piece
            return piece
        self.pending += piece
        out = ""
        start = 0
        while self.failed is None:
            match = _SENTENCE_END.search(self.pending, start)
            if match is None:
                break
            if len(words(MARKER.sub(" ", self.pending[: match.start()]))) < 3 and "\n" not in match.group(0):
                start = match.end()  # "1." or "e.g." is not a sentence yet: read on
                continue
            start = 0
            sentence = self.pending[: match.start()] + self.pending[match.start() : match.end()].strip()
            separator = "\n" if "\n" in match.group(0) else " "
            self.pending = self.pending[match.end() :]
            out += self._accept(sentence, separator)
        return out

    def finish(self) -> str:
        """Check and return the last, unterminated sentence (and what was held back, when the whole
        answer addresses the question; otherwise the answer fails and nothing more is shown)."""
        out = ""
        if self.failed is None and self.pending.strip():
            sentence, self.pending = self.pending.strip(), ""
            out = self._accept(sentence, " ")
        if self.failed is None and self.held is not None:
            covered = coverage(self.question, self.shown)
            self.failed = (
                f"does not address the question (covers {covered:.0%} of it)"
                if covered < self.min_coverage
                else "states no quantity or time, and the question asks for one"
            )
            self.shown, self.held = "", None
            return ""
        return out
