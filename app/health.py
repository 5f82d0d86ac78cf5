"""Health and metrics endpoints for the operator's probes.

``/healthz`` answers ``{"status": "ok"}`` or, with 503, ``{"status": "unavailable"}``:
a stranger learns no more than that; the reason goes to the log.  It probes
what pushes need, a write to the store within ``WECHAT_HEALTH_TIMEOUT``, so a
full disk, a read-only file or a lock held too long all show.

``/metrics`` speaks Prometheus' text format: the in-memory counters of
:mod:`app.metrics` (every worker's, under gunicorn), then what the store holds.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify

from .jobs import KINDS, STATUSES
from .state import get_state

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    """200 when the store takes a write in time, 503 when it does not."""
    state = get_state()
    try:
        state.store.check_writable(state.settings.health_timeout, state.settings.health_min_free_bytes)
    except Exception as exc:
        state.metrics.store_failures.labels("check_writable").inc()
        state.throttle.log(log, logging.ERROR, "healthz", "health check: the store cannot take a write: %s", exc)
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")


@blueprint.get("/metrics")
def metrics():
    state = get_state()
    text = state.metrics.exposition().decode()
    try:
        text += from_store(state)
    except Exception as exc:
        state.metrics.store_failures.labels("metrics").inc()
        state.throttle.log(log, logging.ERROR, "metrics", "metrics: the store does not answer: %s", exc)
        text += "# the store did not answer: jobs and token state left out\n"
    return Response(text, mimetype="text/plain; version=0.0.4")


def from_store(state) -> str:
    """The gauges read from the store: tracked jobs and the access token's expiry."""
    jobs = state.store.list_jobs(limit=1_000)
    cached = state.client.tokens.cached()
    lines = ["# HELP wechat_jobs Tracked send jobs (newest 1,000), by kind and status.", "# TYPE wechat_jobs gauge"]
    for kind in KINDS:
        for status in STATUSES:
            count = sum(1 for job in jobs if job.kind == kind and job.status == status)
            lines.append(f'wechat_jobs{{kind="{kind}",status="{status}"}} {count}')
    lines += [
        "# HELP wechat_access_token_expires_in_seconds Seconds until the cached access token expires.",
        "# TYPE wechat_access_token_expires_in_seconds gauge",
        f"wechat_access_token_expires_in_seconds {max(0, int(cached.expires_at - time.time())) if cached else 0}",
    ]
    return "\n".join(lines) + "\n"
