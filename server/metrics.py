"""The server's Prometheus metrics (``/metrics``), in a registry of its own.

Owns: request counts and latency histograms per route (the route's template, e.g.
``/collections/{name}/ask``, so ids do not multiply the series), the ask queue depth, the batch sizes, and the
documents ingested (a counter: its rate is the ingest rate).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("memkit_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("memkit_http_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("memkit_ask_queue_depth", "Questions waiting for a batch", registry=r)
        self.batch_size = Histogram("memkit_ask_batch_size", "Questions answered together by one ask_many",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.ingested = Counter("memkit_ingest_documents", "Documents added by ingest jobs", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
