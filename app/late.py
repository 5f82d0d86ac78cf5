"""Late replies: what happens to a reply that is not ready by the delivery's deadline.

``WECHAT_LATE_REPLY=retry`` (every account): WeChat's own later deliveries of the
push carry the reply.  The *last* delivery is answered with
``WECHAT_LATE_REPLY_HINT`` and the reply, when ready, is held for the follower:
their next message takes it.

``WECHAT_LATE_REPLY=customer_service`` (accounts with the customer-service API):
the delivery is answered ``success`` at the deadline, the follower sees
"typing", and the reply goes out through ``message/custom/send``.  A send that
WeChat refuses (45015: outside the 48 hours, 45047: over the limit, 48001: no
permission) is held for the follower's next message instead.

Which of the two applies to a run is recorded on the push in the store (its
``late`` mark), so that the worker that finishes the run, whichever it is,
knows what to do with the reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .client import WeChatClient
from .errors import WeChatError
from .messages import Push
from .replies import (
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    TextReply,
    VoiceReply,
)
from .reply_policy import text_xml
from .settings import Settings
from .store import Store
from .store.base import PushRecord
from .tasks import CUSTOMER_SERVICE as BY_API
from .tasks import HOLD

if TYPE_CHECKING:
    from .guard import StoreGuard
    from .runs import Runner

log = logging.getLogger(__name__)

HINT, SENT_LATER = "hint", "customer_service"  # the store's ``late`` marks
RERUN_WITHIN = 15.0  # WeChat's three deliveries are over by then


class LateReplies:
    def __init__(
        self, settings: Settings, store: Store, client: WeChatClient, guard: StoreGuard, runner: Runner
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.guard = guard
        self.runner = runner

    # --- at the deadline --------------------------------------------------------

    def after_deadline(self, push: Push, hint: bool) -> PushRecord | None:
        """Mark the run of ``push`` late; None if marked, the finished record if it just finished."""
        how = HINT if hint else SENT_LATER
        try:
            marked = self.guard.call("mark_late", self.store.mark_late, push.dedup_key, how)
        except Exception:
            return None
        self.guard.metrics.late_reply(how, marked)
        if marked:
            if how == SENT_LATER:
                self.runner.submit(self._typing, push.from_user)
            return None
        try:
            return self.guard.call("get_push", self.store.get_push, push.dedup_key)
        except Exception:
            return None

    def hint_xml(self, push: Push) -> bytes | None:
        hint = self.settings.late_reply_hint
        return text_xml(push, hint, time.time()) if hint else None

    def _typing(self, openid: str) -> None:
        try:
            self.client.send_typing(openid)
        except WeChatError as exc:
            log.info("cannot show 'typing' to %s: %s", openid, exc)

    def take_held(self, openid: str) -> bytes | None:
        """The follower's oldest held reply, taken out of the store (None if there is none)."""
        try:
            return self.guard.call("take_held_reply", self.store.take_held_reply, openid)
        except Exception:
            return None

    # --- runs whose worker died -------------------------------------------------

    def lapsed(self, record: PushRecord, rerun: Callable[[PushRecord], None]) -> None:
        """A run that stopped renewing its lease: re-run it once while that can still help, else abandon it.

        A delivery of the push takes a lapsed run over by itself; the server re-runs
        one only where no delivery will come: after ``success`` in customer-service
        mode (within 15 s of the first delivery), or after the hint.
        """
        age = time.time() - record.received_at
        # Only a run whose delivery was answered without its reply (late) waits for no delivery: one
        # that died before its deadline got no answer, so WeChat delivers again and that delivery
        # takes the run over.  (And a run that answered in time but died before writing its outcome
        # must not run twice.)
        answered_without_it = record.late is not None
        may_run_again = record.can_take_over(time.time())  # lost, with a run left: the store's own rule
        if may_run_again and answered_without_it and (record.late == HINT or age < RERUN_WITHIN):
            rerun(record)
        elif age >= RERUN_WITHIN:
            if self.store.abandon(record.key):
                log.error("push %s abandoned: its run died and WeChat's deliveries are over", record.key)


def task_how(late: str) -> str:
    """How a task delivers the reply of a run marked ``late``."""
    return BY_API if late == SENT_LATER else HOLD


def send(client: WeChatClient, openid: str, reply: Reply) -> None:
    """``reply`` as a customer-service message; TypeError for a reply that has no such form.

    A video reply has none: the customer-service API needs a thumbnail, which a
    passive video reply does not carry.  Such a reply is held instead.
    """
    if isinstance(reply, TextReply):
        client.send_text(openid, reply.content)
    elif isinstance(reply, ImageReply):
        client.send_image(openid, reply.media_id)
    elif isinstance(reply, VoiceReply):
        client.send_voice(openid, reply.media_id)
    elif isinstance(reply, MusicReply):
        client.send_music(
            openid,
            reply.music_url or "",
            reply.hq_music_url or "",
            reply.thumb_media_id,
            reply.title,
            reply.description,
        )
    elif isinstance(reply, NewsReply):
        first = reply.articles[0]
        article = {"title": first.title, "description": first.description, "url": first.url, "picurl": first.pic_url}
        client.send_news(openid, [article])
    else:
        raise TypeError(f"a {reply.msg_type} reply has no customer-service form")
