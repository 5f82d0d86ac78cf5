"""A small plugin: it echoes text, greets a new follower, and answers a menu click through the API.

Run it: ``WECHAT_PLUGINS=echo_bot`` with this folder on the Python path.
"""

from __future__ import annotations

from app.replies import TextReply
from app.routes import on_click, on_subscribe
from app.signals import message_received

GREETING = "Welcome! Send me anything and I will say it back."
CONTACT = "Write to us at help@example.com, we answer within a day."


@message_received.connect_via("text")  # the signal itself: every text message
def echo(sender, message, **extra):
    """A text message is answered with itself, quoted."""
    return TextReply(f"You said: {message.content}")


@on_subscribe()  # a route: the function takes only what it names
def greet(event):
    """A follow is answered with a greeting (a ``str`` is a text reply)."""
    return GREETING


@on_click("MENU_CONTACT_US")
def contact_us(event, client):
    """The "contact us" menu item: the answer goes out as a customer-service message, not as the reply."""
    client.send_text(event.from_user, CONTACT)
