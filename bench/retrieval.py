"""Retrieval benchmark: quality on the golden set, refusal signal, ingest and search speed.

    python bench/retrieval.py                       # everything, ~5 min on 2 cores
    python bench/retrieval.py --skip-scale          # quality + ingest only
    python bench/retrieval.py --scale-chunks 50000 --embed-synthetic   # embed all synthetic chunks for real

Every figure is measured in this run, next to its baseline from the same run:
- quality: BM25 only, dense only, hybrid (RRF and weighted sums) on the answerable golden questions;
- refusal: the confidence the service uses (the shipped calibration), and a 5-fold cross-validated fit,
  on all golden questions;
- ingest: chunks/s of a full first ingest vs the raw encoder's chunks/s on the same texts; re-ingest of
  the unchanged corpus vs the first ingest;
- search at scale: p50/p95 of `Retriever.search` (query embedding included) over N synthetic chunks,
  next to the p50 of the query embedding alone.
Writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.chunking import Chunk, content_hash  # noqa: E402
from rag.confidence import DEFAULT_CALIBRATION, KNOWN_FEATURES, fit_calibration  # noqa: E402
from rag.config import RagConfig  # noqa: E402
from rag.embedding import Embedder  # noqa: E402
from rag.evaluation import GoldenQuestion, load_golden, mean, recall_at_k, reciprocal_rank  # noqa: E402
from rag.index import publish, read_chunks, write_version  # noqa: E402
from rag.ingest import ingest  # noqa: E402
from rag.search import Mode, Retriever  # noqa: E402

CORPUS = REPO / "examples" / "acme-handbook"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def quality(retriever: Retriever, golden: list[GoldenQuestion]) -> dict[str, Any]:
    """recall@5 and MRR@10 per retrieval method on the answerable questions."""
    answerable = [g for g in golden if g.answerable]
    methods: dict[str, tuple[Mode, RagConfig]] = {
        "bm25": ("lexical", retriever.config),
        "dense": ("dense", retriever.config),
        "hybrid_rrf": ("hybrid", replace(retriever.config, fusion="rrf")),
    }
    for weight in (0.3, 0.5, 0.7):
        methods[f"hybrid_weighted_{weight}"] = (
            "hybrid",
            replace(retriever.config, fusion="weighted", dense_weight=weight),
        )
    out: dict[str, Any] = {}
    misses: dict[str, list[str]] = {}
    for name, (mode, config) in methods.items():
        retriever.config = config
        recalls, rrs = [], []
        for g in answerable:
            sources = [h.source for h in retriever.search(g.question, k=10, mode=mode).hits]
            recalls.append(recall_at_k(sources, g.sources, 5))
            rrs.append(reciprocal_rank(sources, g.sources, 10))
            if recalls[-1] == 0:
                misses.setdefault(name, []).append(g.id)
        out[name] = {"recall@5": round(mean(recalls), 4), "mrr@10": round(mean(rrs), 4), "n": len(answerable)}
    out["misses"] = misses
    return out


def refusal(retriever: Retriever, golden: list[GoldenQuestion], folds: int = 5) -> dict[str, Any]:
    """Flag rates with the shipped calibration (in-sample), and out-of-fold rates of a fresh fit.

    Out of fold, each fold's calibration and threshold (at most 10% of the training fold's answerable
    questions refused) are chosen on the other folds only, so the rates are what a new corpus would see.
    """
    from sklearn.metrics import roc_auc_score

    results = [retriever.search(g.question, k=5) for g in golden]
    features = [r.features for r in results]
    labels = [g.answerable for g in golden]

    def rates(flags: list[bool]) -> dict[str, float]:
        unans = [f for f, y in zip(flags, labels, strict=True) if not y]
        ans = [f for f, y in zip(flags, labels, strict=True) if y]
        return {
            "unanswerable_flagged": round(mean([float(f) for f in unans]), 4),
            "answerable_flagged": round(mean([float(f) for f in ans]), 4),
            "n_unanswerable": len(unans),
            "n_answerable": len(ans),
        }

    shipped_p = [DEFAULT_CALIBRATION.probability(f) for f in features]
    shipped = rates([p < DEFAULT_CALIBRATION.threshold for p in shipped_p])
    # stratified folds: every fold holds some unanswerable questions
    order = sorted(range(len(golden)), key=lambda i: (labels[i], random.Random(i).random()))
    fold_of = {i: n % folds for n, i in enumerate(order)}
    oof_p = [0.0] * len(golden)
    oof_flag = [False] * len(golden)
    oof_half = [False] * len(golden)
    for fold in range(folds):
        train = [i for i in range(len(golden)) if fold_of[i] != fold]
        cal = fit_calibration([features[i] for i in train], [labels[i] for i in train])
        for i in range(len(golden)):
            if fold_of[i] == fold:
                oof_p[i] = cal.probability(features[i])
                oof_flag[i] = oof_p[i] < cal.threshold
                oof_half[i] = oof_p[i] < 0.5
    full = fit_calibration(features, labels, label="golden.jsonl (all)")
    flagged = [
        {"id": g.id, "answerable": g.answerable, "confidence": round(p, 3)}
        for g, p in zip(golden, shipped_p, strict=True)
        if (p < DEFAULT_CALIBRATION.threshold) == g.answerable
    ]

    def feature_auc(name: str) -> float:
        return round(float(roc_auc_score(labels, [f[name] for f in features])), 4)

    return {
        "shipped_calibration": {
            "features": DEFAULT_CALIBRATION.features,
            "weights": DEFAULT_CALIBRATION.weights,
            "bias": DEFAULT_CALIBRATION.bias,
            "threshold": DEFAULT_CALIBRATION.threshold,
            "auc": round(float(roc_auc_score(labels, shipped_p)), 4),
            **shipped,
        },
        "cross_validated": {
            "folds": folds,
            "auc": round(float(roc_auc_score(labels, oof_p)), 4),
            "threshold_max_10pct_false_refusals": rates(oof_flag),
            "threshold_0.5": rates(oof_half),
        },
        "fit_on_all": {
            "features": full.features,
            "weights": [round(w, 3) for w in full.weights],
            "bias": round(full.bias, 3),
            "threshold": round(full.threshold, 3),
        },
        "errors_with_shipped": flagged,
        # P(answerable) ranks: above 0.5 a feature is higher for answerable questions
        "feature_auc": {name: feature_auc(name) for name in KNOWN_FEATURES},
    }


def ingest_speed(work: Path, embedder: Embedder, copies: int) -> dict[str, Any]:
    """Full ingest of `copies` copies of the handbook vs the raw encoder on the same chunk texts."""
    corpus = work / "scaled-corpus"
    for n in range(copies):
        shutil.copytree(CORPUS, corpus / f"copy{n}", ignore=shutil.ignore_patterns("*.jsonl"))
    index = work / "ingest-index"
    config = RagConfig()

    cold_embedder = Embedder()  # what the CLI does: the model loads inside the ingest
    start = time.perf_counter()
    cold = ingest([corpus], index, config, embedder=cold_embedder)
    cold_seconds = time.perf_counter() - start

    start = time.perf_counter()
    unchanged = ingest([corpus], index, config, embedder=Embedder())
    reingest_seconds = time.perf_counter() - start

    # warm runs: the same model object already loaded, so only the pipeline is compared with the encoder
    shutil.rmtree(index)
    start = time.perf_counter()
    warm = ingest([corpus], index, config, embedder=embedder)
    warm_seconds = time.perf_counter() - start
    chunks, _ = read_chunks(index, warm.version)
    texts = [c.embed_text for c in chunks]
    start = time.perf_counter()
    embedder.model().encode(
        texts, batch_size=config.batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    raw_seconds = time.perf_counter() - start
    return {
        "files": cold.files_indexed,
        "chunks": cold.chunks,
        "raw_encoder_chunks_per_s": round(len(texts) / raw_seconds, 2),
        "ingest_chunks_per_s": round(warm.chunks / warm_seconds, 2),
        "ingest_vs_encoder": round((warm.chunks / warm_seconds) / (len(texts) / raw_seconds), 3),
        "first_ingest_s_with_model_load": round(cold_seconds, 2),
        "first_ingest_s_model_loaded": round(warm_seconds, 2),
        "reingest_unchanged_s": round(reingest_seconds, 3),
        "reingest_vs_first": round(reingest_seconds / cold_seconds, 4),
        "reingest_vs_first_model_loaded": round(reingest_seconds / warm_seconds, 4),
        "reingest_published": unchanged.published,
    }


def synthesize(
    chunks: list[Chunk], vectors: np.ndarray, n: int, seed: int = 0
) -> tuple[list[Chunk], np.ndarray]:
    """n chunks made of real sentences; each vector = a real chunk's vector plus noise, renormalized."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    sentences = [s for c in chunks for s in c.text.replace("\n", " ").split(". ") if len(s) > 20]
    out: list[Chunk] = list(chunks)
    base_rows = rng.integers(0, len(chunks), size=n - len(chunks))
    for i, row in enumerate(base_rows):
        base = chunks[int(row)]
        text = ". ".join([base.text[:400], *pick.sample(sentences, 4)])
        section = f"{base.section} (synthetic {i})"
        out.append(Chunk(f"syn{i:07d}", f"synthetic/{i // 50:05d}.md", base.title, section, text,
                         content_hash(text), base.groups))  # fmt: skip
    noise = rng.normal(0, 0.04, size=(n - len(chunks), vectors.shape[1])).astype(np.float32)
    extra = vectors[base_rows] + noise
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return out, np.vstack([vectors, extra]).astype(np.float32)


