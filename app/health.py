"""Health and metrics endpoints for the operator's probes.

``/metrics`` speaks Prometheus' text format and reads only shared state (the
store), so every gunicorn worker answers it alike.
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
    """200 when the store answers, 503 when it does not."""
    try:
        get_state().store.get_value("healthz")
    except Exception as exc:
        log.error("health check: store does not answer: %s", exc)
        return jsonify(status="unavailable", store=str(exc)), 503
    return jsonify(status="ok")


@blueprint.get("/metrics")
def metrics():
    state = get_state()
    lines = []
    try:
        counters = state.store.counters()
        jobs = state.store.list_jobs(limit=1_000)
        cached = state.client.tokens.cached()
    except Exception as exc:
        log.error("metrics: store does not answer: %s", exc)
        return Response("# store unavailable\n", status=503, mimetype="text/plain")

    lines += [
        "# HELP wechat_refusals_total Callback requests refused, by HTTP status.",
        "# TYPE wechat_refusals_total counter",
    ]
    for status in (400, 403, 413):
        lines.append(f'wechat_refusals_total{{status="{status}"}} {counters.get(f"refused_{status}", 0)}')
    lines += [
        "# HELP wechat_handler_failures_total Receivers that raised.",
        "# TYPE wechat_handler_failures_total counter",
        f"wechat_handler_failures_total {counters.get('handler_failures', 0)}",
    ]
    lines += ["# HELP wechat_jobs Tracked send jobs (newest 1,000), by kind and status.", "# TYPE wechat_jobs gauge"]
    for kind in KINDS:
        for status in STATUSES:
            count = sum(1 for job in jobs if job.kind == kind and job.status == status)
            lines.append(f'wechat_jobs{{kind="{kind}",status="{status}"}} {count}')
    lines += [
        "# HELP wechat_access_token_expires_in_seconds Seconds until the cached access token expires.",
        "# TYPE wechat_access_token_expires_in_seconds gauge",
        f"wechat_access_token_expires_in_seconds {max(0, int(cached.expires_at - time.time())) if cached else 0}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
