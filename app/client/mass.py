"""Mass sends: ``message/mass/sendall`` (by tag, or to every follower), ``message/mass/send``
(to a list of openids), ``message/mass/preview`` (to one follower), their withdrawal and
status, and the account's mass-send speed.

The Send Message API page's ``filter.group_id`` is the old name of ``filter.tag_id``: user
groups became tags, and a group's id is the tag's id.  :meth:`MassSends.mass_send_to_tag`
sends ``tag_id``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import jobs
from ..errors import PartialMassSend, WeChatError
from .base import ClientBase, answer_field, drop_none, new_client_id

log = logging.getLogger(__name__)

MASS_OPENIDS_MIN, MASS_OPENIDS_MAX = 2, 10_000
CLIENTMSGID_EXISTS = 45065  # WeChat's answer to a repeated clientmsgid, with the first send's msg_id
MASS_TYPES = ("mpnews", "text", "voice", "image", "mpvideo", "wxcard")
MASS_SPEEDS = range(0, 5)  # 0 is the fastest (80 万/min), 4 the slowest (10 万/min)

Progress = Callable[[int, int], None]


class MassSends(ClientBase):
    def mass_send_to_tag(
        self,
        msgtype: str,
        content: str,
        tag_id: int | None = None,
        *,
        send_ignore_reprint: bool = False,
        clientmsgid: str | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> int:
        """``message/mass/sendall`` to the followers with ``tag_id``, or to all followers when it is None.

        ``content`` is the text for ``text``, the card_id for ``wxcard`` and the media_id
        otherwise (for ``mpvideo``, the one :meth:`upload_video` returns; ``title`` and
        ``description`` go with it).  Returns the msg_id.
        """
        target_filter: dict[str, Any] = (
            {"is_to_all": True} if tag_id is None else {"is_to_all": False, "tag_id": int(tag_id)}
        )
        body = {
            "filter": target_filter,
            **mass_content(msgtype, content, title, description),
            "send_ignore_reprint": int(send_ignore_reprint),
            "clientmsgid": clientmsgid or new_client_id(),
        }
        answer = self._mass_call("message/mass/sendall", body)
        msg_id = str(answer_field(answer, "msg_id", "message/mass/sendall"))
        target = "all" if tag_id is None else f"tag:{tag_id}"
        self._report_send(
            jobs.MASS,
            msg_id,
            target,
            {"msgtype": msgtype, "content": content, "msg_data_id": answer.get("msg_data_id")},
        )
        return int(msg_id)

    def mass_send_to_all(self, msgtype: str, content: str, **options: Any) -> int:
        """``message/mass/sendall`` with ``is_to_all``: every follower."""
        return self.mass_send_to_tag(msgtype, content, None, **options)

    def mass_send_to_openids(
        self,
        openids: Iterable[str],
        msgtype: str,
        content: str,
        *,
        send_ignore_reprint: bool = False,
        clientmsgid: str | None = None,
        title: str | None = None,
        description: str | None = None,
        progress: Progress | None = None,
    ) -> list[int]:
        """``message/mass/send`` to a list of openids; returns one msg_id per call.

        Repeats are sent once.  WeChat takes 2 to 10,000 openids a call, so a longer
        list is split into balanced calls (10,001 openids make two calls of ~5,000).
        ``progress(done, total)`` is called with the openids sent so far: once before
        the first call (``done`` 0) and after each.
        """
        unique = list(dict.fromkeys(o.strip() for o in openids if o and o.strip()))
        if len(unique) < MASS_OPENIDS_MIN:
            raise ValueError(
                f"a mass send by openid needs at least {MASS_OPENIDS_MIN} distinct openids, got {len(unique)}"
            )
        message = mass_content(msgtype, content, title, description)
        base_id = clientmsgid or new_client_id()
        chunks = balanced_chunks(unique, MASS_OPENIDS_MAX)
        msg_ids: list[int] = []
        done = 0
        if progress is not None:
            progress(done, len(unique))
        for index, chunk in enumerate(chunks):
            body = {
                "touser": chunk,
                **message,
                "send_ignore_reprint": int(send_ignore_reprint),
                "clientmsgid": base_id if len(chunks) == 1 else f"{base_id}-{index + 1}",
            }
            try:
                answer = self._mass_call("message/mass/send", body)
            except WeChatError as exc:
                if not msg_ids:
                    raise
                raise PartialMassSend(exc, msg_ids, base_id) from exc
            msg_id = str(answer_field(answer, "msg_id", "message/mass/send"))
            self._report_send(
                jobs.MASS,
                msg_id,
                f"openids:{len(chunk)}",
                {"msgtype": msgtype, "content": content, "msg_data_id": answer.get("msg_data_id")},
            )
            msg_ids.append(int(msg_id))
            done += len(chunk)
            if progress is not None:
                progress(done, len(unique))
        return msg_ids

    def mass_preview(
        self,
        msgtype: str,
        content: str,
        *,
        openid: str | None = None,
        wxname: str | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> int | None:
        """``message/mass/preview``: the message as one follower (by ``openid`` or WeChat ID ``wxname``) sees it.

        Not a mass send: no job is recorded and no finish event follows.  Returns WeChat's
        msg_id for it, if the answer carries one.
        """
        if (openid is None) == (wxname is None):
            raise ValueError("a preview goes to exactly one of openid or wxname")
        body = {
            **drop_none({"touser": openid, "towxname": wxname}),
            **mass_content(msgtype, content, title, description),
        }
        msg_id = self.call("message/mass/preview", body).get("msg_id")
        return None if msg_id is None else int(msg_id)

    def _mass_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A mass send; one WeChat already took under this clientmsgid counts as sent."""
        try:
            return self.call(path, body)
        except WeChatError as exc:
            if exc.errcode == CLIENTMSGID_EXISTS and exc.answer.get("msg_id"):
                log.info(
                    "%s: clientmsgid %s was sent before as msg_id %s", path, body["clientmsgid"], exc.answer["msg_id"]
                )
                return exc.answer
            raise

    def mass_delete(self, msg_id: int, article_idx: int | None = None) -> None:
        """``message/mass/delete``: withdraw a mass send (all articles, or the one at ``article_idx``, 1-based)."""
        self.call("message/mass/delete", drop_none({"msg_id": int(msg_id), "article_idx": article_idx}))

    def mass_status(self, msg_id: int) -> str:
        """``message/mass/get``: the send's status, e.g. ``SEND_SUCCESS``."""
        return str(self.call("message/mass/get", {"msg_id": int(msg_id)}, idempotent=True).get("msg_status"))

    def mass_speed(self) -> dict[str, int]:
        """``message/mass/speed/get``: ``speed`` (0 fastest to 4) and ``realspeed`` (10,000 followers a minute)."""
        answer = self.call("message/mass/speed/get", {}, idempotent=True)
        return {
            "speed": int(answer_field(answer, "speed", "message/mass/speed/get")),
            "realspeed": answer.get("realspeed"),
        }

    def set_mass_speed(self, speed: int) -> None:
        """``message/mass/speed/set``: 0 (fastest) to 4 (slowest)."""
        if speed not in MASS_SPEEDS:
            raise ValueError(f"mass send speed must be 0 to 4, got {speed}")
        self.call("message/mass/speed/set", {"speed": int(speed)}, idempotent=True)


def balanced_chunks(items: Sequence[str], most: int) -> list[list[str]]:
    """``items`` in the fewest chunks of at most ``most``, their sizes differing by at most one."""
    count = math.ceil(len(items) / most)
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


def mass_content(
    msgtype: str, content: str, title: str | None = None, description: str | None = None
) -> dict[str, Any]:
    """The ``msgtype`` and its object, as every mass call (send, sendall, preview) carries them."""
    if msgtype not in MASS_TYPES:
        raise ValueError(f"mass send type must be one of {', '.join(MASS_TYPES)}, got {msgtype!r}")
    if (title is not None or description is not None) and msgtype != "mpvideo":
        raise ValueError("title and description go only with an mpvideo mass send")
    key = {"text": "content", "wxcard": "card_id"}.get(msgtype, "media_id")
    return {msgtype: drop_none({key: content, "title": title, "description": description}), "msgtype": msgtype}
