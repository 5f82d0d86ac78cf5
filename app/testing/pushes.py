"""The plugin author's test kit: build a push, sign it, encrypt it, post it.

::

    from app import create_app
    from app.testing import PushClient, text_push

    def test_my_plugin():
        app = create_app({"WECHAT_TOKEN": "t", "WECHAT_PLUGINS": "my_plugin"})
        answer = PushClient(app).post(text_push("hello"))
        assert answer.content == "HELLO"

:class:`PushClient` signs exactly as WeChat does (and in safe mode encrypts the
push and decrypts the reply), so a test goes through the whole request path.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Flask
from lxml import etree

from .. import crypto
from ..replies import cdata
from ..state import get_state

_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


def build_push(
    msg_type: str,
    fields: dict[str, object] | None = None,
    *,
    to_user: str = "gh_test",
    from_user: str = "o_test_user",
    create_time: int | None = None,
) -> bytes:
    """A push as WeChat would send it: strings in CDATA, integers bare."""
    parts = [
        f"<ToUserName>{cdata(to_user)}</ToUserName>",
        f"<FromUserName>{cdata(from_user)}</FromUserName>",
        f"<CreateTime>{int(time.time()) if create_time is None else create_time}</CreateTime>",
        f"<MsgType>{cdata(msg_type)}</MsgType>",
    ]
    for name, value in (fields or {}).items():
        text = str(value) if isinstance(value, int) else cdata(str(value))
        parts.append(f"<{name}>{text}</{name}>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def text_push(content: str, **options: object) -> bytes:
    """A text message with a fresh MsgId."""
    return build_push("text", {"Content": content, "MsgId": next(_msg_ids)}, **options)


def event_push(event: str, fields: dict[str, object] | None = None, **options: object) -> bytes:
    """An event push, e.g. ``event_push("subscribe")`` or ``event_push("CLICK", {"EventKey": "menu"})``."""
    return build_push("event", {"Event": event, **(fields or {})}, **options)


def signed_query(token: str, *, timestamp: int | None = None, nonce: str | None = None, **extra: str) -> dict[str, str]:
    """``signature``, ``timestamp`` and ``nonce`` as WeChat puts them in the callback URL."""
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or crypto.new_nonce()
    return {
        "signature": crypto.sign(token, timestamp_text, nonce),
        "timestamp": timestamp_text,
        "nonce": nonce,
        **extra,
    }


def encrypt_push(
    xml: bytes, token: str, envelope: crypto.AESEnvelope, query: dict[str, str], *, to_user: str = "gh_test"
) -> tuple[bytes, dict[str, str]]:
    """The safe-mode body for ``xml`` and the query that goes with it (``encrypt_type``, ``msg_signature``)."""
    encrypted = envelope.encrypt(xml)
    msg_signature = crypto.sign(token, query["timestamp"], query["nonce"], encrypted)
    body = f"<xml><ToUserName>{cdata(to_user)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()
    return body, {**query, "encrypt_type": "aes", "msg_signature": msg_signature}


def open_reply(body: bytes, token: str, envelope: crypto.AESEnvelope | None) -> bytes:
    """The reply XML inside a response body, checking a safe-mode envelope's signature."""
    if envelope is None or not body.startswith(b"<xml><Encrypt>"):
        return body
    root = etree.fromstring(body)
    encrypted = root.findtext("Encrypt")
    crypto.check_signature(
        root.findtext("MsgSignature"), token, root.findtext("TimeStamp"), root.findtext("Nonce"), encrypted
    )
    return envelope.decrypt(encrypted)


@dataclass
class CallbackAnswer:
    """What the callback answered to a push."""

    status: int
    body: bytes  # the decrypted reply XML, or b"success"
    raw: bytes  # the body as sent, encrypted in safe mode

    @property
    def xml(self) -> etree._Element | None:
        return None if self.body == b"success" or self.status != 200 else etree.fromstring(self.body)

    def field(self, path: str) -> str | None:
        root = self.xml
        return None if root is None else root.findtext(path)

    @property
    def success(self) -> bool:
        """Whether the callback answered ``success``: no handler replied."""
        return self.status == 200 and self.body == b"success"

    @property
    def msg_type(self) -> str | None:
        return self.field("MsgType")

    @property
    def content(self) -> str | None:
        return self.field("Content")


class PushClient:
    """Posts pushes to an app the way WeChat does, through Flask's test client."""

    def __init__(self, app: Flask, safe_mode: bool = False) -> None:
        self.app = app
        self.state = get_state(app)
        self.safe_mode = safe_mode
        if safe_mode and self.state.envelope is None:
            raise ValueError("safe mode needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID")
        self.client = app.test_client()

    def post(self, xml: bytes, **query_options: object) -> CallbackAnswer:
        token = self.state.settings.signing_token
        query = signed_query(token, **query_options)
        body = xml
        if self.safe_mode:
            body, query = encrypt_push(xml, token, self.state.envelope, query)
        response = self.client.post(
            f"{self.state.settings.callback_path}?{urlencode(query)}", data=body, content_type="text/xml"
        )
        raw = response.get_data()
        opened = open_reply(raw, token, self.state.envelope) if self.safe_mode and response.status_code == 200 else raw
        return CallbackAnswer(response.status_code, opened, raw)
