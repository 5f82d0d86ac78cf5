"""Work that goes on after a delivery is answered: late sends, hand-offs, the rest of a long text.

Each piece of such work is a :class:`Task`, plain data that survives JSON, so it
can run anywhere: in this worker's pool (the default), or, with
``WECHAT_TASK_QUEUE=rq``, on the RQ queue ``wechat`` in the store's Redis, where
``rq worker`` processes on any host build the app from the same settings
(:func:`perform_queued`).  A handler that is already running stays where it is;
only the work after it moves.

A task delivers replies to one follower, in order, one of two ways:

* ``customer_service``: through ``message/custom/send``.  A send WeChat refuses
  (45015 outside the 48 hours, 45047 over the limit, 48001 no permission), or a
  reply with no customer-service form, is held instead, with the ones after it.
* ``hold``: kept in the store for the follower; each next message of theirs takes
  the oldest.  A hold that runs out (a day) is journalled ``late_reply_failed``.

A hand-off task first runs an importable function with JSON arguments, and
delivers what it returns (see :mod:`app.handoff`).
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import WeChatError
from .replies import Reply, as_reply, reply_from_dict, reply_to_dict
from .reply_policy import addressed_xml, parts

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

CUSTOMER_SERVICE, HOLD = "customer_service", "hold"
HOLD_FOR = 86400.0  # a held reply waits a day for the follower's next message
QUEUE = "wechat"
REFUSED_SENDS = (45015, 45047, 48001)  # WeChat will not send this now: hold it instead


@dataclass(frozen=True)
class Task:
    follower: str  # the follower's openid
    account: str  # the official account's id (a held reply comes from it)
    how: str  # CUSTOMER_SERVICE or HOLD
    replies: tuple[dict[str, Any], ...] = ()  # replies, as data, to deliver in order
    function: str | None = None  # a hand-off: "module:qualname", whose result is delivered after the replies
    args: tuple[Any, ...] = ()
    push: str = ""  # the push's key, for the log

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "replies": list(self.replies), "args": list(self.args)})

    @classmethod
    def from_json(cls, text: str) -> Task:
        data = json.loads(text)
        return cls(**{**data, "replies": tuple(data["replies"]), "args": tuple(data["args"])})

    @classmethod
    def deliver(cls, follower: str, account: str, how: str, replies: list[Reply], push: str = "") -> Task:
        return cls(follower, account, how, tuple(reply_to_dict(reply) for reply in replies), push=push)


@dataclass
class Handing:
    """What a receiver's :func:`app.handoff.later` needs to know: whose push, and where work goes."""

    follower: str
    account: str
    push: str
    how: str
    tasks: list[Task] = field(default_factory=list)  # scheduled once the push is answered


current: contextvars.ContextVar[Handing | None] = contextvars.ContextVar("wechat_handing", default=None)


def perform(pipeline: Pipeline, task: Task) -> None:
    """Run ``task`` with ``pipeline``'s client, store and settings (in the app context)."""
    replies = [reply_from_dict(data) for data in task.replies]
    if task.function is not None:
        result = as_reply(import_function(task.function)(*task.args))
        if result is not None:
            replies += parts(result, pipeline.settings, held=task.how == HOLD)
    deliver(pipeline, task, replies)


def deliver(pipeline: Pipeline, task: Task, replies: list[Reply]) -> None:
    from .late import send  # the customer-service form of each reply type

    for index, reply in enumerate(replies):
        if task.how == CUSTOMER_SERVICE:
            try:
                send(pipeline.client, task.follower, reply)
                continue
            except WeChatError as exc:
                if exc.errcode not in REFUSED_SENDS:
                    log.error("a late reply to %s is lost: WeChat refused it (%s)", task.push or task.follower, exc)
                    continue
                log.warning("WeChat will not send to %s now (%s); holding the rest", task.follower, exc)
            except TypeError as exc:
                log.warning("a late reply to %s is held: %s", task.push or task.follower, exc)
        for held in replies[index:]:
            xml = addressed_xml(held, task.follower, task.account, time.time())
            pipeline.store.hold_reply(task.follower, xml, HOLD_FOR, task.push)
        return


def import_function(path: str) -> Callable[..., Any]:
    """The function named ``module:qualname``."""
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for name in qualname.split("."):
        target = getattr(target, name)
    return target


def function_path(function: Callable[..., Any] | str) -> str:
    """``module:qualname`` of an importable function; ValueError for one that cannot be found again."""
    if isinstance(function, str):
        path = function if ":" in function else function.rpartition(".")[0] + ":" + function.rpartition(".")[2]
    else:
        path = f"{function.__module__}:{function.__qualname__}"
    if "<locals>" in path or "<lambda>" in path:
        raise ValueError(f"{path} cannot be imported by another process: hand off a module-level function")
    try:
        import_function(path)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{path} cannot be imported: {exc}") from None
    return path


# --- where tasks run ----------------------------------------------------------


class EmbeddedQueue:
    """Tasks in the worker's own pool: the default."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def schedule(self, task: Task) -> None:
        self.pipeline.runner.submit(perform, self.pipeline, task)


class RQQueue:
    """Tasks on the RQ queue ``wechat`` in the store's Redis."""

    def __init__(self, redis_url: str) -> None:
        import redis
        from rq import Queue

        self.queue = Queue(QUEUE, connection=redis.Redis.from_url(redis_url))

    def schedule(self, task: Task) -> None:
        self.queue.enqueue("app.tasks.perform_queued", task.to_json(), job_timeout=600, result_ttl=3600)


_app = None


def perform_queued(task_json: str) -> None:
    """What an ``rq worker`` runs: the task, with an app built from the same ``WECHAT_*`` settings."""
    global _app
    from . import create_app
    from .state import get_state

    if _app is None:
        _app = create_app()
    with _app.app_context():
        perform(get_state(_app).pipeline, Task.from_json(task_json))
