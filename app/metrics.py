"""Counters and histograms kept in each process's memory, for ``/metrics``.

Everything here is counted as it happens, never read back at scrape time: a
scrape costs the same with ten jobs in the store or a million.  Under
gunicorn, prometheus-client's multiprocess mode adds up every worker's values
(``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the app is
imported, and marks dead workers).

The request path calls one method per event (:meth:`Metrics.push_done` once per
delivery, which also writes the push's log line); the labelled children it
needs are looked up once and kept, so a push costs a dict lookup and a few
writes to a memory-mapped file.  The API client and the token cache, below the
app, send :data:`api_called` and :data:`token_refreshed`; :meth:`Metrics.watch`
connects an app's counters to its own client.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import prometheus_client
from blinker import Signal
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from . import process
from .logs import PUSH_LOGGER
from .messages import EVENT_TYPES, MESSAGE_TYPES, Event

if TYPE_CHECKING:
    from .messages import Push

prometheus_client.disable_created_metrics()
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each write to a multiprocess value checks the process id, to notice a fork: through
    # os.getpid, a system call, about six a push.  The cached id is reset after a fork too.
    prometheus_client.values.ValueClass = prometheus_client.values.MultiProcessValue(process_identifier=process.pid)

api_called = Signal("a call to the WeChat API was answered, or failed; sent with endpoint= and errcode=")
token_refreshed = Signal("the access token was fetched from WeChat, or the fetch failed; sent with outcome=")

STORE_OPERATIONS = (
    "claim_push",
    "get_push",
    "take_over",
    "finish_push",
    "finish_pushes",
    "mark_late",
    "take_held_reply",
    "lapsed_runs",
    "expired_holds",
    "sweep_values",
    "checkpoint",
    "renew_leases",
    "check_writable",
    "metrics",
)
REPLY, SUCCESS, RELEASED = "reply", "success", "released"  # what a delivery was answered with
LATE_MODES = {"hint": "retry", "customer_service": "customer_service"}  # the store's late marks -> the setting
# Seconds.  WeChat drops a delivery after 5 s; the app answers by WECHAT_REPLY_DEADLINE (4.5 s) or lets it go at 5.5 s.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 6.0)
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
CACHED_LABELS = 512  # label sets kept per counter; WeChat sends a few dozen push types

# Refusal reasons (the text of app.verify.Refusal) as a short label, by the words they start with.
REFUSAL_REASONS = (
    ("query", "query"),
    ("timestamp is not", "query"),
    ("encrypt_type", "query"),
    ("verification request", "query"),
    ("caller", "caller"),
    ("signature", "signature"),
    ("timestamp", "timestamp"),
    ("encrypted push while", "mode"),
    ("plaintext push while", "mode"),
    ("a method", "method"),
    ("body exceeds", "size"),
    ("content-length", "body"),
    ("body is not", "body"),
    ("encrypted push lacks msg_signature", "msg_signature"),
    ("msg_signature", "msg_signature"),
    ("encrypted push lacks encrypt", "encrypt"),
    ("encrypt does not decrypt", "encrypt"),
)

push_log = logging.getLogger(PUSH_LOGGER)  # one line per delivery; app.logs makes its arguments JSON fields


class Metrics:
    """One app's metrics, in a registry of its own (several apps may share a test process)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.pushes = Counter(
            "wechat_pushes",
            "Deliveries of pushes, by push type and what they were answered with.",
            ["type", "outcome"],
            registry=registry,
        )
        self.push_seconds = Histogram(
            "wechat_push_duration_seconds",
            "Seconds from a delivery's arrival to its answer.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "wechat_handler_duration_seconds",
            "Seconds a push's receivers took.",
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.handler_failures = Counter("wechat_handler_failures", "Receivers that raised.", registry=registry)
        self.refusals = Counter(
            "wechat_refusals",
            "Callback requests refused, by HTTP status and reason.",
            ["status", "reason"],
            registry=registry,
        )
        self.dedup_hits = Counter(
            "wechat_dedup_hits",
            "Repeated deliveries of a push, answered without running its handlers again.",
            registry=registry,
        )
        self.late_replies = Counter(
            "wechat_late_replies",
            "Replies not ready by a delivery's deadline, by WECHAT_LATE_REPLY and outcome.",
            ["mode", "outcome"],
            registry=registry,
        )
        self.held_replies = Counter(
            "wechat_held_replies",
            "Replies held for a follower's next message, taken or expired.",
            ["outcome"],
            registry=registry,
        )
        self.api_calls = Counter(
            "wechat_api_calls",
            "Calls to the WeChat API (each attempt), by endpoint and errcode.",
            ["endpoint", "errcode"],
            registry=registry,
        )
        self.token_refreshes = Counter(
            "wechat_token_refreshes",
            "Access tokens fetched from WeChat, or fetches that failed.",
            ["outcome"],
            registry=registry,
        )
        self.store_failures = Counter(
            "wechat_store_failures", "Store calls that failed, by operation.", ["operation"], registry=registry
        )
        self.internal_errors = Counter(
            "wechat_internal_errors",
            "Deliveries answered success after an error inside the server.",
            registry=registry,
        )
        for operation in STORE_OPERATIONS:
            self.store_failures.labels(operation)
        for outcome in ("fetched", "failed"):
            self.token_refreshes.labels(outcome)
        self._push_labels: dict[tuple[str, str | None, str], tuple[Any, str]] = {}
        self._refusal_labels: dict[tuple[int, str], Any] = {}

    # --- the request path -------------------------------------------------------

    def push_done(self, push: Push, answer: Any, arrived: float) -> None:
        """A delivery of ``push`` answered with ``answer`` (an :class:`app.pipeline.Answer`): count, time, log."""
        seconds = time.monotonic() - arrived
        outcome = RELEASED if answer.release else SUCCESS if answer.body == b"success" else REPLY
        key = (push.msg_type, getattr(push, "event", None), outcome)
        found = self._push_labels.get(key)
        if found is None:
            kind = push_type(push)
            found = (self.pushes.labels(kind, outcome), kind)
            if len(self._push_labels) < CACHED_LABELS:
                self._push_labels[key] = found
        found[0].inc()
        self.push_seconds.observe(seconds)
        if push_log.isEnabledFor(logging.INFO):
            push_log.info("push %s %s %s %.1fms", found[1], push.dedup_key, outcome, seconds * 1000)

    def handlers_ran(self, failures: int, seconds: float) -> None:
        """A push's receivers ran for ``seconds``; ``failures`` of them raised."""
        self.handler_seconds.observe(seconds)
        if failures:
            self.handler_failures.inc(failures)

    def refused(self, status: int, reason: str) -> None:
        child = self._refusal_labels.get((status, reason))
        if child is None:
            child = self.refusals.labels(str(status), refusal_reason(reason))
            if len(self._refusal_labels) < CACHED_LABELS:
                self._refusal_labels[(status, reason)] = child
        child.inc()

    def claimed(self, claim: Any) -> None:
        """A claim of a push in the store (an :class:`app.store.base.Claim`): a repeat is a dedup hit."""
        if not claim.runs:
            self.dedup_hits.inc()

    def late_reply(self, mark: str, marked: bool) -> None:
        """A delivery reached its deadline without the reply: its run marked ``mark`` late, or it just finished."""
        outcome = ("hint" if mark == "hint" else "deferred") if marked else "ready"
        self.late_replies.labels(LATE_MODES.get(mark, mark), outcome).inc()

    def held_reply(self, outcome: str) -> None:
        """A held reply ``taken`` by the follower's next message, or ``expired`` unread."""
        self.held_replies.labels(outcome).inc()

    def store_failed(self, operation: str) -> None:
        self.store_failures.labels(operation).inc()

    def internal_error(self) -> None:
        self.internal_errors.inc()

    # --- below the app: the API client --------------------------------------------

    def watch(self, client: Any) -> None:
        """Count the API calls and token refreshes of ``client`` (an :class:`app.client.WeChatClient`)."""
        api_called.connect(self._api_called, sender=client)
        token_refreshed.connect(self._token_refreshed, sender=client.tokens)

    def _api_called(self, sender: object, endpoint: str, errcode: int | None) -> None:
        self.api_calls.labels(endpoint, "transport" if errcode is None else str(errcode)).inc()

    def _token_refreshed(self, sender: object, outcome: str) -> None:
        self.token_refreshes.labels(outcome).inc()

    # --- the scrape -----------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, added up over every worker under gunicorn."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def push_type(push: Push) -> str:
    """The ``type`` label: the MsgType (``text``), or ``event:`` and the Event (``event:click``), in lower case;
    ``other`` and ``event:other`` for types this project does not know, so the label's values stay few."""
    if isinstance(push, Event):
        name = push.event.lower()
        return f"event:{name}" if name in EVENT_TYPES else "event:other"
    name = push.msg_type.lower()
    return name if name in MESSAGE_TYPES else "other"


def refusal_reason(reason: str) -> str:
    """The ``reason`` label of a refusal: which check refused it, in one word."""
    lowered = reason.lower()
    for start, label in REFUSAL_REASONS:
        if lowered.startswith(start):
            return label
    return "other"
