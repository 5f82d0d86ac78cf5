"""The callback path in front of Flask: WSGI in, :class:`~app.pipeline.Answer` out.

Every other path (health, metrics) is Flask's; the callback is served here, before
Flask builds a request context, a URL match and a response object for it: under
gunicorn that machinery costs more CPU a push than the whole pipeline's checks
(measured in ``bench/RESULTS.md``).  The pipeline itself is framework-free, so
nothing is lost: this turns the WSGI environ into a :class:`~app.pipeline.Delivery`
(reading the body no further than the limit) and the answer into a response, or,
for an answer that must not reach WeChat, lets the connection go without one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from .allowlist import caller_address
from .pipeline import Answer, Delivery, Pipeline
from .verify import Refusal

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class CallbackFront:
    """A WSGI app that answers ``path`` through ``pipeline`` and hands every other request to ``inner``.

    Installed as the Flask app's ``wsgi_app`` (Flask's own place for WSGI
    middleware), so ``wsgi:app``, the test client and gunicorn all go through it.
    """

    def __init__(self, pipeline: Pipeline, path: str, inner: WSGIApp, trusted_proxies: object = ()) -> None:
        self.pipeline = pipeline
        self.path = path.encode().decode("latin-1")  # PATH_INFO is the path's bytes as latin-1 (PEP 3333)
        self.inner = inner
        self.trusted_proxies = trusted_proxies

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return self.inner(environ, start_response)
        arrived = time.monotonic()
        caller = None
        if self.pipeline.allowlist is not None:
            forwarded = environ.get("HTTP_X_FORWARDED_FOR")
            caller = caller_address(environ.get("REMOTE_ADDR"), forwarded, self.trusted_proxies)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        delivery = Delivery(
            method=method,
            query_string=environ.get("QUERY_STRING", ""),
            read_body=lambda limit: read_body(environ, limit),
            caller=caller,
            arrived=arrived,
        )
        answer = self.pipeline.handle(delivery)
        if answer.release:
            answer = release(environ)
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))]
        headers.extend(answer.headers.items())
        start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'UNKNOWN')}", headers)
        return [] if method == "HEAD" else [answer.body]


def release(environ: dict) -> Answer:
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
    return Answer(503, b"released\n", content_type="text/plain; charset=utf-8")


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
    else:  # chunked: the stream is read only if the server says it ends the input for us
        stream, wanted = get_input_stream(environ, max_content_length=None), limit + 1
    body = stream.read(wanted)
    while len(body) < wanted and (chunk := stream.read(wanted - len(body))):
        body += chunk
    if len(body) > limit:
        raise Refusal(413, f"body exceeds WECHAT_MAX_BODY_BYTES ({limit})")
    return body
