from __future__ import annotations

from pathlib import Path

from rag.lexical import LexicalIndex, normalize


def test_normalize_joins_spellings_people_write_both_ways() -> None:
    assert normalize("our 401(k) plan") == "our 401k plan"
    assert normalize("join Wi-Fi") == "join Wi-Fi WiFi"
    assert normalize("plain words") == "plain words"


def test_terms_drop_stopwords_contractions_and_stem() -> None:
    index = LexicalIndex.build(["Employees connect to the Wi-Fi network.", "The 401(k) match is 4%."])
    assert index.terms("whats the 401k match") == ["401k", "match"]
    assert index.terms("I didn't get the wifi password") == ["wifi", "password"]
    assert index.terms("Which Wi-Fi network?") == ["wi", "fi", "wifi", "network"]
    # "how long" shapes the question; it is searchable but not a topic
    assert index.topic_terms(index.terms("how long do we keep forms")) == ["keep", "form"]


def test_search_matches_across_spellings_and_respects_masks(tmp_path: Path) -> None:
    import numpy as np

    texts = ["Guests use the Acme-Guest Wi-Fi.", "The 401(k) match is 4% of salary.", "Parking costs $90."]
    index = LexicalIndex.build(texts)
    rows, scores = index.search(index.terms("wifi for guests"), 3)
    assert rows[0] == 0 and scores[0] > 0
    rows, _ = index.search(index.terms("401k match"), 3)
    assert list(rows) == [1]
    rows, _ = index.search(index.terms("401k match"), 3, mask=np.array([True, False, True]))
    assert list(rows) == []
    index.save(tmp_path)
    again = LexicalIndex.load(tmp_path)
    assert again.doc_freq == index.doc_freq and again.n_docs == 3
    assert again.idf("zzz") > again.idf("match") > 0
