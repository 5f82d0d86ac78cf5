"""Mass sends: ``message/mass/sendall`` (by tag, or to every follower), ``message/mass/send``
(to a list of openids), and their withdrawal and status."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .. import jobs
from ..errors import PartialMassSend, WeChatError
from .base import ClientBase, answer_field, drop_none, new_client_id

log = logging.getLogger(__name__)

MASS_OPENIDS_MIN, MASS_OPENIDS_MAX = 2, 10_000
CLIENTMSGID_EXISTS = 45065  # WeChat's answer to a repeated clientmsgid, with the first send's msg_id
MASS_TYPES = ("mpnews", "text", "voice", "image", "mpvideo")


class MassSends(ClientBase):
    def mass_send_to_tag(
        self,
        msgtype: str,
        content: str,
        tag_id: int | None = None,
        *,
        send_ignore_reprint: bool = False,
        clientmsgid: str | None = None,
    ) -> int:
        """``message/mass/sendall`` to the followers with ``tag_id``, or to all followers when it is None.

        ``content`` is the text for ``text`` and the media_id otherwise.  Returns the msg_id.
        """
        target_filter: dict[str, Any] = (
            {"is_to_all": True} if tag_id is None else {"is_to_all": False, "tag_id": int(tag_id)}
        )
        body = {
            "filter": target_filter,
            **_mass_content(msgtype, content),
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
    ) -> list[int]:
        """``message/mass/send`` to a list of openids; returns one msg_id per call.

        Repeats are sent once.  WeChat takes 2 to 10,000 openids a call, so a longer
        list is split into balanced calls (10,001 openids make two calls of ~5,000).
        """
        unique = list(dict.fromkeys(o.strip() for o in openids if o and o.strip()))
        if len(unique) < MASS_OPENIDS_MIN:
            raise ValueError(
                f"a mass send by openid needs at least {MASS_OPENIDS_MIN} distinct openids, got {len(unique)}"
            )
        base_id = clientmsgid or new_client_id()
        chunks = balanced_chunks(unique, MASS_OPENIDS_MAX)
        msg_ids: list[int] = []
        for index, chunk in enumerate(chunks):
            body = {
                "touser": chunk,
                **_mass_content(msgtype, content),
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
        return msg_ids

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
        """``message/mass/delete``: withdraw a mass send (all articles, or the one at ``article_idx``)."""
        self.call("message/mass/delete", drop_none({"msg_id": int(msg_id), "article_idx": article_idx}))

    def mass_status(self, msg_id: int) -> str:
        """``message/mass/get``: the send's status, e.g. ``SEND_SUCCESS``."""
        return str(self.call("message/mass/get", {"msg_id": int(msg_id)}, idempotent=True).get("msg_status"))


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


def _mass_content(msgtype: str, content: str) -> dict[str, Any]:
    if msgtype not in MASS_TYPES:
        raise ValueError(f"mass send type must be one of {', '.join(MASS_TYPES)}, got {msgtype!r}")
    key = "content" if msgtype == "text" else "media_id"
    return {msgtype: {key: content}, "msgtype": msgtype}
