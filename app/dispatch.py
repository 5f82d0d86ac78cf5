"""Sending a typed push through the signals and picking the reply.

blinker's own ``send`` stops at the first receiver that raises and does not
promise an order; here every receiver runs, in the order plugins connected them,
and a failing one is logged without stopping the others.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from typing import Any

from dataclasses import dataclass

from blinker import Signal

from . import signals
from .plugins import runs_in
from .messages import Event, MassSendJobFinishEvent, Message, Push, TemplateSendJobFinishEvent
from .replies import Reply, as_reply

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    reply: Reply | None = None
    failures: int = 0


def dispatch(push: Push, plugins: frozenset[str], **extra: Any) -> Outcome:
    """Run every receiver of ``push``; the first reply in plugin order wins.

    ``plugins`` are the plugin modules of the app handling the push; ``extra``
    (the client, the store) is passed to every receiver.
    """
    outcome = Outcome()
    for signal, sender, kwargs in _deliveries(push):
        for receiver in ordered_receivers(signal, sender):
            if not runs_in(receiver, plugins):
                continue
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


def ordered_receivers(signal: Signal, sender: str) -> list:
    """The receivers for ``sender`` in the order they were connected."""
    matching = list(signal.receivers_for(sender))
    if len(matching) < 2:
        return matching
    ordered = []
    for ref in signal.receivers.values():
        receiver = ref() if isinstance(ref, weakref.ref) else ref
        if receiver is not None and receiver in matching:
            ordered.append(receiver)
    return ordered


def _name(receiver: object) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"
