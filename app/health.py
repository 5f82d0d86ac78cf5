"""Health and metrics endpoints for the operator's probes."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

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
