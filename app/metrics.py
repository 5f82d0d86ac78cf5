"""Counters kept in each process's memory, for ``/metrics``.

They count what must be counted even when the store is failing (a counter kept
in the failing store cannot count that store's failures) and what must cost no
store write (a refused request).  Under gunicorn, prometheus-client's
multiprocess mode adds up every worker's values: ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` and marks dead workers.
"""

from __future__ import annotations

import os

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

prometheus_client.disable_created_metrics()

REFUSAL_STATUSES = ("400", "403", "405", "413")
STORE_OPERATIONS = ("claim_push", "finish_push", "push_outcome", "check_writable", "metrics")


class Metrics:
    """One app's counters, in a registry of its own (several apps may share a test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.refusals = Counter(
            "wechat_refusals", "Callback requests refused, by HTTP status.", ["status"], registry=self.registry
        )
        self.handler_failures = Counter("wechat_handler_failures", "Receivers that raised.", registry=self.registry)
        self.store_failures = Counter(
            "wechat_store_failures", "Store calls that failed, by operation.", ["operation"], registry=self.registry
        )
        for status in REFUSAL_STATUSES:
            self.refusals.labels(status)
        for operation in STORE_OPERATIONS:
            self.store_failures.labels(operation)

    def exposition(self) -> bytes:
        """The counters in Prometheus' text format, added up over every worker under gunicorn."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
