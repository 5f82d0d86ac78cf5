"""Handing slow work off: answer the follower at once, and send the result when it is ready.

::

    from app.handoff import later
    from app.signals import message_received

    def lookup(openid, question):          # module-level, so another process can import it
        return answer_slowly(question)     # a reply, a str, or None

    @message_received.connect_via("text")
    def ask(sender, message, **extra):
        later(lookup, message.from_user, message.content)
        return "正在查询，请稍候…"

``later`` takes an importable function and JSON-serialisable arguments, and
returns at once.  The function runs after the push is answered, in the worker's
pool or on the RQ queue (``WECHAT_TASK_QUEUE``); what it returns goes to the
follower who sent the push: through the customer-service API in
``customer_service`` mode, or in ``retry`` mode held for their next message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .tasks import Task, current, function_path


def later(function: Callable[..., Any] | str, *args: Any) -> None:
    """Run ``function(*args)`` after this push is answered; send what it returns to the follower.

    Call it from a receiver.  Raises ValueError for a function another process
    cannot import, TypeError for arguments that are not JSON, and RuntimeError
    outside a receiver.
    """
    handing = current.get()
    if handing is None:
        raise RuntimeError("later() is called from a receiver, while it handles a push")
    path = function_path(function)
    json.dumps(args)  # TypeError now, in the receiver, rather than later in a worker
    task = Task(handing.follower, handing.account, handing.how, function=path, args=tuple(args), push=handing.push)
    handing.tasks.append(task)
