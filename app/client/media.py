"""Uploads: ``media/uploadnews``, the articles a mass send points to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import ClientBase, pick_articles

MAX_UPLOAD_NEWS_ARTICLES = 8


class MediaUploads(ClientBase):
    def upload_news(self, articles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``media/uploadnews``: up to 8 articles for a mass send; returns type, media_id, created_at."""
        articles = list(articles)
        if not 1 <= len(articles) <= MAX_UPLOAD_NEWS_ARTICLES:
            raise ValueError(f"media/uploadnews takes 1 to {MAX_UPLOAD_NEWS_ARTICLES} articles, got {len(articles)}")
        fields = (
            "thumb_media_id",
            "author",
            "title",
            "content_source_url",
            "content",
            "digest",
            "show_cover_pic",
            "need_open_comment",
            "only_fans_can_comment",
        )
        body = {"articles": pick_articles(articles, fields, required=("thumb_media_id", "title", "content"))}
        answer = self.call("media/uploadnews", body)
        return {"type": answer.get("type"), "media_id": answer.get("media_id"), "created_at": answer.get("created_at")}
