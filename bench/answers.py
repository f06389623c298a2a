"""Answer quality of the served champion on a corpus, every question asked over HTTP.

    python bench/answers.py --corpus examples/riverbend-water \
        --questions examples/riverbend-water/golden.jsonl
    python bench/answers.py --corpus examples/acme-handbook --questions bench/questions/extra-heldout.jsonl
    python bench/answers.py --corpus examples/riverbend-water --questions ... --limit 8      # a quick check
    python bench/answers.py --url http://127.0.0.1:8000 --data-dir var --questions ...     # a running server

By default the bench starts its own server: a fresh temporary data directory, `kbloop ingest` of the
corpus into it, `kbloop serve` in a subprocess on a free loopback port (one bench identity in a tokens
file, member of every access group the corpus uses, so restricted documents are answered too), waits for
/readyz, asks every question once (POST /v1/chat/completions, `--temperature` 0 and `--max-tokens` 160 by
default, one request at a time), then stops the server. `--url` asks a running server instead; its index
is read from `--data-dir` (or the KBLOOP_* settings) and `--token` is sent when given.

Each question carries `phrase`, a verbatim substring of its source document holding the key fact. Its
content words are its lowercased alphanumeric tokens minus rag.lexical.STOPWORDS (numbers count).
- answered right: not refused, and every content word of the phrase is in the answer;
- context held the answer: every content word of the phrase is in the passages that were put in the
  prompt (the top `answer_passages` passages of service.answering.retrieve, run in-process on the same
  index with the same Settings; their chunk ids are checked against the ones the server reports);
- degenerate: some word 4-gram occurs 3 or more times, a sentence of 3+ words is repeated, or 20+ words
  of which more than half are bare numbers (a count-off);
- echo: the answer holds "Question:" or a sentence of the prompt's instruction;
- invalid citations: a marker [n] with n outside 1..(passages shown);
- refusals: the server's `refused` flag or an answer saying the knowledge base does not cover it;
- latency: client-side wall time of each request, p50/p90;
- the extractive baseline, on the same passages: the 2 (and 3) sentences sharing most content words
  with the question, in document order, scored by the same "answered right" rule.
Rates come with 95% Wilson intervals (feedback.stats.wilson_interval).

Writes bench/results/answers-<corpus>.json (`--out`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import RagConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.feedback import free_port  # noqa: E402
from feedback.stats import wilson_interval  # noqa: E402
from rag.lexical import STOPWORDS  # noqa: E402
from rag.prompting import INSTRUCTION  # noqa: E402

_TOKEN = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKER = re.compile(r"\[(\d{1,3})\]")
_REFUSAL = re.compile(
    r"(knowledge base|passages?|documents?) (does|do) not (cover|answer|contain|mention)", re.I
)


# --- scoring: pure functions -------------------------------------------------------------------------


def content_words(text: str) -> list[str]:
    """Lowercased alphanumeric tokens that are not stopwords, in order, without repeats."""
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(text.lower()):
        if token not in STOPWORDS:
            seen.setdefault(token, None)
    return list(seen)


def holds(phrase: str, text: str) -> bool:
    """Every content word of `phrase` is a token of `text` (False for a phrase without content words)."""
    wanted = content_words(phrase)
    present = set(_TOKEN.findall(text.lower()))
    return bool(wanted) and all(w in present for w in wanted)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def degenerate(answer: str) -> bool:
    """A loop: some word 4-gram occurs 3+ times, a sentence of 3+ words occurs twice, or a count-off (20+
    words, more than half of them bare numbers: "1. 1. 2. 3. 4. ...")."""
    words = _WORD.findall(answer.lower())
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if grams and max(grams.values()) >= 3:
        return True
    if len(words) >= 20 and sum(w.isdigit() for w in words) * 2 > len(words):
        return True
    said = Counter(" ".join(_WORD.findall(s.lower())) for s in sentences(answer))
    return any(count >= 2 and len(s.split()) >= 3 for s, count in said.items())


def echoes(answer: str, instruction: str = INSTRUCTION) -> bool:
    """The answer repeats the prompt's scaffolding: "Question:" or one of the instruction's sentences."""
    if "question:" in answer.lower():
        return True
    flat = " ".join(answer.lower().split())
    return any(" ".join(s.lower().split()) in flat for s in sentences(instruction))


def invalid_citations(answer: str, shown: int) -> list[int]:
    """Citation markers [n] that point at no passage shown to the model (n < 1 or n > shown)."""
    return [n for n in (int(m) for m in _MARKER.findall(answer)) if n < 1 or n > shown]


def says_refusal(answer: str, instruction: str = INSTRUCTION) -> bool:
    """The answer says the knowledge base (or the passages) does not cover the question. An echo of the
    prompt is not a refusal: the text from "Question:" on and the instruction's sentences are ignored."""
    own = re.split(r"question:", answer, maxsplit=1, flags=re.I)[0]
    flat = " ".join(own.split())
    for sentence in sentences(instruction):
        flat = re.sub(re.escape(" ".join(sentence.split())), " ", flat, flags=re.I)
    return bool(_REFUSAL.search(flat))


