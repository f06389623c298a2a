"""The extractive answerer alone, offline: no model, no server, the retriever's passages and MiniLM.

For every answerable question of a phrase-annotated set it retrieves the prompt's passages in process (the
server's own `retrieve`), builds the extractive answer the service falls back to (`rag.extractive`), and
checks whether the reference phrase's content words are in it (`bench/answers.py`'s rule). In the same
run: the naive baselines of `bench/answers.py` (the 2 and 3 sentences sharing most words with the
question). It takes about a minute a corpus, so a change to the ranking can be checked on every corpus
before the served benchmark is run.

    python bench/extractive.py --corpus examples/riverbend-water
    python bench/extractive.py --corpus examples/acme-handbook --questions bench/questions/extra-heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.config import RagConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.answers import corpus_groups, extractive, holds, load_questions, rate  # noqa: E402


def evaluate(corpus: Path, questions: list[dict[str, Any]], data: Path) -> dict[str, Any]:
    from core.settings import Settings
    from rag.context import retrieve
    from rag.extractive import extractive_answer
    from rag.search import Retriever

    env = {**os.environ, "KBLOOP_DATA_DIR": str(data)}
    env.pop("KBLOOP_INDEX_DIR", None)
    subprocess.run([sys.executable, "-m", "cli", "ingest", "--quiet", str(corpus)], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    settings = Settings(data_dir=data, index_dir=None, tokens_file=None)
    retriever = Retriever(settings.resolved_index_dir, RagConfig.from_settings(settings))
    groups = corpus_groups(settings)
    rows = []
    for q in questions:
        if not q.get("answerable", True):
            continue
        conversation = [{"role": "user", "content": q["question"]}]
        texts = [p.text for p in retrieve(retriever, settings, conversation, groups).passages]
        answer = extractive_answer(q["question"], texts, retriever.embedder.encode_queries)
        rows.append({
            "id": q["id"], "question": q["question"], "phrase": q["phrase"], "answer": answer,
            "context_held": holds(q["phrase"], " ".join(texts)), "right": holds(q["phrase"], answer),
            "extractive2_right": holds(q["phrase"], extractive(q["question"], texts, 2)),
            "extractive3_right": holds(q["phrase"], extractive(q["question"], texts, 3)),
        })  # fmt: skip
    held = [r for r in rows if r["context_held"]]
    return {
        "answerable": len(rows),
        "context_held": rate(len(held), len(rows)),
        "right": rate(sum(r["right"] for r in rows), len(rows)),
        "right_when_context_held": rate(sum(r["right"] for r in held), len(held)),
        "extractive2_right_when_context_held": rate(sum(r["extractive2_right"] for r in held), len(held)),
        "extractive3_right_when_context_held": rate(sum(r["extractive3_right"] for r in held), len(held)),
        "misses": [r for r in held if not r["right"]],
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder to ingest")
    parser.add_argument("--questions", type=Path, default=None, help="default CORPUS/golden.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the index here")
    parser.add_argument("--show-misses", action="store_true", help="print each question the answer missed")
    args = parser.parse_args()
    questions = load_questions(args.questions or args.corpus / "golden.jsonl", None)
    began = time.perf_counter()
    if args.data_dir is not None:  # re-ingesting an unchanged corpus reuses its embeddings
        result = evaluate(args.corpus, questions, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kbloop-extractive-") as tmp:
            result = evaluate(args.corpus, questions, Path(tmp))
    result = {"corpus": str(args.corpus), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "wall_s": round(time.perf_counter() - began, 1), **result}  # fmt: skip
    for key in ("context_held", "right", "right_when_context_held", "extractive2_right_when_context_held",
                "extractive3_right_when_context_held"):  # fmt: skip
        r = result[key]
        print(f"{key:40s} {r['n']:3d}/{r['of']:<3d} {r['rate']}  CI {r['ci95'][0]:.2f}–{r['ci95'][1]:.2f}")
    if args.show_misses:
        for r in result["misses"]:
            print(f"\n{r['id']}: {r['question']}\n  phrase: {r['phrase']}\n  answer: {r['answer']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
