"""The Flask view of the callback: a thin adapter around :class:`app.pipeline.Pipeline`.

It turns the WSGI request into a :class:`~app.pipeline.Delivery` (reading the
body no further than the limit) and the pipeline's :class:`~app.pipeline.Answer`
into a response, or, for an answer that must not reach WeChat, lets the
connection go without one.
"""

from __future__ import annotations

import logging
import socket
import time

from flask import Blueprint, Response, request

from .allowlist import caller_address
from .pipeline import Delivery
from .state import get_state
from .verify import Refusal

log = logging.getLogger(__name__)


def create_blueprint(path: str) -> Blueprint:
    blueprint = Blueprint("wechat", __name__)
    # Every method comes here, so that any unsigned request is a 400 and a signed one with a
    # method WeChat never uses is a 405 (no automatic OPTIONS answer either).
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    blueprint.add_url_rule(path, "callback", callback, methods=methods, provide_automatic_options=False)
    return blueprint


def callback() -> Response:
    arrived = time.monotonic()
    state = get_state()
    environ = request.environ
    caller = None
    if state.allowlist is not None:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        caller = caller_address(environ.get("REMOTE_ADDR"), forwarded, state.settings.trusted_proxies)
    delivery = Delivery(
        method=request.method,
        query_string=environ.get("QUERY_STRING", ""),
        read_body=lambda limit: read_body(environ, limit),
        caller=caller,
        arrived=arrived,
    )
    answer = state.pipeline.handle(delivery)
    if answer.release:
        return release(environ)
    return Response(answer.body, status=answer.status, content_type=answer.content_type, headers=answer.headers)


def release(environ: dict) -> Response:
    """No answer: shut the connection, so that WeChat sees a dropped delivery and delivers again.

    Under gunicorn (and werkzeug's server) the socket is at hand; elsewhere the
    nearest thing is a 503, which no WeChat delivery reads as an answer.
    """
    connection = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"released\n", status=503, mimetype="text/plain")


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, refused with 413 before it is read whole when over ``limit``.

    A declared Content-Length over the limit is refused unread; a chunked body is
    read to one byte past the limit at most.
    """
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise Refusal(400, "Content-Length is not a number", repr(declared[:20])) from None
        if length > limit:
            raise Refusal(413, f"body exceeds WECHAT_MAX_BODY_BYTES ({limit})", f"{length} bytes declared")
        stream, wanted = environ["wsgi.input"], length
    else:  # chunked: werkzeug's stream knows whether the server ends the input for us
        stream, wanted = request.stream, limit + 1
    body = stream.read(wanted)
    while len(body) < wanted and (chunk := stream.read(wanted - len(body))):
        body += chunk
    if len(body) > limit:
        raise Refusal(413, f"body exceeds WECHAT_MAX_BODY_BYTES ({limit})")
    return body
