"""A small plugin: it echoes text, greets a new follower, and answers a menu click through the API.

Run it: ``WECHAT_PLUGINS=echo_bot`` with this folder on the Python path.
"""

from __future__ import annotations

from app.replies import TextReply
from app.signals import event_received, message_received

GREETING = "Welcome! Send me anything and I will say it back."
CONTACT = "Write to us at help@example.com, we answer within a day."


@message_received.connect_via("text")
def echo(sender, message, **extra):
    """A text message is answered with itself, quoted."""
    return TextReply(f"You said: {message.content}")


@event_received.connect_via("subscribe")
def greet(sender, event, **extra):
    """A follow is answered with a greeting (a ``str`` is a text reply)."""
    return GREETING


@event_received.connect_via("click")
def menu(sender, event, client, **extra):
    """The "contact us" menu item: the answer goes out as a customer-service message, not as the reply."""
    if event.event_key == "MENU_CONTACT_US":
        client.send_text(event.from_user, CONTACT)
