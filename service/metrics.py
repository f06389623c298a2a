"""Prometheus metrics of one app instance (its own registry, so tests and several apps don't collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
RATE_BUCKETS = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "kbloop_request_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "kbloop_time_to_first_token_seconds", "From request to the first answer token", ["model_version"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens_per_second = Histogram(
            "kbloop_decode_tokens_per_second", "Decode speed of each answer", ["model_version"],
            buckets=RATE_BUCKETS, registry=r,
        )  # fmt: skip
        self.generated_tokens = Counter(
            "kbloop_generated_tokens", "Completion tokens generated", ["model_version"], registry=r
        )
        self.retrieval_latency = Histogram(
            "kbloop_retrieval_seconds", "Search latency per answer", buckets=FAST_BUCKETS, registry=r
        )
        self.answers = Counter("kbloop_answers", "Answers given", ["model_version", "outcome"], registry=r)
        self.refusals = Counter("kbloop_refusals", "Questions refused as not covered", registry=r)
        self.errors = Counter("kbloop_errors", "Error responses by code", ["code"], registry=r)
        self.queue_depth = Gauge("kbloop_queue_depth", "Generations waiting for the engine", registry=r)
        self.active = Gauge("kbloop_active_generations", "Generations being decoded", registry=r)

    def track_engine(self, depth: Callable[[], float], active: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
        self.active.set_function(active)

    def render(self) -> bytes:
        return generate_latest(self.registry)
