"""Template messages: ``message/template/send``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import jobs
from .base import ClientBase, answer_field, new_client_id, pick


class TemplateMessages(ClientBase):
    def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        url: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
        client_msg_id: str | None = None,
        topcolor: str | None = None,
    ) -> int:
        """``message/template/send``; returns the msgid.  ``data`` maps each key to ``{"value", "color"}``.

        ``miniprogram`` is ``{"appid", "pagepath"}`` (pagepath optional): the mini program opened on a tap,
        before ``url``.  ``topcolor`` is the colour of the message's top bar (``#FF0000``), an older field
        that WeChat still takes.
        """
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": template_data(data),
            "client_msg_id": client_msg_id or new_client_id(),
        }
        if url:
            body["url"] = url
        if topcolor:
            body["topcolor"] = topcolor
        if miniprogram:
            body["miniprogram"] = pick(miniprogram, ("appid", "pagepath"), required=("appid",))
        answer = self.call("message/template/send", body)
        msgid = str(answer_field(answer, "msgid", "message/template/send"))
        self._report_send(jobs.TEMPLATE, msgid, f"openid:{openid}", {"template_id": template_id})
        return int(msgid)


def template_data(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Template ``data`` checked: each key maps to ``{"value": ..., "color": ...}`` (color optional)."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError("template data must be a non-empty object of {key: {value, color}}")
    checked = {}
    for key, item in data.items():
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, Mapping) or "value" not in item:
            raise ValueError(f'template data field {key!r} needs a "value"')
        checked[key] = pick(item, ("value", "color"), required=("value",))
    return checked
