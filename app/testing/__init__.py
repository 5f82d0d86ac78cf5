"""Testing a plugin: pushes posted the way WeChat posts them, and a fake WeChat API.

The push kit (:mod:`app.testing.pushes`) is re-exported here::

    from app.testing import PushClient, text_push

The fake WeChat API (:mod:`app.testing.fakeapi`) is not: import
``FakeWeChatAPI`` from its module, or run it on its own with
``python -m app.testing.fakeapi [--port N]``.
"""

from .pushes import (
    CallbackAnswer,
    PushClient,
    build_push,
    encrypt_push,
    event_push,
    open_reply,
    signed_query,
    text_push,
)

__all__ = [
    "CallbackAnswer",
    "PushClient",
    "build_push",
    "encrypt_push",
    "event_push",
    "open_reply",
    "signed_query",
    "text_push",
]
