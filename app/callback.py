"""The callback WeChat calls.  The request path, top to bottom:

verify -> decrypt -> parse -> dedup -> journal -> dispatch -> reply -> encrypt

Every refusal is one log line and a 4xx; nothing a request carries can produce a
500.  A handler that raises still gets WeChat its ``success``.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from . import crypto
from .dispatch import dispatch
from .messages import Event, Push, parse_push
from .replies import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, render
from .state import AppState, get_state
from .store.base import ANSWERED, FAILED
from .xmlsafe import PushError, parse_xml

log = logging.getLogger(__name__)

SUCCESS = "success"


class Refusal(Exception):
    """A request we answer with ``status`` and log as ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def create_blueprint(path: str) -> Blueprint:
    blueprint = Blueprint("wechat", __name__)
    # Every method comes here, so that any unsigned request is a 400 and a signed one with a
    # method WeChat never uses is a 405 (no automatic OPTIONS answer either).
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    blueprint.add_url_rule(path, "callback", callback, methods=methods, provide_automatic_options=False)
    return blueprint


def callback() -> Response:
    state = get_state()
    environ = request.environ
    # A plain dict from the query string: werkzeug's MultiDict costs more than the rest of verify.
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    try:
        verify(state, query)
        if request.method in ("GET", "HEAD"):
            echostr = query.get("echostr")
            if echostr is None:
                raise Refusal(400, "verification request lacks echostr")
            return Response(echostr, mimetype="text/plain")
        if request.method != "POST":
            raise Refusal(405, f"{request.method} is not a method WeChat uses")
        return handle_push(state, query, read_body(environ, state.settings.max_body_bytes))
    except Refusal as refusal:
        log.warning("%s %s refused with %d: %s", request.method, request.path, refusal.status, refusal.reason)
        count(state, f"refused_{refusal.status}")
        return Response(refusal.reason + "\n", status=refusal.status, mimetype="text/plain")
    except Exception:  # a bug or a failing store: logged, and WeChat still gets its answer, never a 500
        log.exception("%s %s failed inside the server", request.method, request.path)
        return Response(SUCCESS, mimetype="text/plain")


def verify(state: AppState, query: dict[str, str]) -> None:
    """Check the query's signature and timestamp."""
    signature, timestamp, nonce = query.get("signature"), query.get("timestamp"), query.get("nonce")
    if signature is None or timestamp is None or nonce is None:
        raise Refusal(400, "query lacks signature, timestamp or nonce")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise Refusal(400, f"timestamp is not an integer: {timestamp[:20]!r}") from None
    skew = abs(int(time.time()) - sent_at)  # integers: a 400-digit timestamp must not overflow a float
    if skew > state.settings.timestamp_tolerance:
        raise Refusal(403, f"timestamp is {min(skew, 10**12)}s away from the server clock")
    try:
        crypto.check_signature(signature, state.settings.token, timestamp, nonce)
    except crypto.SignatureError:
        raise Refusal(403, "signature does not match WECHAT_TOKEN") from None


def handle_push(state: AppState, query: dict[str, str], body: bytes) -> Response:
    safe_mode = query.get("encrypt_type", "").lower() == "aes"
    if safe_mode:
        body = decrypt(state, body, query)
    try:
        push = parse_push(parse_xml(body))
    except PushError as exc:
        raise Refusal(400, str(exc)) from None

    key = push.dedup_key
    if not journal(state, key, push.msg_type, body):
        log.info("repeated push %s answered from the first delivery", key)
        outcome = state.store.push_outcome(key)
        reply_xml = outcome[1] if outcome else None
    else:
        reply_xml = answer(state, key, push)

    if reply_xml is None:
        return Response(SUCCESS, mimetype="text/plain")
    if safe_mode:
        reply_xml = crypto.seal(state.envelope, state.settings.token, reply_xml)
    return Response(reply_xml, mimetype="application/xml")


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
            raise Refusal(400, f"Content-Length is not a number: {declared[:20]!r}") from None
        if length > limit:
            raise Refusal(413, f"body of {length} bytes exceeds WECHAT_MAX_BODY_BYTES ({limit})")
        stream, wanted = environ["wsgi.input"], length
    else:  # chunked: werkzeug's stream knows whether the server ends the input for us
        stream, wanted = request.stream, limit + 1
    body = stream.read(wanted)
    while len(body) < wanted and (chunk := stream.read(wanted - len(body))):
        body += chunk
    if len(body) > limit:
        raise Refusal(413, f"body exceeds WECHAT_MAX_BODY_BYTES ({limit})")
    return body


def decrypt(state: AppState, body: bytes, query: dict[str, str]) -> bytes:
    """The XML inside a safe-mode (or compatible-mode) envelope, authenticated by msg_signature."""
    if state.envelope is None:
        raise Refusal(403, "encrypted push but WECHAT_ENCODING_AES_KEY is not set")
    timestamp, nonce, msg_signature = query["timestamp"], query["nonce"], query.get("msg_signature")
    if msg_signature is None:
        raise Refusal(403, "encrypted push lacks msg_signature")
    try:
        encrypted = parse_xml(body).findtext("Encrypt")
    except PushError as exc:
        raise Refusal(400, str(exc)) from None
    if not encrypted or not encrypted.strip():
        raise Refusal(403, "encrypted push lacks Encrypt, so nothing in it is authenticated")
    encrypted = encrypted.strip()
    try:
        crypto.check_signature(msg_signature, state.settings.token, timestamp, nonce, encrypted)
        return state.envelope.decrypt(encrypted)
    except crypto.SignatureError:
        raise Refusal(403, "msg_signature does not match") from None
    except crypto.CryptoError as exc:
        raise Refusal(403, f"Encrypt does not decrypt: {exc}") from None


def journal(state: AppState, key: str, kind: str, body: bytes) -> bool:
    """Record the push; False if it was seen before.

    If the store fails the push is still handled: a possible duplicate is better
    than a lost message.
    """
    try:
        return state.store.claim_push(key, kind, body, state.settings.dedup_ttl)
    except Exception:
        log.exception("store failed to journal push %s; handling it without dedup", key)
        return True


def answer(state: AppState, key: str, push: Push) -> bytes | None:
    """Dispatch the push and render the reply; record both in the journal."""
    outcome = dispatch(push, state.plugins, client=state.client, store=state.store)
    reply, reply_xml = outcome.reply, None
    status = ANSWERED
    if outcome.failures:
        status = FAILED
        count(state, "handler_failures", outcome.failures)
    if reply is not None:
        limit = MAX_ARTICLES_FOR_EVENT if isinstance(push, Event) else MAX_ARTICLES_FOR_MESSAGE
        try:
            reply_xml = render(reply, push.from_user, push.to_user, int(time.time()), limit)
        except Exception:
            log.exception("reply to %s could not be rendered", key)
            status = FAILED
    try:
        state.store.finish_push(key, status, reply_xml)
    except Exception:
        log.exception("store failed to record the reply to %s", key)
    return reply_xml


def count(state: AppState, name: str, amount: int = 1) -> None:
    """Count a rare event for /metrics; a store failure here is logged, never raised."""
    try:
        state.store.increment(name, amount)
    except Exception:
        log.exception("store failed to count %s", name)
