"""The WeChat API client: the only code that talks HTTP to WeChat.

One ``requests.Session`` per client (connections are reused), a timeout on every
call, JSON sent as UTF-8 without ``\\u`` escapes (WeChat shows escapes literally),
and every failure raised as a :class:`app.errors.WeChatError`.  The access token
comes from :class:`app.access_token.TokenCache` and never appears in a log line or an
error message.  The client writes nothing but that cache: it reports each mass and
template send WeChat accepts to its ``on_send`` hook.

Each API group is a module of its own, and :class:`WeChatClient` has them all:

* :mod:`.base`: the call itself, retries, decoding, the token fetch, redaction;
* :mod:`.custom`: customer-service messages (``send_text``, ``send_news``, ``send_msgmenu``, ...);
* :mod:`.media`: ``upload_news``, ``upload_video``;
* :mod:`.mass`: ``mass_send_to_tag``, ``mass_send_to_all``, ``mass_send_to_openids``,
  ``mass_preview``, ``mass_delete``, ``mass_status``, ``mass_speed``, ``set_mass_speed``;
* :mod:`.template`: ``send_template``.
"""

from __future__ import annotations

from .base import ClientBase, redact
from .custom import CustomMessages
from .mass import MassSends, balanced_chunks
from .media import MediaUploads
from .template import TemplateMessages, template_data


class WeChatClient(CustomMessages, MediaUploads, MassSends, TemplateMessages):
    """``WeChatClient(settings, token_store, session=None, backoff=0.2, on_send=None)``: see :class:`ClientBase`."""


__all__ = ["ClientBase", "WeChatClient", "balanced_chunks", "redact", "template_data"]
