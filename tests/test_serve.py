"""The README's way of serving: gunicorn with gunicorn.conf.py, real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import requests

from app.crypto import AESEnvelope
from app.testing import encrypt_push, open_reply, signed_query, text_push
from tests.conftest import AES_KEY, APP_ID, TOKEN
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def serve(tmp_path: Path, **env_overrides: str):
    """gunicorn wsgi:app on a free loopback port; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "GUNICORN_"))}
    env.update(
        WECHAT_TOKEN=TOKEN,
        WECHAT_APP_ID=APP_ID,
        WECHAT_ENCODING_AES_KEY=AES_KEY,
        WECHAT_PLUGINS="app.plugins.echo",
        WECHAT_STORE_URL=f"sqlite:///{tmp_path}/served.sqlite3",
        GUNICORN_BIND=f"127.0.0.1:{port}",
    )
    env.update(env_overrides)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_served_callback_verifies_echoes_and_encrypts(tmp_path):
    envelope = AESEnvelope(AES_KEY, APP_ID)
    with serve(tmp_path) as base_url:
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

    from app.fakeapi import FakeWeChatAPI

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
        ) as base_url:

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
