"""BM25 over chunk texts with bm25s (sparse matrices), English stopwords and Snowball stemming."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import missing_extra

# Bumped whenever tokenization changes: an index built by another version is re-tokenized on next ingest.
LEXICAL_VERSION = 2

# Function words and the words of asking ("how do I", "where is my") that carry no topic; bm25s's own
# English list (33 words) keeps them, which makes every question look partly unanswered.
# fmt: off
STOPWORDS = frozenset({
    'a', 'about', 'above', 'after', 'again', 'against', 'all', 'am', 'an', 'and', 'any', 'anyone',
    'anything', 'are', 'as', 'at', 'be', 'because', 'been', 'before', 'being', 'below', 'between', 'both',
    'but', 'by', 'can', 'could', 'did', 'do', 'does', 'doing', 'done', 'down', 'during', 'each', 'few',
    'for', 'from', 'further', 'get', 'gets', 'getting', 'got', 'had', 'has', 'have', 'having', 'he',
    'hello', 'her', 'here', 'hers', 'herself', 'hi', 'him', 'himself', 'his', 'how', 'i', 'if', 'in',
    'into', 'is', 'it', 'its', 'itself', 'just', 'know', 'let', 'me', 'might', 'more', 'most', 'must', 'my',
    'myself', 'need', 'needs', 'no', 'nor', 'not', 'now', 'of', 'off', 'ok', 'okay', 'on', 'once', 'only',
    'or', 'other', 'ought', 'our', 'ours', 'ourselves', 'out', 'over', 'own', 'please', 'same', 'shall',
    'she', 'should', 'so', 'some', 'someone', 'something', 'such', 'tell', 'than', 'thank', 'thanks',
    'that', 'the', 'their', 'theirs', 'them', 'themselves', 'then', 'there', 'these', 'they', 'this',
    'those', 'through', 'to', 'too', 'under', 'until', 'up', 'us', 'very', 'wanna', 'want', 'was', 'we',
    'were', 'what', 'when', 'where', 'which', 'while', 'who', 'whom', 'why', 'will', 'with', 'would', 'you',
    'your', 'yours', 'yourself', 'yourselves',
    # contractions: the tokenizer splits "didn't" into "didn" + "t"; people also type them unapostrophed
    'aren', 'arent', 'cant', 'couldn', 'couldnt', 'didn', 'didnt', 'doesn', 'doesnt', 'don', 'dont',
    'hadn', 'hasn', 'haven', 'havent', 'hows', 'im', 'isn', 'isnt', 'ive', 'ill', 'shouldn', 'thats',
    'theres', 'wasn', 'wasnt', 'weren', 'whats', 'wheres', 'whos', 'won', 'wont', 'wouldn', 'youre',
})
# Words that shape a question ("how long", "how much", "what happens if") without naming its topic. They
# stay searchable but do not count towards query coverage: a passage need not say "long" to answer
# "how long do we keep I-9 forms?".
QUESTION_FILLER = frozenset({
    'allowed', 'also', 'come', 'comes', 'ever', 'exactly', 'far', 'fast', 'go', 'goes', 'going',
    'happen', 'happens', 'like', 'long', 'many', 'much', 'often', 'possible', 'put', 'quick', 'quickly',
    'really', 'soon', 'still', 'sure', 'take', 'talk', 'thing', 'things', 'way', 'ways',
})
# fmt: on

_CODE_PAREN = re.compile(r"\b(\d+)\((\w)\)")  # 401(k) -> 401k
_HYPHENATED = re.compile(r"\b(\w+)-(\w+)\b")  # Wi-Fi -> Wi-Fi WiFi, e-mail -> e-mail email


def normalize(text: str) -> str:
    """Spellings people write both ways, made to meet: `401(k)`/`401k`, `Wi-Fi`/`wifi`, `e-mail`/`email`.

    Hyphenated words keep their parts and gain the joined form, so "Wi-Fi" matches "wifi" and "wi fi".
    """
    text = _CODE_PAREN.sub(r"\1\2", text)
    return _HYPHENATED.sub(r"\1-\2 \1\2", text)


def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as exc:
        raise missing_extra("PyStemmer") from exc
    return Stemmer.Stemmer("english")


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise missing_extra("bm25s") from exc
    return bm25s


class LexicalIndex:
    """A BM25 retriever plus per-term document frequencies (for the query-coverage signal)."""

    def __init__(self, retriever: Any, doc_freq: dict[str, int], n_docs: int) -> None:
        self._retriever = retriever
        self._stemmer = _stemmer()
        self.doc_freq = doc_freq
        self.n_docs = n_docs
        self._filler: frozenset[str] | None = None

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        bm25s = _bm25s()
        stemmer = _stemmer()
        tokenized = bm25s.tokenize(
            [normalize(t) for t in texts], stopwords=sorted(STOPWORDS), stemmer=stemmer, show_progress=False
        )
        retriever = bm25s.BM25()
        retriever.index(tokenized, show_progress=False)
        id_to_term = {i: t for t, i in tokenized.vocab.items()}
        counts = np.zeros(len(id_to_term), dtype=np.int64)
        for ids in tokenized.ids:
            counts[list(set(ids))] += 1
        doc_freq = {id_to_term[i]: int(c) for i, c in enumerate(counts) if c}
        return cls(retriever, doc_freq, len(texts))

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder))
        (folder / "doc_freq.json").write_text(json.dumps({"n_docs": self.n_docs, "df": self.doc_freq}))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        bm25s = _bm25s()
        retriever = bm25s.BM25.load(str(folder))
        meta = json.loads((folder / "doc_freq.json").read_text())
        return cls(retriever, {str(k): int(v) for k, v in meta["df"].items()}, int(meta["n_docs"]))

    def terms(self, text: str) -> list[str]:
        """Stemmed, stopword-free terms of a text, as the index sees them."""
        bm25s = _bm25s()
        out = bm25s.tokenize(
            normalize(text),
            stopwords=sorted(STOPWORDS),
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return list(out[0]) if out else []

    def topic_terms(self, terms: Sequence[str]) -> list[str]:
        """The terms that name what a question is about: `terms` without the question fillers."""
        if self._filler is None:
            self._filler = frozenset(self._stemmer.stemWords(sorted(QUESTION_FILLER)))
        return [t for t in terms if t not in self._filler]

    def idf(self, term: str) -> float:
        """BM25's idf; a term the corpus never uses gets the largest value."""
        df = self.doc_freq.get(term, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))

    def search(
        self, terms: Sequence[str], n: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:  # (m,) int row ids, (m,) float scores, best first
        """Top-n rows for the query terms; rows where `mask` is 0 are excluded. Zero scores are dropped."""
        known = [t for t in terms if t in self.doc_freq]
        n = min(n, self.n_docs)
        if not known or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        weight_mask = None if mask is None else mask.astype(np.float32)
        scores = np.asarray(self._retriever.get_scores(known, weight_mask=weight_mask), dtype=np.float32)
        # most chunks share no term with the query: select among the others only (bm25s's own top-k
        # partitions the whole corpus, ~3 ms at 50k chunks)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > n:
            candidates = candidates[np.argpartition(scores[candidates], -n)[-n:]]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return order.astype(np.int64), scores[order]
