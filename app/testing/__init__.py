"""Testing a plugin: pushes posted the way WeChat posts them, and a fake WeChat API.

The push kit (:mod:`app.testing.pushes`), :func:`fresh_push` and the sample pushes
(:mod:`app.testing.samples`) are re-exported here::

    from app.testing import PushClient, sample, text_push

The fake WeChat API (:mod:`app.testing.fakeapi`) is not: import
``FakeWeChatAPI`` from its module, or run it on its own with
``python -m app.testing.fakeapi [--port N]``.  The pytest fixtures that put these
together are in the top-level module ``pytest_wechat``, which pytest loads by itself.
"""

from .fresh import fresh_push, new_msg_id
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
from .samples import sample, sample_names, sample_path

__all__ = [
    "CallbackAnswer",
    "PushClient",
    "build_push",
    "encrypt_push",
    "event_push",
    "fresh_push",
    "new_msg_id",
    "open_reply",
    "sample",
    "sample_names",
    "sample_path",
    "signed_query",
    "text_push",
]
