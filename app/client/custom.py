"""Customer-service messages: ``message/custom/send``, within 48 hours of the follower's last message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import ClientBase, drop_none, pick_articles

MAX_CUSTOM_NEWS_ARTICLES = 1


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
        """``message/custom/send``, a news message; WeChat takes one article (title, description, url, picurl)."""
        articles = list(articles)
        if not 1 <= len(articles) <= MAX_CUSTOM_NEWS_ARTICLES:
            raise ValueError(f"a customer-service news message takes 1 article, got {len(articles)}")
        fields = ("title", "description", "url", "picurl")
        self._custom(openid, "news", {"articles": pick_articles(articles, fields, required=("title",))}, kf_account)

    def send_mpnews(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, an article message by ``media_id``."""
        self._custom(openid, "mpnews", {"media_id": media_id}, kf_account)

    def _custom(self, openid: str, msgtype: str, content: dict[str, Any], kf_account: str | None) -> None:
        body: dict[str, Any] = {"touser": openid, "msgtype": msgtype, msgtype: content}
        if kf_account:
            body["customservice"] = {"kf_account": kf_account}
        self.call("message/custom/send", body)
