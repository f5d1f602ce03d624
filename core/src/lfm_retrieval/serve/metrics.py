"""Prometheus metrics of one server: requests, latency, queue depth, batch sizes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lfm_retrieval.encoders.microbatch import MicroBatcher

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """One registry per app, so two servers in one process (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lfm_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "lfm_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.in_flight = Gauge("lfm_requests_in_flight", "HTTP requests being handled", registry=self.registry)
        self.queue_depth = Gauge(
            "lfm_queue_depth", "Query requests waiting for a model call", ["model"], registry=self.registry
        )
        self.batch_texts = Histogram(
            "lfm_batch_texts",
            "Texts per coalesced model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "lfm_batch_requests",
            "Requests per coalesced model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "lfm_batch_seconds", "Model call time", ["model"], buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def watch(self, name: str, batcher: MicroBatcher) -> None:
        """Export ``batcher``'s queue depth and every model call's size and time under ``name``."""
        self.queue_depth.labels(name).set_function(lambda: batcher.queue_depth)
        texts, requests, seconds = (m.labels(name) for m in (self.batch_texts, self.batch_requests, self.batch_seconds))

        def observe(n_texts: int, n_requests: int, elapsed: float) -> None:
            texts.observe(n_texts)
            requests.observe(n_requests)
            seconds.observe(elapsed)

        batcher.add_listener(observe)
