"""The benchmark's pushes: built, signed and (in safe mode) encrypted ahead of time,
and the independent checker of the replies.

Pushes are built with the project's own test kit (``app.testing``), exactly as
WeChat sends them.  Replies are checked here with code that shares nothing with
the project: the standard library's XML parser, ``hashlib`` for the signature and
``cryptography`` for AES, so a project bug cannot hide behind its own helpers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import struct
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlencode

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from app import crypto as app_crypto  # noqa: E402
from app.testing import build_push, encrypt_push, signed_query  # noqa: E402

TOKEN = "bench_token_Xy7"
APP_ID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 base64 characters
TO_USER = "gh_bench_account"
FROM_USER = "oBench_follower_0001"
PATH = "/wechat"

ENV = {
    "WECHAT_TOKEN": TOKEN,
    "WECHAT_APP_ID": APP_ID,
    "WECHAT_ENCODING_AES_KEY": AES_KEY,
    # With an AES key the project's default mode is safe, which refuses plaintext pushes with a
    # 403; compatible takes both, so one server (and one app in-process) serves both modes.
    "WECHAT_MESSAGE_MODE": "compatible",
}

# The text mix: ASCII, Chinese, emoji, XML-special characters, and mixtures.
TEXTS = (
    "hello world",
    "The quick brown fox jumps over the lazy dog 0123456789",
    "你好，世界！今天天气怎么样？",
    "请帮我查一下订单 #20240518 的物流状态，谢谢。",
    "👍🎉😀🚀🔥",
    "ok 👌 好的 🙏",
    "<b>bold</b> & <i>\"quoted\"</i> 'single' a<b>c",
    'if (a < b && c > d) { return "x&y"; }',
    '混合 mixed <tag attr="v"> & 表情 😂 ]] > done',
    "x",
)

MSG_IDS = itertools.count(int(time.time() * 1000) * 1000 + os.getpid() % 1000 * 10**9)

_ENVELOPE = app_crypto.AESEnvelope(AES_KEY, APP_ID)


@dataclass
class Push:
    target: str  # path and query
    body: bytes
    content: str  # the text sent, which an echo must send back


def make_pushes(n: int, safe: bool, start: int = 0) -> list[Push]:
    """``n`` distinct text pushes: each its own MsgId and nonce, timestamps of now."""
    pushes = []
    for i in range(start, start + n):
        content = f"{TEXTS[i % len(TEXTS)]} #{i}"
        xml = build_push("text", {"Content": content, "MsgId": next(MSG_IDS)}, to_user=TO_USER, from_user=FROM_USER)
        query = signed_query(TOKEN)
        body = xml
        if safe:
            body, query = encrypt_push(xml, TOKEN, _ENVELOPE, query, to_user=TO_USER)
        pushes.append(Push(f"{PATH}?{urlencode(query)}", body, content))
    return pushes


def write_wrk_file(path: str, pushes: list[Push]) -> None:
    """Two lines a push, the target then the body (bodies never hold a newline)."""
    with open(path, "wb") as out:
        for push in pushes:
            if b"\n" in push.body:
                raise ValueError("a push body holds a newline")
            out.write(push.target.encode() + b"\n" + push.body + b"\n")


# --- checking replies, independently of the project ---------------------------


class BadReply(AssertionError):
    pass


_KEY = base64.b64decode(AES_KEY + "=")


def _open_envelope(body: bytes) -> bytes:
    root = ET.fromstring(body)
    encrypted = (root.findtext("Encrypt") or "").strip()
    signature = (root.findtext("MsgSignature") or "").strip()
    timestamp = (root.findtext("TimeStamp") or "").strip()
    nonce = (root.findtext("Nonce") or "").strip()
    expected = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce, encrypted])).encode()).hexdigest()
    if signature != expected:
        raise BadReply(f"reply MsgSignature {signature!r} does not sign it (expected {expected!r})")
    decryptor = Cipher(algorithms.AES(_KEY), modes.CBC(_KEY[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    plain = plain[: -plain[-1]]
    (length,) = struct.unpack(">I", plain[16:20])
    xml, app_id = plain[20 : 20 + length], plain[20 + length :]
    if app_id != APP_ID.encode():
        raise BadReply(f"reply is encrypted for appid {app_id!r}")
    return xml


def check_reply(app: str, safe: bool, push: Push, status: int, body: bytes) -> None:
    """Raise :class:`BadReply` unless ``body`` is the right answer of ``app`` to ``push``."""
    if status != 200:
        raise BadReply(f"HTTP {status}: {body[:200]!r}")
    if app == "bare":
        if body != b"success":
            raise BadReply(f"bare route answered {body[:100]!r}")
        return
    if safe:
        if b"<Encrypt>" not in body:
            raise BadReply(f"safe-mode reply is not encrypted: {body[:200]!r}")
        body = _open_envelope(body)
    root = ET.fromstring(body)
    checks = {
        "MsgType": "text",
        "Content": push.content,
        "ToUserName": FROM_USER,
        "FromUserName": TO_USER,
    }
    for tag, want in checks.items():
        got = root.findtext(tag)
        if got != want:
            raise BadReply(f"reply {tag} is {got!r}, sent {want!r}")
    created = int(root.findtext("CreateTime") or 0)
    if abs(created - time.time()) > 60:
        raise BadReply(f"reply CreateTime {created} is not now")
