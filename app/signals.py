"""The signals a plugin connects to.  With :mod:`app.routes` (their decorators), the plugin API.

::

    from app.signals import message_received, event_received
    from app.replies import TextReply

    @message_received.connect_via("text")
    def echo(sender, message):
        return TextReply(message.content)

    @event_received.connect_via("subscribe")
    def welcome(event):
        return "Thanks for following!"

``message_received`` is sent with the message type as sender (``"text"``,
``"image"``, ``"voice"``, ``"video"``, ``"shortvideo"``, ``"location"``,
``"link"``, ``"miniprogrampage"``, or whatever new type WeChat sends) and the
typed message as ``message``.  ``event_received`` is sent with the event name in
lower case as sender (``"subscribe"``, ``"scan"``, ``"click"``,
``"masssendjobfinish"``, ...) and the typed event as ``event``; a receiver
connected for ``"CLICK"`` gets the clicks too.  The send-finish events are also
sent on their own signals, for code that tracks sends.

A receiver takes only what it names, read from its signature once, at start-up:
the sender as its first parameter (unless that parameter bears one of the names
below), then any of ``message`` (or ``event``), ``client`` (the
:class:`app.client.WeChatClient` for outbound calls), ``store`` (an
:class:`app.plugins.PluginStore`: short values with an expiry, ``get``, ``set``,
``add`` and ``delete``, under keys of the plugins' own), ``session`` (the
follower's :class:`app.session.Session`) and ``settings`` (the app's
:class:`app.settings.Settings`).  ``**extra`` takes them all but ``session``,
which is made only for a receiver that names it.  A receiver that names anything
else stops start-up with one line naming it.

A receiver runs in the apps that loaded the plugin that connected it: what a
plugin module connects while it is imported, and what the modules it imports
connect meanwhile (a package's submodules, a helper module).

A receiver's return value is the passive reply: a reply from :mod:`app.replies`,
a ``str`` (a text reply) or ``None``.  The first reply in plugin order wins; the
other receivers still run.  A receiver that raises is logged with its traceback
and does not stop the others.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

message_received = _signals.signal("message-received", doc="A follower sent a message; sender is its MsgType.")
event_received = _signals.signal("event-received", doc="An event arrived; sender is its Event in lower case.")
mass_send_finished = _signals.signal("mass-send-finished", doc="A MASSSENDJOBFINISH event; sent with event=.")
template_send_finished = _signals.signal(
    "template-send-finished", doc="A TEMPLATESENDJOBFINISH event; sent with event=."
)
