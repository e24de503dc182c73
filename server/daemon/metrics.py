"""The daemon's Prometheus metrics (`GET /metrics`), on a registry of its own.

Requests by endpoint and status, latency histograms, tokens, prompt-cache hits, cancellations,
queue depth and model worker restarts; plus the process's own (RSS, threads, open files) so that
a leak shows on a dashboard before it shows on the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from server.daemon.protocol import Answer

# Completion latency spans a warm one-line suggestion (tens of ms) to a cold multi-line one on a
# CPU (tens of seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Restarts(Collector):
    """Model worker restarts, read from the backend when scraped (it counts them itself)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "infiller_model_worker_restarts", "Times the model worker process was restarted after dying."
        )
        family.add_metric([], self._read())
        yield family


class Metrics:
    def __init__(self, restarts: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "infiller_requests",
            "HTTP requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "infiller_request_duration_seconds",
            "Time from request to the last byte of the reply, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("infiller_prompt_tokens", "Prompt tokens sent to the model.", registry=r)
        self.reused_tokens = Counter(
            "infiller_prompt_tokens_reused", "Prompt tokens served from the model's KV cache.", registry=r
        )
        self.generated_tokens = Counter("infiller_generated_tokens", "Tokens generated.", registry=r)
        self.cache_hits = Counter(
            "infiller_prompt_cache_hits",
            "Generations that reused part of the previous prompt's KV cache.",
            registry=r,
        )
        self.typed_through = Counter(
            "infiller_typed_through",
            "FIM requests answered from an earlier answer the client typed into (no model run).",
            registry=r,
        )
        self.cancellations = Counter(
            "infiller_cancellations",
            "Generations cancelled, by reason (disconnect, shutdown).",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter(
            "infiller_rejected_busy", "Requests refused with 503 because the queue was full.", registry=r
        )
        self.queue_depth = Gauge(
            "infiller_queue_depth", "Generations waiting for or holding the model.", registry=r
        )
        self.model_ready = Gauge("infiller_model_ready", "1 once the model is loaded.", registry=r)
        self.threads = Gauge("infiller_threads", "Live Python threads in the daemon.", registry=r)
        self.threads.set_function(lambda: threading.active_count())
        r.register(_Restarts(restarts))
        ProcessCollector(registry=r)

    def record_answer(self, answer: Answer) -> None:
        self.prompt_tokens.inc(answer.prompt_tokens)
        self.reused_tokens.inc(answer.reused_tokens)
        self.generated_tokens.inc(answer.generated_tokens)
        if answer.reused_tokens > 0:
            self.cache_hits.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
