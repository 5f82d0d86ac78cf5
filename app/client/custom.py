"""Customer-service messages: ``message/custom/send``, within 48 hours of the follower's last message.

Every send takes ``kf_account``: the customer-service account WeChat shows as the sender
(``customservice.kf_account``), e.g. ``help@your_account``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import ClientBase, drop_none, pick, pick_articles

MAX_CUSTOM_NEWS_ARTICLES = 1
NEWS_FIELDS = ("title", "description", "url", "picurl")


class CustomMessages(ClientBase):
    def send_typing(self, openid: str, typing: bool = True) -> None:
        """``message/custom/typing``: the follower sees "typing…" (for up to 15 s), or no longer."""
        self.call("message/custom/typing", {"touser": openid, "command": "Typing" if typing else "CancelTyping"})

    def send_text(self, openid: str, content: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a text message."""
        self._custom(openid, "text", {"content": content}, kf_account)

    def send_image(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, an image by ``media_id``."""
        self._custom(openid, "image", {"media_id": media_id}, kf_account)

    def send_voice(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a voice message by ``media_id``."""
        self._custom(openid, "voice", {"media_id": media_id}, kf_account)

    def send_video(
        self,
        openid: str,
        media_id: str,
        thumb_media_id: str,
        title: str | None = None,
        description: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a video."""
        video = drop_none(
            {"media_id": media_id, "thumb_media_id": thumb_media_id, "title": title, "description": description}
        )
        self._custom(openid, "video", video, kf_account)

    def send_music(
        self,
        openid: str,
        music_url: str,
        hq_music_url: str,
        thumb_media_id: str,
        title: str | None = None,
        description: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a music message."""
        music = drop_none(
            {
                "title": title,
                "description": description,
                "musicurl": music_url,
                "hqmusicurl": hq_music_url,
                "thumb_media_id": thumb_media_id,
            }
        )
        self._custom(openid, "music", music, kf_account)

    def send_news(self, openid: str, articles: Sequence[Mapping[str, str]], kf_account: str | None = None) -> None:
        """``message/custom/send``, a news message; WeChat takes one article.

        Each of its fields (title, description, url, picurl) is optional, but an article
        with none of them is refused here.
        """
        articles = list(articles)
        if not 1 <= len(articles) <= MAX_CUSTOM_NEWS_ARTICLES:
            raise ValueError(f"a customer-service news message takes 1 article, got {len(articles)}")
        checked = pick_articles(articles, NEWS_FIELDS, required=())
        for number, article in enumerate(checked, 1):
            if not article:
                raise ValueError(f"article {number}: give at least one of {', '.join(NEWS_FIELDS)}")
        self._custom(openid, "news", {"articles": checked}, kf_account)

    def send_mpnews(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, an article message by ``media_id``."""
        self._custom(openid, "mpnews", {"media_id": media_id}, kf_account)

    def send_mpnewsarticle(self, openid: str, article_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a published article by its ``article_id``."""
        self._custom(openid, "mpnewsarticle", {"article_id": article_id}, kf_account)

    def send_msgmenu(
        self,
        openid: str,
        items: Sequence[Mapping[str, str] | tuple[str, str]],
        head_content: str | None = None,
        tail_content: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a menu: the follower taps an item and WeChat pushes its ``id`` back.

        ``items`` are ``{"id": ..., "content": ...}`` objects or ``(id, content)`` pairs.
        """
        checked = []
        for number, item in enumerate(items, 1):
            if isinstance(item, tuple):
                item = dict(zip(("id", "content"), item, strict=True))
            try:
                checked.append(pick(item, ("id", "content"), required=("id", "content")))
            except ValueError as exc:
                raise ValueError(f"menu item {number}: {exc}") from None
        if not checked:
            raise ValueError("a menu message needs at least one item")
        menu = drop_none({"head_content": head_content, "list": checked, "tail_content": tail_content})
        self._custom(openid, "msgmenu", menu, kf_account)

    def send_wxcard(self, openid: str, card_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a card or coupon by ``card_id``."""
        self._custom(openid, "wxcard", {"card_id": card_id}, kf_account)

    def send_miniprogrampage(
        self,
        openid: str,
        appid: str,
        pagepath: str,
        thumb_media_id: str,
        title: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a mini program card (the mini program must be linked to the account)."""
        page = drop_none({"title": title, "appid": appid, "pagepath": pagepath, "thumb_media_id": thumb_media_id})
        self._custom(openid, "miniprogrampage", page, kf_account)

    def send_link(
        self,
        openid: str,
        title: str,
        url: str,
        thumb_url: str,
        description: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a link card (title, description, url, thumb_url)."""
        link = drop_none({"title": title, "description": description, "url": url, "thumb_url": thumb_url})
        self._custom(openid, "link", link, kf_account)

    def _custom(self, openid: str, msgtype: str, content: dict[str, Any], kf_account: str | None) -> None:
        body: dict[str, Any] = {"touser": openid, "msgtype": msgtype, msgtype: content}
        if kf_account:
            body["customservice"] = {"kf_account": kf_account}
        self.call("message/custom/send", body)
