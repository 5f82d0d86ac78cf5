"""The callback WeChat calls.  The request path, top to bottom:

allow-list -> query -> signature -> timestamp -> mode -> size -> decrypt -> parse
-> dedup -> journal -> dispatch -> reply -> encrypt

Every refusal is one log line (one per minute when it repeats) and a 4xx; nothing
a request carries can produce a 500.  A handler that raises still gets WeChat its
``success``.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, request

from . import crypto
from .allowlist import caller_address
from .dispatch import dispatch
from .messages import Event, Push, parse_push
from .replies import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, render
from .state import AppState, get_state
from .store.base import ANSWERED, FAILED
from .verify import CallbackQuery, Refusal, authenticate, check_mode, read_query
from .xmlsafe import PushError, parse_xml

log = logging.getLogger(__name__)

SUCCESS = "success"


def create_blueprint(path: str) -> Blueprint:
    blueprint = Blueprint("wechat", __name__)
    # Every method comes here, so that any unsigned request is a 400 and a signed one with a
    # method WeChat never uses is a 405 (no automatic OPTIONS answer either).
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    blueprint.add_url_rule(path, "callback", callback, methods=methods, provide_automatic_options=False)
    return blueprint


def callback() -> Response:
    state = get_state()
    settings = state.settings
    environ = request.environ
    try:
        if state.allowlist is not None:
            caller = caller_address(
                environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), settings.trusted_proxies
            )
            if not state.allowlist.permits(caller):
                raise Refusal(403, "caller is not in WECHAT_ALLOWED_IPS", str(caller))
        query = read_query(environ.get("QUERY_STRING", ""))
        authenticate(query, settings.token, settings.timestamp_tolerance, time.time())
        if request.method in ("GET", "HEAD"):
            if query.echostr is None:
                raise Refusal(400, "verification request lacks echostr")
            response = Response(query.echostr, mimetype="text/plain")
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        if request.method != "POST":
            raise Refusal(405, "a method WeChat does not use", request.method[:16])
        check_mode(query, settings.accepts_plaintext, settings.accepts_encrypted)
        return handle_push(state, query, read_body(environ, settings.max_body_bytes))
    except Refusal as refusal:
        return refuse(state, refusal)
    except Exception:  # a bug: logged, and WeChat still gets its answer, never a 500
        log.exception("%s %s failed inside the server", request.method, request.path)
        return Response(SUCCESS, mimetype="text/plain")


def refuse(state: AppState, refusal: Refusal) -> Response:
    """Log and count ``refusal``, and answer it.

    A 403 says only that: which check failed, and anything about the server's
    clock or mode, is for the operator's log, not for whoever sent the request.
    """
    detail = f" ({refusal.detail})" if refusal.detail else ""
    state.throttle.log(
        log,
        logging.WARNING,
        f"refused {refusal.status} {refusal.reason}",
        "%s %s refused with %d: %s%s",
        request.method[:16],
        request.path,
        refusal.status,
        refusal.reason,
        detail,
    )
    state.metrics.refusals.labels(str(refusal.status)).inc()
    if refusal.status == 403:
        text = "forbidden"
    else:
        text = f"{refusal.reason}: {refusal.detail}" if refusal.detail else refusal.reason
    response = Response(text + "\n", status=refusal.status, mimetype="text/plain")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def handle_push(state: AppState, query: CallbackQuery, body: bytes) -> Response:
    if query.encrypted:
        body = decrypt(state, body, query)
    try:
        push = parse_push(parse_xml(body))
    except PushError as exc:
        raise Refusal(400, "body is not a push", str(exc)[:200]) from None

    key = push.dedup_key
    if not journal(state, key, push.msg_type, body):
        log.info("repeated push %s answered from the first delivery", key)
        first_run = stored_outcome(state, key)
        reply_xml = first_run[1] if first_run else None
    else:
        reply_xml = answer(state, key, push)

    if reply_xml is None:
        return Response(SUCCESS, mimetype="text/plain")
    if query.encrypted:
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


def decrypt(state: AppState, body: bytes, query: CallbackQuery) -> bytes:
    """The XML inside a safe-mode (or compatible-mode) envelope, authenticated by msg_signature."""
    if query.msg_signature is None:
        raise Refusal(403, "encrypted push lacks msg_signature")
    try:
        encrypted = parse_xml(body).findtext("Encrypt")
    except PushError as exc:
        raise Refusal(400, "body is not a push", str(exc)[:200]) from None
    if not encrypted or not encrypted.strip():
        raise Refusal(403, "encrypted push lacks Encrypt, so nothing in it is authenticated")
    encrypted = encrypted.strip()
    try:
        crypto.check_signature(query.msg_signature, state.settings.token, query.timestamp, query.nonce, encrypted)
        return state.envelope.decrypt(encrypted)
    except crypto.SignatureError:
        raise Refusal(403, "msg_signature does not match") from None
    except crypto.CryptoError as exc:
        raise Refusal(403, "Encrypt does not decrypt for this appid", str(exc)) from None


def journal(state: AppState, key: str, kind: str, body: bytes) -> bool:
    """Record the push; False if it was seen before.

    If the store fails the push is still handled: a possible duplicate is better
    than a lost message.
    """
    try:
        return state.store.claim_push(key, kind, body, state.settings.dedup_ttl)
    except Exception as exc:
        store_failed(state, "claim_push", exc, "handling the push without dedup")
        return True


def stored_outcome(state: AppState, key: str) -> tuple[str, bytes | None] | None:
    try:
        return state.store.push_outcome(key)
    except Exception as exc:
        store_failed(state, "push_outcome", exc, "answering the repeated push with success")
        return None


def answer(state: AppState, key: str, push: Push) -> bytes | None:
    """Dispatch the push and render the reply; record both in the journal."""
    dispatched = dispatch(push, state.plugins, client=state.client, store=state.store)
    reply, reply_xml = dispatched.reply, None
    status = ANSWERED
    if dispatched.failures:
        status = FAILED
        state.metrics.handler_failures.inc(dispatched.failures)
    if reply is not None:
        limit = MAX_ARTICLES_FOR_EVENT if isinstance(push, Event) else MAX_ARTICLES_FOR_MESSAGE
        try:
            reply_xml = render(reply, push.from_user, push.to_user, int(time.time()), limit)
        except Exception:
            log.exception("reply to %s could not be rendered", key)
            status = FAILED
    try:
        state.store.finish_push(key, status, reply_xml)
    except Exception as exc:
        store_failed(state, "finish_push", exc, "a repeated delivery will not find this reply")
    return reply_xml


def store_failed(state: AppState, operation: str, exc: Exception, consequence: str) -> None:
    """Count a failed store call and log it: one line per operation and minute, not a traceback per push."""
    state.metrics.store_failures.labels(operation).inc()
    state.throttle.log(
        log,
        logging.ERROR,
        f"store {operation}",
        "store failed in %s (%s: %s); %s",
        operation,
        type(exc).__name__,
        exc,
        consequence,
    )
