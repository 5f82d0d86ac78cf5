"""Uploads for mass sends: ``media/uploadnews`` (the articles) and ``media/uploadvideo`` (a video's
title and description, for an ``mpvideo`` send)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import ClientBase, drop_none, pick_articles

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

    def upload_video(self, media_id: str, title: str | None = None, description: str | None = None) -> dict[str, Any]:
        """``media/uploadvideo``: a video's ``media_id`` (from the media upload) made into the one an ``mpvideo``
        mass send takes, with the title and description followers see; returns type, media_id, created_at."""
        body = drop_none({"media_id": media_id, "title": title, "description": description})
        answer = self.call("media/uploadvideo", body)
        return {"type": answer.get("type"), "media_id": answer.get("media_id"), "created_at": answer.get("created_at")}