def extractive(question: str, passages: list[str], n: int) -> str:
    """The `n` sentences of the passages sharing most content words with the question, in passage order
    (ties: the earlier sentence); "" when no sentence shares a word."""
    asked = set(content_words(question))
    pool = [s for text in passages for s in sentences(text)]
    scored = [(len(asked & set(content_words(s))), i) for i, s in enumerate(pool)]
    best = sorted((x for x in scored if x[0] > 0), key=lambda x: (-x[0], x[1]))[:n]
    return " ".join(pool[i] for _, i in sorted(best, key=lambda x: x[1]))


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {
        "n": successes,
        "of": trials,
        "rate": round(successes / trials, 3) if trials else None,
        "ci95": [round(low, 3), round(high, 3)],
    }


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    token: str | None
    settings: Any  # core.settings.Settings, for the in-process retrieval
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    setup: dict[str, Any] | None = None


def cli(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def corpus_groups(settings: Any) -> list[str]:
    """Every access group some chunk of the published index is restricted to."""
    from rag.search import Retriever

    version = Retriever(settings.resolved_index_dir, RagConfig.from_settings(settings)).current()
    return sorted({g for chunk in version.chunks for g in chunk.groups})


def wait_ready(base: str, process: subprocess.Popen[bytes] | None, timeout: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see its log")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} was not ready in {timeout:.0f} s")


def start(corpus: Path, data: Path, model: str) -> Server:
    from core.settings import Settings

    port = free_port()
    # no KBLOOP_MODEL for the bundled policy: a model folder named there is served by the transformers
    # engine under KBLOOP_BACKEND=auto, the bundled policy by llama.cpp (what `make run` serves)
    env = {**os.environ, "KBLOOP_DATA_DIR": str(data), "KBLOOP_HOST": "127.0.0.1", "KBLOOP_PORT": str(port),
           "KBLOOP_MODEL": model, "KBLOOP_TRAINER_AUTOSTART": "false"}  # fmt: skip
    if not model:
        env.pop("KBLOOP_MODEL")
    env.pop("KBLOOP_INDEX_DIR", None)
    env.pop("KBLOOP_TOKENS_FILE", None)
    started = time.perf_counter()
    cli(["ingest", "--quiet", str(corpus)], env)
    ingest_s = time.perf_counter() - started
    settings = Settings(data_dir=data, index_dir=None, tokens_file=None, model=model)
    groups = corpus_groups(settings)
    token = secrets.token_hex(16)
    tokens = data / "bench-tokens.json"
    tokens.write_text(json.dumps({token: {"user": "bench", "role": "employee", "groups": groups}}))
    env["KBLOOP_TOKENS_FILE"] = str(tokens)
    log = data / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--log-level", "warning"],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        wait_ready(base, process)
    except BaseException:
        stop(Server(base, token, settings, process, log))
        raise
    from service.generation.backends import choose_backend

    setup = {"ingest_s": round(ingest_s, 1), "server_ready_s": round(time.perf_counter() - started, 1),
             "model": model or "bundled", "backend": choose_backend(Settings(data_dir=data, model=model)),
             "groups": groups}  # fmt: skip
    return Server(base, token, settings, process, log, setup)


def stop(server: Server) -> dict[str, Any]:
    process = server.process
    if process is None:
        return {}
    process.send_signal(signal.SIGTERM)
    try:
        code: int | None = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        code = None
    tracebacks = server.log.read_text(errors="replace").count("Traceback") if server.log else None
    return {"exit_code": code, "log_tracebacks": tracebacks}


# --- asking --------------------------------------------------------------------------------------------


def load_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [q.get("id") for q in items if q.get("answerable", True) and "phrase" not in q]
    if missing:
        raise SystemExit(
            f"{path}: {len(missing)} answerable questions have no `phrase` (first: {missing[0]})"
        )
    return items[:limit] if limit else items


def ask_all(
    server: Server, questions: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    import httpx

    from rag.context import retrieve
    from rag.search import Retriever

    settings = server.settings
    retriever = Retriever(settings.resolved_index_dir, RagConfig.from_settings(settings))
    groups = corpus_groups(settings)
    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    records = []
    with httpx.Client(base_url=server.base, headers=headers, timeout=args.timeout) as http:
        for i, q in enumerate(questions, start=1):
            conversation = [{"role": "user", "content": q["question"]}]
            passages = retrieve(retriever, settings, conversation, groups).passages
            body = {"messages": conversation, "temperature": args.temperature, "max_tokens": args.max_tokens}
            started = time.perf_counter()
            response = http.post("/v1/chat/completions", json=body)
            latency = time.perf_counter() - started
            if response.status_code != 200:
                records.append({"id": q["id"], "status": response.status_code, "error": response.text[:500],
                                "answerable": q["answerable"], "latency_s": round(latency, 2)})  # fmt: skip
                print(f"[{i}/{len(questions)}] {q['id']}: HTTP {response.status_code}", flush=True)
                continue
            data = response.json()
            records.append(
                score(q, data, [p.text for p in passages], [p.chunk_id for p in passages], latency)
            )
            r = records[-1]
            print(f"[{i}/{len(questions)}] {q['id']} {latency:5.1f}s right={r['right']} "
                  f"context={r['context_held']} refused={r['refused']}", flush=True)  # fmt: skip
    return records


def score(
    q: dict[str, Any], data: dict[str, Any], texts: list[str], chunk_ids: list[str], latency: float
) -> dict[str, Any]:
    """One question's record: the answer and every check on it."""
    answer = data["choices"][0]["message"]["content"] or ""
    meta = data.get("kbloop", {})
    served = [p["chunk_id"] for p in meta.get("passages", [])]
    flagged = bool(meta.get("refused"))
    refused = flagged or says_refusal(answer)
    phrase = q.get("phrase", "")
    context = "\n".join(texts)
    answerable = bool(q["answerable"])
    record: dict[str, Any] = {
        "id": q["id"],
        "category": q.get("category"),
        "answerable": answerable,
        "status": 200,
        "question": q["question"],
        "phrase": phrase,
        "answer": answer,
        "latency_s": round(latency, 2),
        "refused": refused,
        "refused_by_server": flagged,
        "kind": meta.get("kind"),
        "confidence": meta.get("confidence"),
        "passages": chunk_ids,
        # the server shows no passages when it refuses before generating
        "passages_match_server": served == chunk_ids if served else None,
        "degenerate": degenerate(answer),
        "echo": echoes(answer),
        "invalid_citations": invalid_citations(answer, len(served) or len(chunk_ids)),
        "completion_tokens": data.get("usage", {}).get("completion_tokens"),
    }
    if answerable:
        record["right"] = not refused and holds(phrase, answer)
        record["context_held"] = holds(phrase, context)
        for n in (2, 3):
            baseline = extractive(q["question"], texts, n)
            record[f"extractive{n}"] = baseline
            record[f"extractive{n}_right"] = holds(phrase, baseline)
    else:
        record["right"] = refused
        record["context_held"] = None
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == 200]
    answerable = [r for r in ok if r["answerable"]]
    unanswerable = [r for r in ok if not r["answerable"]]
    held = [r for r in answerable if r["context_held"]]
    generated = [r for r in ok if not r["refused_by_server"]]
    latencies = [r["latency_s"] for r in ok]
    matched = [r["passages_match_server"] for r in ok if r["passages_match_server"] is not None]
    return {
        "questions": len(records),
        "http_errors": len(records) - len(ok),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answered_right": rate(sum(r["right"] for r in answerable), len(answerable)),
        "context_held": rate(len(held), len(answerable)),
        "right_when_context_held": rate(sum(r["right"] for r in held), len(held)),
        "extractive2_right": rate(sum(r["extractive2_right"] for r in answerable), len(answerable)),
        "extractive3_right": rate(sum(r["extractive3_right"] for r in answerable), len(answerable)),
        "wrong_refusals": rate(sum(r["refused"] for r in answerable), len(answerable)),
        "unanswerable_refused": rate(sum(r["refused"] for r in unanswerable), len(unanswerable)),
        "degenerate": rate(sum(r["degenerate"] for r in generated), len(generated)),
        "echo": rate(sum(r["echo"] for r in generated), len(generated)),
        "invalid_citations": rate(sum(bool(r["invalid_citations"]) for r in generated), len(generated)),
        "latency_s": {"p50": _round(percentile(latencies, 50)), "p90": _round(percentile(latencies, 90))},
        "passages_match_server": rate(sum(matched), len(matched)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def print_table(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"\n{result['questions_file']} on {result['corpus']}: {s['questions']} questions "
          f"({s['answerable']} answerable), HTTP errors {s['http_errors']}")  # fmt: skip
    rows = [
        ("answered right (answerable)", "answered_right"),
        ("context held the answer", "context_held"),
        ("  right when context held it", "right_when_context_held"),
        ("extractive baseline, 2 sentences", "extractive2_right"),
        ("extractive baseline, 3 sentences", "extractive3_right"),
        ("wrong refusals (answerable)", "wrong_refusals"),
        ("refused (unanswerable)", "unanswerable_refused"),
        ("degenerate (generated answers)", "degenerate"),
        ("echo (generated answers)", "echo"),
        ("invalid citation markers", "invalid_citations"),
        ("passages match the server's", "passages_match_server"),
    ]
    print(f"{'measure':36} {'count':>9} {'rate':>6}  95% CI")
    for label, key in rows:
        r = s[key]
        shown = "-" if r["rate"] is None else f"{r['rate']:.0%}"
        print(f"{label:36} {r['n']:>4}/{r['of']:<4} {shown:>6}  {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}")
    print(f"latency p50 {s['latency_s']['p50']} s, p90 {s['latency_s']['p90']} s (client side)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "examples" / "acme-handbook",
                        help="folder to ingest (own server) and to name the results after")  # fmt: skip
    parser.add_argument("--questions", type=Path, default=None,
                        help="JSONL with phrase (default: CORPUS/golden.jsonl)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/answers-<corpus>.json")
    parser.add_argument("--url", default=None, help="ask this running server instead of starting one")
    parser.add_argument("--data-dir", type=Path, default=None, help="with --url: the server's data dir")
    parser.add_argument("--token", default=None, help="with --url: bearer token to send")
    parser.add_argument("--model", default="", help="policy folder (default: the bundled one)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    args = parser.parse_args()
    questions_path = args.questions or args.corpus / "golden.jsonl"
    questions = load_questions(questions_path, args.limit)
    out = args.out or REPO / "bench" / "results" / f"answers-{args.corpus.resolve().name}.json"

    from core.settings import Settings

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kbloop-answers-") as tmp:
        if args.url:
            settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
            server = Server(args.url.rstrip("/"), args.token, settings, setup={"url": args.url})
            wait_ready(server.base, None, timeout=30)
        else:
            server = start(args.corpus, Path(tmp), args.model)
        try:
            records = ask_all(server, questions, args)
        finally:
            stopped = stop(server)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpu_cores": os.cpu_count(), "platform": platform.platform()},
        "corpus": str(args.corpus),
        "questions_file": str(questions_path),
        "params": {"temperature": args.temperature, "max_tokens": args.max_tokens, "limit": args.limit},
        "setup": server.setup,
        "server": stopped,
        "wall_s": round(time.perf_counter() - began, 1),
        "summary": summarize(records),
        "records": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print_table(result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
