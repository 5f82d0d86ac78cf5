"""The README's way of serving: gunicorn with gunicorn.conf.py, real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import requests

from app.crypto import AESEnvelope
from app.testing import encrypt_push, open_reply, signed_query, text_push
from tests.conftest import AES_KEY, APP_ID, TOKEN
from tests.servers import serve


def test_served_callback_verifies_echoes_and_encrypts(tmp_path):
    envelope = AESEnvelope(AES_KEY, APP_ID)
    with serve(tmp_path) as served:
        base_url = served.base_url
        verify = requests.get(f"{base_url}/wechat?{urlencode(signed_query(TOKEN, echostr='hello-wechat'))}", timeout=5)
        assert (verify.status_code, verify.text) == (200, "hello-wechat")

        plain = requests.post(
            f"{base_url}/wechat?{urlencode(signed_query(TOKEN))}", data=text_push("纯文本"), timeout=5
        )
        assert plain.status_code == 200
        assert plain.headers["Content-Type"].startswith("application/xml")
        assert "<Content><![CDATA[纯文本]]></Content>" in plain.content.decode()

        body, query = encrypt_push(text_push("加密 😀"), TOKEN, envelope, signed_query(TOKEN))
        safe = requests.post(f"{base_url}/wechat?{urlencode(query)}", data=body, timeout=5)
        assert safe.status_code == 200
        assert "<Content><![CDATA[加密 😀]]></Content>" in open_reply(safe.content, TOKEN, envelope).decode()


SLOW_SENDER = """
from app.signals import message_received


@message_received.connect_via("text")
def forward(sender, message, client, **extra):
    if message.content == "slow":
        client.send_text(message.from_user, "sent from a handler")
        return "sent"
    return "fast: " + message.content
"""


def test_a_slow_send_in_a_handler_does_not_hold_up_the_workers_other_requests(tmp_path):
    import concurrent.futures

    from app.testing.fakeapi import FakeWeChatAPI

    (tmp_path / "slow_sender.py").write_text(SLOW_SENDER)
    with FakeWeChatAPI() as fake:
        fake.slow("message/custom/send", 3.0)
        with serve(
            tmp_path,
            PYTHONPATH=str(tmp_path),
            WECHAT_PLUGINS="slow_sender",
            WECHAT_API_BASE_URL=fake.base_url,
            WECHAT_APP_SECRET=fake.app_secret,
            WECHAT_APP_ID=fake.app_id,
            WECHAT_ENCODING_AES_KEY="",
            GUNICORN_WORKERS="1",
        ) as served:
            base_url = served.base_url

            def post(content: str) -> tuple[str, float]:
                started = time.monotonic()
                answer = requests.post(
                    f"{base_url}/wechat?{urlencode(signed_query(TOKEN))}", data=text_push(content), timeout=10
                )
                return answer.text, time.monotonic() - started

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                slow = pool.submit(post, "slow")
                time.sleep(0.3)  # the slow handler is now waiting on the API
                fast_text, fast_took = post("quick")
                slow_text, slow_took = slow.result()

    assert "fast: quick" in fast_text
    assert fast_took < 1.5
    assert "<Content><![CDATA[sent]]></Content>" in slow_text
    assert slow_took >= 3.0
    [sent] = fake.requests_to("message/custom/send")
    assert sent.json["text"] == {"content": "sent from a handler"}
