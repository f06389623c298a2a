"""Feedback ingestion benchmark: many concurrent HTTP clients voting on loopback, nothing lost.

    python bench/feedback.py                      # two 20 s runs, ~1.5 min on 2 cores
    python bench/feedback.py --seconds 60 --clients 128

The server is the real `kbloop serve` in its own process (uvicorn, one worker), with a fresh data
directory whose feedback store is seeded with answers to vote on. Clients (one asyncio process, aiohttp)
keep `--clients` requests in flight for `--seconds`: thumbs up/down (with reasons and a comment on
some downs) on answers not voted on before, and every tenth request a correction. Every request must be
acknowledged (HTTP 200); afterwards the database must hold exactly one row per acknowledged request
(votes + corrections) — zero lost — and `PRAGMA integrity_check` must pass. Reported: acknowledged
events/s over the whole run, latency p50/p95/p99.

Run 2 repeats it while a "trainer" process reads the database in a loop (the preference, thumbs and SFT
exports the trainer's data snapshot uses), to show readers do not stall writers (WAL).
Targets: >= 1,000 events/s sustained, p99 < 100 ms, zero lost. Writes bench/results/feedback.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from feedback.records import AnswerRecord, RetrievedChunk  # noqa: E402
from feedback.store import Store  # noqa: E402
from feedback.timestamps import utc_now  # noqa: E402

REASONS = ["incorrect", "outdated", "incomplete", "not_helpful", "wrong_source", "too_long", "unsafe"]


def seed_answers(db: Path, n: int) -> list[str]:
    """n stored answers of the local user (the one every anonymous request acts as)."""
    ids = [f"bench-{i:06d}" for i in range(n)]
    with Store(db) as store:
        for i, answer_id in enumerate(ids):
            store.record_answer(
                AnswerRecord(
                    answer_id=answer_id,
                    conversation_id=f"c-{i}",
                    user_id="local",
                    created_at=utc_now(),
                    model_version="v0001",
                    index_version="bench",
                    prompt_template_hash="bench",
                    question=f"question {i}?",
                    messages=[{"role": "user", "content": f"question {i}?"}],
                    prompt=f"[1] passage {i}\n\nQuestion: question {i}?",
                    answer=f"answer {i} [1]",
                    refused=False,
                    confidence=0.9,
                    retrieved=[RetrievedChunk(1, f"chunk-{i}", "doc.md", "Section", 0.5)],
                    citations=[],
                    generation={"temperature": 0.3},
                    prompt_tokens=50,
                    completion_tokens=5,
                    latency_ms={"total": 100.0},
                    finish_reason="stop",
                )
            )
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path, port: int, model: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KBLOOP_DATA_DIR": str(data), "KBLOOP_PORT": str(port), "KBLOOP_HOST": "127.0.0.1",
           "KBLOOP_MODEL": model, "KBLOOP_MAX_BODY_KB": "64"}  # fmt: skip
    log = (data / "server.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "cli", "serve", "--log-level", "warning"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


async def wait_ready(base: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.time() + timeout
    async with httpx.AsyncClient() as http:
        while time.time() < deadline:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    state = (await http.get(f"{base}/readyz")).json()
                    if state["checks"]["store"] and state["checks"]["model"]:
                        return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError("the server did not start")


async def load(base: str, answer_ids: list[str], clients: int, seconds: float, seed: int) -> dict[str, Any]:
    """`clients` concurrent loops over keep-alive connections (aiohttp: httpx's async pool costs more
    CPU per request than the server does, and would measure itself)."""
    import aiohttp

    rng = random.Random(seed)
    todo = list(answer_ids)
    rng.shuffle(todo)
    latencies: list[float] = []
    acked = {"votes": 0, "corrections": 0}
    failures: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)

    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(30)) as http:

        async def client() -> None:
            while time.perf_counter() < stop_at and todo:
                answer_id = todo.pop()
                if rng.random() < 0.1:
                    kind, path = "corrections", f"/api/answers/{answer_id}/correction"
                    body: dict[str, Any] = {"text": f"the better answer to {answer_id} [1]"}
                else:
                    kind, path = "votes", f"/api/answers/{answer_id}/vote"
                    down = rng.random() < 0.4
                    body = {"value": "down" if down else "up"}
                    if down:
                        body["reasons"] = rng.sample(REASONS, rng.randint(0, 2))
                        if rng.random() < 0.3:
                            body["comment"] = "not what the handbook says"
                t0 = time.perf_counter()
                try:
                    headers = {"Idempotency-Key": f"{kind}-{answer_id}"}
                    async with http.post(path, json=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if status == 200:
                    acked[kind] += 1
                else:
                    failures[str(status)] = failures.get(str(status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1000, 1)

    total = acked["votes"] + acked["corrections"]
    return {
        "clients": clients, "seconds": round(wall, 1), "acknowledged": acked, "failures": failures,
        "events_per_s": round(total / wall, 1), "latency_p50_ms": pct(50), "latency_p95_ms": pct(95),
        "latency_p99_ms": pct(99),
    }  # fmt: skip


TRAINER_READER = """
import sys, time, io
sys.path.insert(0, {repo!r})
from feedback.store import Store
from feedback.export import export_preferences, export_thumbs, export_demonstrations
reads = 0
with Store({db!r}) as store:
    while True:
        for fn in (export_thumbs, export_demonstrations, export_preferences):
            fn(store, io.StringIO())
        reads += 1
        print(reads, flush=True)
"""


def count_rows(db: Path) -> dict[str, Any]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        votes = conn.execute("SELECT count(*) FROM votes").fetchone()[0]
        corrections = conn.execute("SELECT count(*) FROM corrections").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return {"votes": votes, "corrections": corrections, "integrity_check": integrity}


def run(
    model: str, clients: int, seconds: float, seeded: Path, ids: list[str], with_trainer: bool, seed: int
) -> dict[str, Any]:
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        db = data / "kbloop.db"
        shutil.copyfile(seeded, db)
        port = free_port()
        server = start_server(data, port, model)
        reader: subprocess.Popen[str] | None = None
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(base))
            if with_trainer:
                code = TRAINER_READER.format(repo=str(REPO), db=str(db))
                reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            result = asyncio.run(load(base, ids, clients, seconds, seed))
        finally:
            reads = 0
            if reader is not None:
                reader.send_signal(signal.SIGTERM)
                out, _ = reader.communicate(timeout=30)
                lines = out.split()
                reads = int(lines[-1]) if lines else 0
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        rows = count_rows(db)
    acked = result["acknowledged"]
    result["rows"] = rows
    result["lost"] = (acked["votes"] - rows["votes"]) + (acked["corrections"] - rows["corrections"])
    if with_trainer:
        result["trainer_export_passes"] = reads
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64, help="requests kept in flight")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--answers", type=int, default=30_000, help="answers seeded to vote on")
    parser.add_argument("--model", default="", help="policy folder (default: the converted bundled model)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "feedback.json")
    args = parser.parse_args()

    from registry.loading import base_model_path

    model = args.model or base_model_path("", REPO / "var" / "models")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; server, clients and reader share them",
    }
    with tempfile.TemporaryDirectory() as tmp:
        seeded = Path(tmp) / "seeded.db"
        ids = seed_answers(seeded, args.answers)  # closed: the WAL is checkpointed into the file
        results["alone"] = run(model, args.clients, args.seconds, seeded, ids, False, 1)
        print(json.dumps(results["alone"], indent=1), flush=True)
        results["with_trainer_reading"] = run(model, args.clients, args.seconds, seeded, ids, True, 2)
    print(json.dumps(results["with_trainer_reading"], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
