"""Health and metrics endpoints for the operator's probes.

``/healthz`` answers ``{"status": "ok"}`` or, with 503, ``{"status": "unavailable"}``:
a stranger learns no more than that; the reason goes to the log.  It probes
what pushes need, a write to the store within ``WECHAT_HEALTH_TIMEOUT``, so a
full disk, a read-only file or a lock held too long all show.

``/metrics`` speaks Prometheus' text format: the counters of :mod:`app.metrics`
(every worker's, under gunicorn), counted as things happen, then the access
token's expiry, one key read from the store.  Nothing else is read at scrape
time, so a scrape costs the same however many pushes and jobs the store holds
(the send jobs are listed by ``flask --app wsgi wechat jobs``).
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify

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
        state.metrics.store_failed("check_writable")
        state.throttle.log(log, logging.ERROR, "healthz", "health check: the store cannot take a write: %s", exc)
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")


@blueprint.get("/metrics")
def metrics():
    """The counters, then the token's expiry: one key read from the store, whatever it holds besides."""
    state = get_state()
    text = state.metrics.exposition().decode()
    try:
        cached = state.client.tokens.cached()
    except Exception as exc:
        state.metrics.store_failed("metrics")
        state.throttle.log(log, logging.ERROR, "metrics", "metrics: the store does not answer: %s", exc)
        text += "# the store did not answer: the access token's expiry left out\n"
    else:
        expires_in = max(0, int(cached.expires_at - time.time())) if cached else 0
        text += TOKEN_GAUGE + f"wechat_access_token_expires_in_seconds {expires_in}\n"
    return Response(text, mimetype="text/plain; version=0.0.4")


TOKEN_GAUGE = (
    "# HELP wechat_access_token_expires_in_seconds Seconds until the cached access token expires (0: none cached).\n"
    "# TYPE wechat_access_token_expires_in_seconds gauge\n"
)
