"""Sending a typed push to one app's receivers and picking the reply.

blinker's own ``send`` calls every receiver connected anywhere in the process,
stops at the first that raises and promises no order.  Here the app's
:class:`app.plugins.Plugins` names the receivers and their order: the plugins'
(``WECHAT_PLUGINS``, then entry points; each plugin's in the order it connected
them), then the app's own, then those connected at run time outside an import.
Every receiver runs; one that raises is logged and skipped; the first reply wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blinker import Signal

from . import signals
from .messages import Event, MassSendJobFinishEvent, Message, Push, TemplateSendJobFinishEvent
from .plugins import Plugins, PluginStore
from .replies import Reply, as_reply

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    reply: Reply | None = None
    failures: int = 0


def dispatch(push: Push, plugins: Plugins, *, store: Store | None = None, **extra: Any) -> Outcome:
    """Run every receiver ``plugins`` has for ``push``; the first reply in their order wins.

    ``extra`` (the client) is passed to every receiver as is; ``store`` reaches them
    as a :class:`app.plugins.PluginStore`, which holds only the plugins' own values.
    """
    if store is not None:
        extra["store"] = PluginStore(store)
    outcome = Outcome()
    for signal, sender, kwargs in _deliveries(push):
        for receiver in plugins.receivers_of(signal, sender):
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


def _name(receiver: object) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"
