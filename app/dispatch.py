"""Sending a typed push through the signals and picking the reply.

blinker's own ``send`` stops at the first receiver that raises and does not
promise an order.  Here every receiver runs, plugins first in the order the app
lists them (``WECHAT_PLUGINS``, then entry points), each plugin's receivers in
the order it connected them; a receiver that raises is logged and skipped.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from blinker import Signal

from . import signals
from .messages import Event, MassSendJobFinishEvent, Message, Push, TemplateSendJobFinishEvent
from .plugins import is_plugin_module, plugin_of
from .replies import Reply, as_reply

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    reply: Reply | None = None
    failures: int = 0


def dispatch(push: Push, plugins: tuple[str, ...], **extra: Any) -> Outcome:
    """Run every receiver of ``push``; the first reply in plugin order wins.

    ``plugins`` are the plugin modules of the app handling the push, in order;
    ``extra`` (the client, the store) is passed to every receiver.
    """
    outcome = Outcome()
    for signal, sender, kwargs in _deliveries(push):
        for receiver in receivers_in_order(signal, sender, plugins):
            try:
                result = as_reply(receiver(sender, **kwargs, **extra))
            except Exception:
                outcome.failures += 1
                log.exception("handler %s failed on %s %r", _name(receiver), push.msg_type, sender)
                continue
            if outcome.reply is None:
                outcome.reply = result
    return outcome


def _deliveries(push: Push) -> Iterator[tuple[Signal, str, dict[str, Any]]]:
    if isinstance(push, Event):
        kwargs = {"event": push}
        yield signals.event_received, push.name, kwargs
        if isinstance(push, MassSendJobFinishEvent):
            yield signals.mass_send_finished, push.name, kwargs
        elif isinstance(push, TemplateSendJobFinishEvent):
            yield signals.template_send_finished, push.name, kwargs
    elif isinstance(push, Message):
        yield signals.message_received, push.msg_type.lower(), {"message": push}


def receivers_in_order(signal: Signal, sender: str, plugins: tuple[str, ...]) -> list[Any]:
    """The receivers of ``sender`` that run in an app with ``plugins``, in plugin order.

    A receiver from a plugin module runs only in the apps that loaded that plugin
    (signals are process-wide); receivers from other modules run everywhere, after
    the plugins' ones.
    """
    matching = [receiver for receiver in signal.receivers_for(sender) if _runs_in(receiver, plugins)]
    if len(matching) < 2:
        return matching
    rank = {name: index for index, name in enumerate(plugins)}
    ordered = []
    for position, ref in enumerate(signal.receivers.values()):
        receiver = ref() if isinstance(ref, weakref.ref) else ref
        if receiver is not None and receiver in matching:
            plugin = plugin_of(getattr(receiver, "__module__", None), plugins)
            ordered.append((rank.get(plugin, len(rank)), position, receiver))
    return [receiver for _, _, receiver in sorted(ordered, key=lambda item: item[:2])]


def _runs_in(receiver: object, plugins: tuple[str, ...]) -> bool:
    module = getattr(receiver, "__module__", None)
    return plugin_of(module, plugins) is not None or not is_plugin_module(module)


def _name(receiver: object) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"
