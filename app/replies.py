"""Typed passive replies -> XML.

A handler returns one of these (or a plain ``str``, taken as a text reply) and the
callback renders it with :func:`render`.  Any text is made safe for XML here:
characters XML 1.0 forbids are dropped and ``]]>`` is split across two CDATA
sections, so every reply is well-formed whatever a user or handler put in it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Characters XML 1.0 cannot carry: C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# WeChat's article limits for a passive news reply.
MAX_ARTICLES_FOR_MESSAGE = 1
MAX_ARTICLES_FOR_EVENT = 8


def cdata(text: str) -> str:
    """``text`` as CDATA that cannot break out of itself."""
    if not text.isalnum():  # ids and plain words need neither step
        text = _FORBIDDEN.sub("", text).replace("]]>", "]]]]><![CDATA[>")
    return "<![CDATA[" + text + "]]>"


@dataclass(frozen=True)
class TextReply:
    content: str
    msg_type = "text"

    def body(self) -> str:
        return f"<Content>{cdata(self.content)}</Content>"


@dataclass(frozen=True)
class ImageReply:
    media_id: str
    msg_type = "image"

    def body(self) -> str:
        return f"<Image><MediaId>{cdata(self.media_id)}</MediaId></Image>"


@dataclass(frozen=True)
class VoiceReply:
    media_id: str
    msg_type = "voice"

    def body(self) -> str:
        return f"<Voice><MediaId>{cdata(self.media_id)}</MediaId></Voice>"


@dataclass(frozen=True)
class VideoReply:
    media_id: str
    title: str | None = None
    description: str | None = None
    msg_type = "video"

    def body(self) -> str:
        return (
            f"<Video><MediaId>{cdata(self.media_id)}</MediaId>"
            f"{_optional('Title', self.title)}{_optional('Description', self.description)}</Video>"
        )


@dataclass(frozen=True)
class MusicReply:
    thumb_media_id: str
    music_url: str | None = None
    hq_music_url: str | None = None
    title: str | None = None
    description: str | None = None
    msg_type = "music"

    def body(self) -> str:
        return (
            f"<Music>{_optional('Title', self.title)}{_optional('Description', self.description)}"
            f"{_optional('MusicUrl', self.music_url)}{_optional('HQMusicUrl', self.hq_music_url)}"
            f"<ThumbMediaId>{cdata(self.thumb_media_id)}</ThumbMediaId></Music>"
        )


@dataclass(frozen=True)
class Article:
    title: str
    description: str = ""
    url: str = ""
    pic_url: str = ""

    def body(self) -> str:
        return (
            f"<item><Title>{cdata(self.title)}</Title><Description>{cdata(self.description)}</Description>"
            f"<PicUrl>{cdata(self.pic_url)}</PicUrl><Url>{cdata(self.url)}</Url></item>"
        )


@dataclass(frozen=True)
class NewsReply:
    articles: tuple[Article, ...] = field(default_factory=tuple)
    msg_type = "news"

    def __post_init__(self) -> None:
        object.__setattr__(self, "articles", tuple(self.articles))
        if not self.articles:
            raise ValueError("a news reply needs at least one article")

    def body(self, limit: int = MAX_ARTICLES_FOR_EVENT) -> str:
        articles = self.articles
        if len(articles) > limit:
            log.error(
                "news reply has %d articles but WeChat shows at most %d here; sending the first %d",
                len(articles),
                limit,
                limit,
            )
            articles = articles[:limit]
        items = "".join(article.body() for article in articles)
        return f"<ArticleCount>{len(articles)}</ArticleCount><Articles>{items}</Articles>"


@dataclass(frozen=True)
class TransferCustomerServiceReply:
    """Hand the conversation to customer service, optionally to one ``kf_account``."""

    kf_account: str | None = None
    msg_type = "transfer_customer_service"

    def body(self) -> str:
        if self.kf_account is None:
            return ""
        return f"<TransInfo><KfAccount>{cdata(self.kf_account)}</KfAccount></TransInfo>"


Reply = TextReply | ImageReply | VoiceReply | VideoReply | MusicReply | NewsReply | TransferCustomerServiceReply
REPLY_TYPES = (TextReply, ImageReply, VoiceReply, VideoReply, MusicReply, NewsReply, TransferCustomerServiceReply)


_BY_TYPE = {cls.msg_type: cls for cls in REPLY_TYPES}


def as_reply(value: object) -> Reply | None:
    """What a handler returned, as a reply: ``None`` stays ``None``, a ``str`` becomes text."""
    if value is None or isinstance(value, REPLY_TYPES):
        return value
    if isinstance(value, str):
        return TextReply(value)
    raise TypeError(f"a handler returned {type(value).__name__}; return a reply from app.replies, a str or None")


def reply_to_dict(reply: Reply) -> dict[str, Any]:
    """``reply`` as plain JSON-able data, for work that another process finishes."""
    return {"type": reply.msg_type, **dataclasses.asdict(reply)}


def reply_from_dict(data: dict[str, Any]) -> Reply:
    """The reply :func:`reply_to_dict` made."""
    fields = dict(data)
    cls = _BY_TYPE[fields.pop("type")]
    if cls is NewsReply:
        fields["articles"] = tuple(Article(**article) for article in fields["articles"])
    return cls(**fields)


def render(
    reply: Reply, to_user: str, from_user: str, create_time: int, article_limit: int = MAX_ARTICLES_FOR_EVENT
) -> bytes:
    """The reply's XML, addressed from ``from_user`` to ``to_user``."""
    body = reply.body(article_limit) if isinstance(reply, NewsReply) else reply.body()
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime><MsgType><![CDATA[{reply.msg_type}]]></MsgType>{body}</xml>"
    ).encode()


def _optional(tag: str, value: str | None) -> str:
    return "" if value is None else f"<{tag}>{cdata(value)}</{tag}>"
