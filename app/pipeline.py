"""The request path, free of any web framework: a delivery in, an answer out.

    caller -> query -> signature -> timestamp -> mode -> size -> decrypt -> parse
    -> claim -> dispatch under a deadline -> reply -> encrypt

The Flask view, the CLI's ``replay``, the test kit, the benchmark and a queue
worker all call :meth:`Pipeline.handle`.  WeChat gives each delivery 5 s and
makes three deliveries of a push; every step here fits in
``WECHAT_REPLY_DEADLINE`` from the delivery's arrival:

* store calls are short and skipped for a while after a failure (:mod:`app.guard`);
* handlers run in a pool (:mod:`app.runs`): the delivery waits for them only as
  long as the clock allows, and every delivery of the push, on any worker or
  host, waits for the same run;
* a reply that is not ready in time is a *late reply* (:mod:`app.late`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from . import crypto, tasks
from .allowlist import AllowList
from .client import WeChatClient
from .crypto import AESEnvelope
from .dispatch import dispatch
from .guard import StoreGuard, StoreSkipped
from .late import SENT_LATER, LateReplies, task_how
from .logs import Throttle
from .messages import Message, Push, parse_push
from .metrics import Metrics
from .plugins import Plugins
from .replies import Reply
from .reply_policy import parts, reply_xml, restamped
from .runs import LEASE, Run, Runner
from .settings import RETRY, RQ, Settings
from .store import Store
from .store.base import ANSWERED, HANDLER_FAILED, LATE_REPLY_FAILED, MAX_ATTEMPTS, RUNNING, PushRecord
from .tasks import CUSTOMER_SERVICE as BY_API
from .tasks import HOLD, EmbeddedQueue, Handing, RQQueue, Task
from .verify import CallbackQuery, Refusal, authenticate, check_mode, read_query
from .xmlsafe import PushError, parse_xml

log = logging.getLogger(__name__)

SUCCESS = b"success"
WECHAT_GIVES_UP = 5.5  # a delivery older than this has been dropped by WeChat, with a margin
LAST_DELIVERY = 3  # WeChat delivers a push three times
LAST_AFTER = 9.0  # ... about 5 s apart: a delivery 9 s after the first is the last
POLL = 0.05  # how often a delivery waiting on another worker's run looks at the store
# A first run that ends this long before its delivery's deadline records its outcome a moment
# later, with others: no delivery can be at its deadline, deciding what to answer by the outcome,
# before the outcome is written (it is, within WRITE_EVERY, each write within the store timeout).
PUT_OFF_MARGIN = 1.0


@dataclass
class Delivery:
    """One HTTP request to the callback path, as the web framework hands it over."""

    method: str
    query_string: str
    read_body: Callable[[int], bytes]  # reads at most the limit it is given; raises a 413 Refusal past it
    caller: str | None = None  # the caller's address, when an allow-list is set
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class Handled:
    """What a push's handlers came to."""

    reply: Reply | None  # the whole reply
    reply_xml: bytes | None  # the passive reply: the reply, or its first part
    status: str  # ANSWERED, or HANDLER_FAILED when a receiver raised or the reply would not render
    rest: list[Reply] = field(default_factory=list)  # the parts of a long text after the first
    handoffs: list[Task] = field(default_factory=list)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    release: bool = False  # no answer at all: let the connection go (WeChat has dropped it, or will retry)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        envelope: AESEnvelope | None,
        plugins: Plugins,
        client: WeChatClient,
        metrics: Metrics,
        throttle: Throttle,
        allowlist: AllowList | None = None,
        context: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self.settings = settings
        self.store = store
        self.envelope = envelope
        self.plugins = plugins
        self.client = client
        self.metrics = metrics
        self.throttle = throttle
        self.allowlist = allowlist
        self.guard = StoreGuard(metrics, throttle)
        self.runner = Runner(
            self._run, store, settings.handler_threads, context, self._look_for_lapsed, metrics.store_failed
        )
        self.late = LateReplies(settings, store, client, self.guard, self.runner)
        self.tasks = RQQueue(settings.store_url) if settings.task_queue == RQ else EmbeddedQueue(self)

    # --- the request ------------------------------------------------------------

    def handle(self, delivery: Delivery) -> Answer:
        """Answer one delivery; never raises."""
        try:
            return self._handle(delivery)
        except Refusal as refusal:
            return self._refuse(delivery, refusal)
        except Exception:  # a bug: logged, and WeChat still gets its answer, never a 500
            log.exception("%s to the callback failed inside the server", delivery.method[:16])
            self.metrics.internal_error()
            return Answer(200, SUCCESS)

    def _handle(self, delivery: Delivery) -> Answer:
        settings = self.settings
        if self.allowlist is not None and not self.allowlist.permits(delivery.caller):
            raise Refusal(403, "caller is not in WECHAT_ALLOWED_IPS", str(delivery.caller))
        query = read_query(delivery.query_string)
        authenticate(query, settings.signing_token, settings.timestamp_tolerance, time.time())
        if delivery.method in ("GET", "HEAD"):
            if query.echostr is None:
                raise Refusal(400, "verification request lacks echostr")
            return Answer(200, query.echostr.encode(), headers={"X-Content-Type-Options": "nosniff"})
        if delivery.method != "POST":
            raise Refusal(405, "a method WeChat does not use", delivery.method[:16])
        check_mode(query, settings.accepts_plaintext, settings.accepts_encrypted)
        body = delivery.read_body(settings.max_body_bytes)
        xml = self._decrypt(body, query) if query.encrypted else body
        try:
            push = parse_push(parse_xml(xml))
        except PushError as exc:
            raise Refusal(400, "body is not a push", str(exc)[:200]) from None
        answer = self.answer_push(push, xml, delivery.arrived)
        if answer.status == 200 and answer.body != SUCCESS and not answer.release and query.encrypted:
            answer.body = crypto.seal(self.envelope, settings.signing_token, answer.body)
        self.metrics.push_done(push, answer, delivery.arrived)
        return answer

    def _refuse(self, delivery: Delivery, refusal: Refusal) -> Answer:
        """Log and count ``refusal``, and answer it.

        A 403 says only that: which check failed, and anything about the server's
        clock or mode, is for the operator's log, not for whoever sent the request.
        """
        detail = f" ({refusal.detail})" if refusal.detail else ""
        self.throttle.log(
            log,
            logging.WARNING,
            f"refused {refusal.status} {refusal.reason}",
            "%s refused with %d: %s%s",
            delivery.method[:16],
            refusal.status,
            refusal.reason,
            detail,
        )
        self.metrics.refused(refusal.status, refusal.reason)
        if refusal.status == 403:
            text = "forbidden"
        else:
            text = f"{refusal.reason}: {refusal.detail}" if refusal.detail else refusal.reason
        return Answer(refusal.status, text.encode() + b"\n", headers={"X-Content-Type-Options": "nosniff"})

    def _decrypt(self, body: bytes, query: CallbackQuery) -> bytes:
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
            crypto.check_signature(
                query.msg_signature, self.settings.signing_token, query.timestamp, query.nonce, encrypted
            )
            return self.envelope.decrypt(encrypted)
        except crypto.SignatureError:
            raise Refusal(403, "msg_signature does not match") from None
        except crypto.CryptoError as exc:
            raise Refusal(403, "Encrypt does not decrypt for this appid", str(exc)) from None

    # --- the push ---------------------------------------------------------------

    def answer_push(self, push: Push, xml: bytes, arrived: float) -> Answer:
        """Claim ``push``, run its handlers (or wait for the run that has them), and answer in time."""
        deadline = arrived + self.settings.reply_deadline
        key = push.dedup_key
        try:
            claim = self.guard.call(
                "claim_push",
                self.store.claim_push,
                key,
                push.msg_type,
                xml,
                self.settings.dedup_ttl,
                self.runner.owner_id(),
                LEASE,
                push.from_user if isinstance(push, Message) else None,
            )
        except StoreSkipped:
            # No journal: this delivery runs its own handlers and answers by its deadline, no holding.
            run = self.runner.start(key, push, journalled=False)
            run.done.wait(max(0.0, deadline - time.monotonic()))
            return self._reply(run.reply_xml if run.done.is_set() else None)

        record = claim.record
        self.metrics.claimed(claim)
        if claim.runs:
            if claim.held and isinstance(push, Message) and record.attempts == 1:
                held = self.late.take_held(push.from_user)
                if held is not None:
                    self.metrics.held_reply("taken")
                    self._finish(key, ANSWERED, held)
                    return self._reply(held)
            run = self.runner.start(
                key, push, received_at=record.received_at, attempt=record.attempts, deadline=deadline
            )
        elif record.late == SENT_LATER:  # its reply goes, or went, through the API: never twice
            return self._reply(None)
        elif record.status != RUNNING:
            log.info("repeated push %s answered from its first run", key)
            return self._reply(record.reply)
        else:
            run = self.runner.local(key)
        return self._wait(push, run, record, arrived)

    def _wait(self, push: Push, run: Run | None, record: PushRecord, arrived: float) -> Answer:
        """Wait for the run of ``push`` as long as this delivery may, then answer by WeChat's rules."""
        key = push.dedup_key
        last = record.deliveries >= LAST_DELIVERY or time.time() - record.received_at >= LAST_AFTER
        deadline = arrived + self.settings.reply_deadline
        retry = self.settings.late_reply == RETRY
        until = arrived + WECHAT_GIVES_UP if retry and not last else deadline
        ready, reply = self._wait_for_run(push, run, until, release_on_stop=retry and not last)
        if ready:
            if not retry and record.deliveries > 1 and self._sent_later(key):
                return self._reply(None)  # an earlier delivery got success: the reply goes through the API
            return self._reply(reply)
        if self.runner.releasing.is_set() and retry and not last:
            return Answer(200, b"", release=True)  # the worker is stopping: WeChat delivers again elsewhere
        if not retry:
            finished = self.late.after_deadline(push, hint=False)
            return self._reply(finished.reply if finished is not None else None)
        if last:
            finished = self.late.after_deadline(push, hint=True)
            if finished is not None:
                return self._reply(finished.reply)
            return self._reply(self.late.hint_xml(push))
        log.info("push %s: delivery %d released unanswered, its run still going", key, record.deliveries)
        return Answer(200, b"", release=True)

    def _wait_for_run(
        self, push: Push, run: Run | None, until: float, release_on_stop: bool = True
    ) -> tuple[bool, bytes | None]:
        """``(True, reply)`` once the run of ``push`` is done, ``(False, None)`` at ``until``.

        A run in this process is waited on directly.  Another worker's is polled in the
        store; if its lease lapses (its worker died), this delivery takes it over.
        """
        key = push.dedup_key
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0 or (self.runner.releasing.is_set() and release_on_stop):
                return False, None
            if run is not None:
                if run.done.wait(min(remaining, POLL)):
                    return True, run.reply_xml
                continue
            try:
                record = self.guard.call("get_push", self.store.get_push, key)
            except StoreSkipped:
                return False, None
            if record is not None and record.can_take_over(time.time()):
                if self._take_over(key):
                    log.warning("push %s: its run was lost (%s); running its handlers again", key, record.status)
                    run = self.runner.start(key, push, received_at=record.received_at, attempt=MAX_ATTEMPTS)
                continue  # taken over here, or by another delivery: look again
            if record is None or record.status != RUNNING:
                return True, None if record is None else record.reply
            time.sleep(min(remaining, POLL))

    def _take_over(self, key: str) -> bool:
        try:
            return self.guard.call("take_over", self.store.take_over, key, self.runner.owner_id(), LEASE)
        except StoreSkipped:
            return False

    def _reply(self, reply: bytes | None) -> Answer:
        """The answer carrying ``reply``, its ``CreateTime`` the time it is sent (a repeat's may be older)."""
        if reply is None:
            return Answer(200, SUCCESS)
        return Answer(200, restamped(reply, time.time()), content_type="application/xml")

    # --- the run, in the pool ---------------------------------------------------

    def run_handlers(self, push: Push) -> Handled:
        """Dispatch ``push`` to the app's receivers now, on this thread, and render the reply.

        No claim, no journal: the caller decides what the outcome means (a run, a re-run
        an operator asked for).  A long text reply is split: the first part is the
        reply, the others are in ``rest``; the work receivers handed off is in ``handoffs``.
        """
        held = self.settings.late_reply == RETRY
        handing = Handing(push.from_user, push.to_user, push.dedup_key, HOLD if held else BY_API)
        token = tasks.current.set(handing)
        started = time.perf_counter()
        try:
            outcome = dispatch(push, self.plugins, client=self.client, store=self.store, settings=self.settings)
        finally:
            tasks.current.reset(token)
        handled = Handled(outcome.reply, None, HANDLER_FAILED if outcome.failures else ANSWERED, handoffs=handing.tasks)
        self.metrics.handlers_ran(outcome.failures, time.perf_counter() - started)
        if outcome.reply is not None:
            try:
                first, *handled.rest = parts(outcome.reply, self.settings, held)
                handled.reply_xml = reply_xml(push, first, time.time())
            except Exception:
                log.exception("reply to %s could not be rendered", push.dedup_key)
                handled.status = HANDLER_FAILED
        return handled

    def _run(self, run: Run) -> None:
        """A run in the pool: the handlers, then the outcome recorded and the work after it scheduled."""
        push = run.push
        handled = self.run_handlers(push)
        run.reply_xml = handled.reply_xml
        run.done.set()  # deliveries in this process answer now; the store is for the others
        late = None
        if run.journalled and run.attempt == 1 and time.monotonic() < run.deadline - PUT_OFF_MARGIN:
            self.runner.put_off(run.key, handled.status, handled.reply_xml)  # one synchronous write a push
        elif run.journalled:
            finished = self._record_outcome(run.key, handled.status, handled.reply_xml)
            late = None if finished is None else finished.late
        follower, account = push.from_user, push.to_user
        if late is not None and handled.reply is not None:  # the delivery was answered without it
            how = task_how(late)
            replies = parts(handled.reply, self.settings, held=how == HOLD)
            self.tasks.schedule(Task.deliver(follower, account, how, replies, run.key))
        elif handled.rest:
            how = HOLD if self.settings.late_reply == RETRY else BY_API
            self.tasks.schedule(Task.deliver(follower, account, how, handled.rest, run.key))
        for task in handled.handoffs:
            self.tasks.schedule(task)

    def _record_outcome(self, key: str, status: str, reply: bytes | None) -> PushRecord | None:
        """A run's outcome, from the pool, off the request path: not skipped with the store, tried twice."""
        for attempt in range(2):
            try:
                return self.store.finish_push(key, status, reply)
            except Exception as exc:
                if attempt:
                    self.guard.failed("finish_push", exc)
                time.sleep(0.1)
        return None

    def _sent_later(self, key: str) -> bool:
        """Whether an earlier delivery of the push was answered success, its reply going through the API."""
        try:
            record = self.guard.call("get_push", self.store.get_push, key)
        except StoreSkipped:
            return False
        return record is not None and record.late == SENT_LATER

    def _finish(self, key: str, status: str, reply: bytes | None) -> PushRecord | None:
        try:
            return self.guard.call("finish_push", self.store.finish_push, key, status, reply)
        except StoreSkipped:
            return None

    # --- runs whose worker died -------------------------------------------------

    def _look_for_lapsed(self) -> None:
        """Every second: runs whose lease lapsed (re-run once in time, else journal them abandoned),
        held replies whose day ran out (journal their pushes ``late_reply_failed``), and the
        store's upkeep (expired values, SQLite's WAL)."""
        self._upkeep("sweep_values", self.store.sweep_values, time.time(), 500)
        self._upkeep("checkpoint", self.store.checkpoint)
        try:
            lost = self.guard.call("lapsed_runs", self.store.lapsed_runs, time.time(), 20)
            expired = self.guard.call("expired_holds", self.store.expired_holds, time.time(), 100)
        except StoreSkipped:
            return
        for record in lost:
            self.late.lapsed(record, self._rerun)
        for key in expired:
            log.error("push %s: its late reply was held a day and the follower never wrote; it is lost", key)
            self.metrics.held_reply("expired")
            self.store.set_push_status(key, LATE_REPLY_FAILED)

    def _upkeep(self, operation: str, function: Callable[..., object], *args: object) -> None:
        """A store call no request waits on: a failure is counted and logged, and the store is not skipped for it."""
        try:
            function(*args)
        except Exception as exc:
            self.metrics.store_failed(operation)
            self.throttle.log(log, logging.WARNING, f"upkeep {operation}", "store %s failed: %s", operation, exc)

    def _rerun(self, record: PushRecord) -> None:
        if record.body is None or not self._take_over(record.key):
            return
        log.warning("push %s: its run died; running its handlers again", record.key)
        push = parse_push(parse_xml(record.body))
        self.runner.start(record.key, push, received_at=record.received_at, attempt=MAX_ATTEMPTS)