def search_speed(
    work: Path,
    embedder: Embedder,
    base_index: Path,
    golden: list[GoldenQuestion],
    n: int,
    embed_all: bool,
    rounds: int,
) -> dict[str, Any]:
    from rag.index import current_version

    version = current_version(base_index)
    assert version
    chunks, vectors = read_chunks(base_index, version)
    start = time.perf_counter()
    big_chunks, big_vectors = synthesize(chunks, vectors, n)
    if embed_all:
        big_vectors = embedder.encode([c.embed_text for c in big_chunks])
    synth_seconds = time.perf_counter() - start
    index = work / "scale-index"
    start = time.perf_counter()
    write_version(index, "scale", big_chunks, big_vectors, {"version": "scale", "embedder": embedder.label})
    publish(index, "scale")
    build_seconds = time.perf_counter() - start
    retriever = Retriever(index, RagConfig(), embedder=embedder)
    start = time.perf_counter()
    retriever.current()
    load_seconds = time.perf_counter() - start
    questions = [g.question for g in golden]
    for q in questions[:10]:  # warm-up
        retriever.search(q, k=5)
    embed_only, full, restricted = [], [], []
    for _ in range(rounds):
        for q in questions:
            t0 = time.perf_counter()
            embedder.encode_query(q)
            t1 = time.perf_counter()
            retriever.search(q, k=5)
            t2 = time.perf_counter()
            retriever.search(q, k=5, groups=["engineering"])
            t3 = time.perf_counter()
            embed_only.append((t1 - t0) * 1000)
            full.append((t2 - t1) * 1000)
            restricted.append((t3 - t2) * 1000)
    return {
        "chunks": len(big_chunks),
        "vectors": "embedded" if embed_all else "real handbook vectors + noise (see docstring)",
        "synthesize_s": round(synth_seconds, 1),
        "build_index_s": round(build_seconds, 1),
        "load_index_s": round(load_seconds, 2),
        "queries": len(full),
        "search_p50_ms": round(percentile(full, 50), 2),
        "search_p95_ms": round(percentile(full, 95), 2),
        "search_with_groups_p50_ms": round(percentile(restricted, 50), 2),
        "search_with_groups_p95_ms": round(percentile(restricted, 95), 2),
        "query_embedding_only_p50_ms": round(percentile(embed_only, 50), 2),
        "query_embedding_only_p95_ms": round(percentile(embed_only, 95), 2),
        "retrieval_overhead_p50_ms": round(percentile(full, 50) - percentile(embed_only, 50), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--golden", type=Path, default=CORPUS / "golden.jsonl")
    parser.add_argument("--scale-chunks", type=int, default=50_000)
    parser.add_argument(
        "--embed-synthetic", action="store_true", help="embed every synthetic chunk (~30 min)"
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--ingest-copies", type=int, default=3, help="handbook copies for the ingest figure")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the golden questions at scale")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval.json")
    args = parser.parse_args()

    import torch

    golden = load_golden(args.golden)
    embedder = Embedder()
    embedder.model()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "embedder": embedder.label,
        "golden": {"questions": len(golden), "answerable": sum(g.answerable for g in golden)},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        index = work / "handbook-index"
        report = ingest([CORPUS], index, RagConfig(), embedder=embedder)
        results["handbook"] = {"files": report.files_indexed, "chunks": report.chunks,
                               "skipped": [s for s, _ in report.skipped]}  # fmt: skip
        retriever = Retriever(index, RagConfig(), embedder=embedder, calibration=DEFAULT_CALIBRATION)
        results["quality"] = quality(retriever, golden)
        retriever.config = RagConfig()
        results["refusal"] = refusal(retriever, golden)
        print(json.dumps({k: results[k] for k in ("handbook", "quality", "refusal")}, indent=1), flush=True)
        results["ingest"] = ingest_speed(work, embedder, args.ingest_copies)
        print(json.dumps(results["ingest"], indent=1), flush=True)
        if not args.skip_scale:
            results["search_at_scale"] = search_speed(
                work, embedder, index, golden, args.scale_chunks, args.embed_synthetic, args.rounds
            )
            print(json.dumps(results["search_at_scale"], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
