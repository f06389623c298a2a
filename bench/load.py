"""Load test: chat, streaming chat and feedback at once against the real server, for minutes, nothing lost.

    python bench/load.py                                  # 5 minutes of load (+ ~1 min setup and drain)
    python bench/load.py --duration 30 --out /tmp/load-smoke.json     # quick check
    python bench/load.py --max-batch 2 --queue-size 1     # a tiny queue: exercise the 503 + Retry-After path

The server is the real `kbloop serve` in its own process (uvicorn, one worker) on a free loopback port,
with a fresh data directory: the sample handbook (examples/acme-handbook) ingested by `kbloop ingest`,
the bundled SmolLM2-135M policy (converted once into var/models, as bench/feedback.py uses it) and a
feedback store seeded with `--seed-answers` answers to vote on from the first second.

Virtual users (one asyncio process, aiohttp), each in a closed loop with an exponential think time:
- `chat`: POST /v1/chat/completions, non-streaming, a golden question (the unanswerable ones included:
  they are refused without running the model, as in real use), `--max-tokens` new tokens;
- `stream`: the same with `stream: true`, server-sent events read to `data: [DONE]`; also the time to the
  first content chunk (TTFT);
- `compare`: POST /api/compare (two answers to one answerable question) then `choice` on the pair; a
  question the knowledge base refuses is answered 422 by design: counted as `refused`, not an error;
- `vote` and `correction`: the `--feedback-users` vote (up/down/none, reasons, comments) and correct, on
  answers given during the run or on the seeded ones, each write with its own Idempotency-Key.

Per kind: attempts, successes, 503s that carry Retry-After (queue full, store busy: intended back-pressure;
the client waits Retry-After and retries the same request, same key) by error code, every other failure
(errors: must be zero), latency p50/p95/p99 of the successful attempts. New requests stop at
`--duration`; the ones in flight then finish (at most `--drain-s`). The server's resident memory (RSS) is
sampled every `--sample-s` s: start (after a warm-up answer), middle, end, peak, and the least-squares
slope in MB/min over the whole run and over its second half. After the server has stopped, the SQLite
store is opened read-only and every acknowledged write is looked up by the ids it returned: answers
(answer_id), votes (a vote event with the answer, value and time returned), corrections (correction_id),
choices (comparison_id with that choice) -> "acknowledged lost"; plus `PRAGMA integrity_check`.

Exit status 1 when there were errors or a lost write. Writes bench/results/load.json (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.feedback import REASONS, free_port, seed_answers  # noqa: E402  (the feedback bench's seeding)

CORPUS = REPO / "examples" / "acme-handbook"
KINDS = ("chat", "stream", "compare", "choice", "vote", "correction")
MAX_ATTEMPTS = 20  # per request, counting the retries after a 503 with Retry-After
MAX_RETRY_WAIT_S = 30.0


@dataclass
class KindStats:
    attempts: int = 0
    ok: int = 0
    shed: Counter[str] = field(default_factory=Counter)  # 503 + Retry-After, by error code
    errors: Counter[str] = field(default_factory=Counter)  # everything else that failed
    error_samples: list[str] = field(default_factory=list)
    refused: int = 0  # chat: answered "not covered"; compare: 422 for such a question (by design)
    gave_up: int = 0  # still shed after MAX_ATTEMPTS, or shed after the end of the run
    cancelled: int = 0  # still in flight when the drain time ran out
    latencies: list[float] = field(default_factory=list)  # seconds, successful attempts
    ttft: list[float] = field(default_factory=list)  # stream: seconds to the first content chunk

    def error(self, key: str, detail: str) -> None:
        self.errors[key] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{key}: {detail[:300]}")

    def summary(self, wall_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempts": self.attempts,
            "ok": self.ok,
            "ok_per_s": round(self.ok / wall_s, 2),
            "shed_503": dict(self.shed),
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "refused": self.refused,
            "gave_up": self.gave_up,
            "cancelled_at_end": self.cancelled,
            **latency_summary(self.latencies, "latency"),
        }
        if self.ttft:
            out.update(latency_summary(self.ttft, "ttft"))
        return out


def latency_summary(values: list[float], name: str) -> dict[str, float | None]:
    if not values:
        return {f"{name}_p50_ms": None, f"{name}_p95_ms": None, f"{name}_p99_ms": None}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000, 1)

    return {f"{name}_p50_ms": pct(50), f"{name}_p95_ms": pct(95), f"{name}_p99_ms": pct(99)}


@dataclass
class Acks:
    """Every write the server acknowledged with a 2xx, by the ids it returned."""

    answers: set[str] = field(default_factory=set)
    votes: list[tuple[str, str, str]] = field(default_factory=list)  # (answer_id, value, updated_at)
    corrections: list[str] = field(default_factory=list)
    choices: list[tuple[str, str]] = field(default_factory=list)  # (comparison_id, choice)


class Shed(Exception):
    """A 503 with Retry-After: wait that long and send the same request again."""

    def __init__(self, code: str, retry_after: float) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


class Failed(Exception):
    def __init__(self, key: str, detail: str) -> None:
        super().__init__(key)
        self.key = key
        self.detail = detail


# --- the server -----------------------------------------------------------------------------------


def server_env(data: Path, port: int, args: argparse.Namespace, model: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KBLOOP_DATA_DIR": str(data),
        "KBLOOP_HOST": "127.0.0.1",
        "KBLOOP_PORT": str(port),
        "KBLOOP_MODEL": model,
        "KBLOOP_TRAINER_AUTOSTART": "false",
    }
    env.pop("KBLOOP_TOKENS_FILE", None)  # local anonymous mode: every request is the user "local"
    env.pop("KBLOOP_INDEX_DIR", None)
    if args.max_batch:
        env["KBLOOP_MAX_BATCH"] = str(args.max_batch)
    if args.queue_size:
        env["KBLOOP_QUEUE_SIZE"] = str(args.queue_size)
    return env


def ingest(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cli", "ingest", "--quiet", str(CORPUS)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


async def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 600) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(base) as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited ({server.returncode}); see its log")
            try:
                async with http.get("/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError("the server was not ready in time")


class RssSampler:
    """The server process's resident memory (and CPU time), every `every` seconds."""

    def __init__(self, pid: int, every: float) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, float, float]] = []  # (seconds since start, RSS MB, CPU s)
        self.started = time.monotonic()

    def sample(self) -> None:
        rss = self.process.memory_info().rss / 2**20
        cpu = self.process.cpu_times()
        self.samples.append((time.monotonic() - self.started, rss, cpu.user + cpu.system))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
        self.sample()

    def summary(self) -> dict[str, Any]:
        s = self.samples
        if not s:
            return {}
        mid = s[len(s) // 2]
        second_half = s[len(s) // 2 :]
        elapsed = s[-1][0] - s[0][0]
        return {
            "samples": len(s),
            "every_s": self.every,
            "start_mb": round(s[0][1], 1),
            "middle_mb": round(mid[1], 1),
            "end_mb": round(s[-1][1], 1),
            "peak_mb": round(max(x[1] for x in s), 1),
            "slope_mb_per_min": slope([(x[0], x[1]) for x in s]),
            "slope_second_half_mb_per_min": slope([(x[0], x[1]) for x in second_half]),
            "server_cpu_s": round(s[-1][2] - s[0][2], 1),
            "server_cpu_share_of_wall": round((s[-1][2] - s[0][2]) / elapsed, 2) if elapsed else None,
            "series": [[round(t, 1), round(mb, 1)] for t, mb, _ in s],
        }


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of MB over time, in MB per minute."""
    if len(points) < 3:
        return None
    fit = statistics.linear_regression([p[0] for p in points], [p[1] for p in points])
    return round(fit.slope * 60, 2)


# --- the virtual users ----------------------------------------------------------------------------


class Load:
    def __init__(
        self, http: Any, args: argparse.Namespace, questions: list[dict[str, Any]], seeded: list[str]
    ):
        self.http = http
        self.args = args
        self.questions = questions
        self.answerable = [q["question"] for q in questions if q.get("answerable", True)]
        self.seeded = seeded
        self.stats = {kind: KindStats() for kind in KINDS}
        self.acks = Acks()
        self.fresh_answers: list[str] = []  # answered during the run: voted and corrected on too
        self.deadline = 0.0
        self.rng = random.Random(args.seed)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def think(self, mean_s: float) -> None:
        pause = self.rng.expovariate(1 / mean_s) if mean_s > 0 else 0.0
        await asyncio.sleep(max(0.0, min(pause, self.deadline - time.monotonic())))

    async def request(
        self,
        kind: str,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Any:
        """POST until answered: the JSON body (or, streamed, the final chunk) of a 2xx; None after a
        failure, which is counted. A 503 with Retry-After is waited out and sent again (same body and
        Idempotency-Key) while the run lasts."""
        import aiohttp

        stats = self.stats[kind]
        try:
            for _ in range(MAX_ATTEMPTS):
                stats.attempts += 1
                started = time.perf_counter()
                try:
                    result = await (
                        self._stream(path, body, started) if stream else self._post(path, body, headers)
                    )
                except Shed as shed:
                    stats.shed[shed.code] += 1
                    if not self.running():
                        stats.gave_up += 1
                        return None
                    await asyncio.sleep(min(shed.retry_after, MAX_RETRY_WAIT_S))
                    continue
                except Failed as failed:
                    if (
                        kind == "compare"
                        and failed.key == "422 invalid_request"
                        and "not cover" in failed.detail
                    ):
                        stats.refused += 1  # the knowledge base does not cover it: nothing to compare
                        return None
                    stats.error(failed.key, failed.detail)
                    return None
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                    stats.error(type(exc).__name__, str(exc))
                    return None
                stats.ok += 1
                stats.latencies.append(time.perf_counter() - started)
                if stream:
                    ttft, result = result
                    if ttft is not None:
                        stats.ttft.append(ttft)
                return result
            stats.gave_up += 1
            return None
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None) -> Any:
        async with self.http.post(path, json=body, headers=headers) as response:
            raw = await response.read()
            self._check(response, raw)
            return json.loads(raw)

    async def _stream(self, path: str, body: dict[str, Any], started: float) -> tuple[float | None, Any]:
        ttft: float | None = None
        final: Any = None
        async with self.http.post(path, json=body) as response:
            if response.status != 200:
                self._check(response, await response.read())
            async for line in response.content:
                text = line.decode().strip()
                if not text.startswith("data: "):
                    continue
                data = text.removeprefix("data: ")
                if data == "[DONE]":
                    if final is None:
                        raise Failed("stream ended without a final chunk", "")
                    return ttft, final
                chunk = json.loads(data)
                if "error" in chunk:
                    raise Failed(f"stream error {chunk['error'].get('code')}", json.dumps(chunk["error"]))
                if ttft is None and chunk["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - started
                if "kbloop" in chunk:
                    final = chunk
        raise Failed("stream ended without [DONE]", "")

    @staticmethod
    def _check(response: Any, raw: bytes) -> None:
        if 200 <= response.status < 300:
            return
        try:
            error = json.loads(raw)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "unparsed", raw.decode(errors="replace")
        retry_after = response.headers.get("Retry-After")
        if response.status == 503 and retry_after is not None:
            raise Shed(code, float(retry_after))
        raise Failed(f"{response.status} {code}", message)

    def _chat_body(self, question: str, stream: bool) -> dict[str, Any]:
        return {
            "messages": [{"role": "user", "content": question}],
            "max_tokens": self.args.max_tokens,
            "stream": stream,
        }

    def _answered(self, kind: str, answer: dict[str, Any]) -> None:
        answer_id = answer["kbloop"]["answer_id"]
        self.acks.answers.add(answer_id)
        self.fresh_answers.append(answer_id)
        if answer["kbloop"].get("refused"):
            self.stats[kind].refused += 1

    async def chat_user(self, stream: bool) -> None:
        kind = "stream" if stream else "chat"
        while self.running():
            question = self.rng.choice(self.questions)["question"]
            answer = await self.request(
                kind, "/v1/chat/completions", self._chat_body(question, stream), stream=stream
            )
            if answer is not None:
                self._answered(kind, answer)
            await self.think(self.args.chat_think_s)

    async def compare_user(self) -> None:
        while self.running():
            body = {"question": self.rng.choice(self.answerable), "max_tokens": self.args.max_tokens}
            key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
            pair = await self.request("compare", "/api/compare", body, key)
            if pair is not None:
                for side in ("left", "right"):
                    self.acks.answers.add(pair[side]["answer_id"])
                    self.fresh_answers.append(pair[side]["answer_id"])
                choice = self.rng.choice(["A", "B", "A", "B", "tie", "both_bad"])
                path = f"/api/compare/{pair['comparison_id']}/choice"
                key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
                chosen = await self.request("choice", path, {"choice": choice}, key)
                if chosen is not None:
                    self.acks.choices.append((chosen["comparison_id"], chosen["choice"]))
            await self.think(self.args.compare_think_s)

    async def feedback_user(self) -> None:
        while self.running():
            pool = self.fresh_answers if self.fresh_answers and self.rng.random() < 0.5 else self.seeded
            answer_id = self.rng.choice(pool)
            key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
            if self.rng.random() < self.args.correction_share:
                text = f"What the handbook says about it [1] ({answer_id})."
                path = f"/api/answers/{answer_id}/correction"
                stored = await self.request("correction", path, {"text": text}, key)
                if stored is not None:
                    self.acks.corrections.append(stored["correction_id"])
            else:
                value = self.rng.choice(["up", "up", "down", "none"])
                body: dict[str, Any] = {"value": value}
                if value == "down":
                    body["reasons"] = self.rng.sample(REASONS, self.rng.randint(0, 2))
                    if self.rng.random() < 0.3:
                        body["comment"] = "not what the handbook says"
                stored = await self.request("vote", f"/api/answers/{answer_id}/vote", body, key)
                if stored is not None:
                    self.acks.votes.append((stored["answer_id"], stored["value"], stored["updated_at"]))
            await self.think(self.args.feedback_think_s)

    async def run(self, duration: float, drain_s: float) -> float:
        a = self.args
        users = [self.chat_user(False) for _ in range(a.chat_users)]
        users += [self.chat_user(True) for _ in range(a.stream_users)]
        users += [self.compare_user() for _ in range(a.compare_users)]
        users += [self.feedback_user() for _ in range(a.feedback_users)]
        started = time.monotonic()
        self.deadline = started + duration
        tasks = [asyncio.create_task(u) for u in users]
        _, pending = await asyncio.wait(tasks, timeout=duration + drain_s)
        for task in pending:  # still waiting for an answer when the drain time ran out
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return time.monotonic() - started


async def scrape_errors(base: str) -> dict[str, float]:
    """The server's own count of error responses by code (kbloop_errors_total)."""
    import aiohttp

    async with aiohttp.ClientSession(base) as http, http.get("/metrics") as response:
        text = await response.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kbloop_errors_total{"):
            labels, _, value = line.rpartition(" ")
            out[labels.removeprefix("kbloop_errors_total")] = float(value)
    return out


async def drive(
    base: str,
    args: argparse.Namespace,
    questions: list[dict[str, Any]],
    seeded: list[str],
    sampler: RssSampler,
) -> dict[str, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=args.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:
        load = Load(http, args, questions, seeded)
        load.deadline = time.monotonic() + args.request_timeout_s
        warm_started = time.perf_counter()
        warm = await load.request(
            "chat", "/v1/chat/completions", load._chat_body(answerable_first(questions), False)
        )
        warmup_s = time.perf_counter() - warm_started
        if warm is None:
            raise RuntimeError(f"the warm-up answer failed: {load.stats['chat'].summary(1)}")
        load.acks.answers.add(warm["kbloop"]["answer_id"])
        load.stats["chat"] = KindStats()  # the warm-up is not part of the measurement
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler_from_now(sampler, stop))
        wall = await load.run(args.duration, args.drain_s)
        stop.set()
        await sampling
    server_errors = await scrape_errors(base)
    return {"load": load, "wall_s": wall, "warmup_s": warmup_s, "server_errors": server_errors}


async def sampler_from_now(sampler: RssSampler, stop: asyncio.Event) -> None:
    sampler.started = time.monotonic()
    await sampler.run(stop)


def answerable_first(questions: list[dict[str, Any]]) -> str:
    return next(q["question"] for q in questions if q.get("answerable", True))


# --- after the run: is every acknowledged write in the store? ----------------------------------------


def verify(db: Path, acks: Acks) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        answers = {row[0] for row in conn.execute("SELECT answer_id FROM answers")}
        events = set(
            conn.execute("SELECT answer_id, value, created_at FROM vote_events WHERE user_id = 'local'")
        )
        corrections = {row[0] for row in conn.execute("SELECT correction_id FROM corrections")}
        choices = set(conn.execute("SELECT comparison_id, choice FROM comparisons WHERE choice IS NOT NULL"))
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    lost: dict[str, list[Any]] = {
        "answers": sorted(acks.answers - answers),
        "votes": [v for v in acks.votes if v not in events],
        "corrections": [c for c in acks.corrections if c not in corrections],
        "choices": [c for c in acks.choices if c not in choices],
    }
    acknowledged = {
        "answers": len(acks.answers),
        "votes": len(acks.votes),
        "corrections": len(acks.corrections),
        "choices": len(acks.choices),
    }
    return {
        "acknowledged": acknowledged,
        "acknowledged_lost": sum(len(v) for v in lost.values()),
        "lost": {k: v[:20] for k, v in lost.items() if v},
        "integrity_check": integrity,
    }


# --- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from registry.loading import base_model_path

    model = args.model or base_model_path("", REPO / "var" / "models")
    questions = [
        json.loads(line) for line in (CORPUS / "golden.jsonl").read_text().splitlines() if line.strip()
    ]
    with tempfile.TemporaryDirectory(prefix="kbloop-load-") as tmp:
        data = Path(tmp)
        port = free_port()
        env = server_env(data, port, args, model)
        ingest_s = ingest(env)
        seeded = seed_answers(data / "kbloop.db", args.seed_answers)
        log_path = data / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--log-level", "warning"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            started = time.perf_counter()
            asyncio.run(wait_ready(base, server))
            ready_s = time.perf_counter() - started
            sampler = RssSampler(server.pid, args.sample_s)
            print(
                f"server ready in {ready_s:.1f} s (ingest {ingest_s:.1f} s); {args.duration:.0f} s of load",
                flush=True,
            )
            outcome = asyncio.run(drive(base, args, questions, seeded, sampler))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                exit_code: int | None = server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                exit_code = None
        log_text = log_path.read_text(errors="replace")
        load: Load = outcome["load"]
        checked = verify(data / "kbloop.db", load.acks)
    wall = outcome["wall_s"]
    kinds = {kind: load.stats[kind].summary(wall) for kind in KINDS}
    return {
        "setup": {
            "ingest_s": round(ingest_s, 1),
            "server_ready_s": round(ready_s, 1),
            "warmup_answer_s": round(outcome["warmup_s"], 1),
            "model": model,
        },
        "wall_s": round(wall, 1),
        "kinds": kinds,
        "errors_total": sum(sum(k["errors"].values()) for k in kinds.values()),
        "shed_503_total": sum(sum(k["shed_503"].values()) for k in kinds.values()),
        "memory": sampler.summary(),
        "store": checked,
        "server": {
            "exit_code": exit_code,
            # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done
            "stopped_cleanly": exit_code in (0, -signal.SIGTERM),
            "errors_by_code": outcome["server_errors"],
            "log_tracebacks": log_text.count("Traceback"),
        },
    }


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"\n{'kind':<11}{'attempts':>9}{'ok':>7}{'ok/s':>7}{'503':>6}{'errors':>7}{'refused':>8}"
        f"{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
    )
    for kind, k in result["kinds"].items():

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:,.0f}"

        print(
            f"{kind:<11}{k['attempts']:>9}{k['ok']:>7}{k['ok_per_s']:>7}{sum(k['shed_503'].values()):>6}"
            f"{sum(k['errors'].values()):>7}{k['refused']:>8}{ms(k['latency_p50_ms']):>10}"
            f"{ms(k['latency_p95_ms']):>10}{ms(k['latency_p99_ms']):>10}"
        )
    stream = result["kinds"]["stream"]
    if stream.get("ttft_p50_ms") is not None:
        p50, p95 = stream["ttft_p50_ms"], stream["ttft_p95_ms"]
        print(f"stream time to first token: p50 {p50:,.0f} ms, p95 {p95:,.0f} ms")
    for kind, k in result["kinds"].items():
        for sample in k["error_samples"]:
            print(f"  error ({kind}) {sample}")
    m = result["memory"]
    print(
        f"server RSS: start {m['start_mb']} MB, middle {m['middle_mb']} MB, end {m['end_mb']} MB, peak "
        f"{m['peak_mb']} MB; slope {m['slope_mb_per_min']} MB/min ({m['slope_second_half_mb_per_min']} over "
        f"the second half; {m['samples']} samples)"
    )
    s = result["store"]
    print(
        f"acknowledged writes: {s['acknowledged']}; acknowledged lost: {s['acknowledged_lost']}; "
        f"integrity_check: {s['integrity_check']}"
    )
    server = result["server"]
    print(
        f"errors: {result['errors_total']}; 503 with Retry-After: {result['shed_503_total']}; server stopped "
        f"cleanly: {server['stopped_cleanly']} (exit code {server['exit_code']}), tracebacks in its log: "
        f"{server['log_tracebacks']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--duration", type=float, default=300, help="seconds during which users start new requests")
    add("--drain-s", type=float, default=240, help="at most this long for the requests in flight at the end")
    add("--chat-users", type=int, default=3, help="users asking non-streaming questions")
    add("--stream-users", type=int, default=1, help="users asking with stream: true")
    add("--compare-users", type=int, default=1, help="users asking for side-by-side pairs, then choosing")
    add("--feedback-users", type=int, default=8, help="users voting and correcting")
    add("--chat-think-s", type=float, default=2.0, help="mean pause between a chat user's questions")
    add("--compare-think-s", type=float, default=5.0, help="mean pause between a compare user's pairs")
    add("--feedback-think-s", type=float, default=0.5, help="mean pause between a feedback user's writes")
    add("--correction-share", type=float, default=0.2, help="share of feedback writes that are corrections")
    add("--max-tokens", type=int, default=64, help="new tokens per answer")
    add("--seed-answers", type=int, default=2000, help="answers seeded in the store to vote on")
    add("--max-batch", type=int, default=0, help="KBLOOP_MAX_BATCH for the server (0: its default)")
    add("--queue-size", type=int, default=0, help="KBLOOP_QUEUE_SIZE for the server (0: its default)")
    add("--request-timeout-s", type=float, default=300, help="client timeout per attempt")
    add("--sample-s", type=float, default=5, help="seconds between RSS samples")
    add("--seed", type=int, default=1)
    add("--model", default="", help="policy folder (default: the converted bundled model in var/models)")
    add("--out", type=Path, default=REPO / "bench" / "results" / "load.json")
    args = parser.parse_args()

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; server and clients share them",
        "command": " ".join(["python", "bench/load.py", *sys.argv[1:]]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **run(args),
    }
    print_summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if result["errors_total"] or result["store"]["acknowledged_lost"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
