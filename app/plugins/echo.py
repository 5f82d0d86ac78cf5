"""The echo plugin: answers each message with itself, and a follow with a greeting."""

from __future__ import annotations

from ..messages import (
    ImageMessage,
    LinkMessage,
    LocationMessage,
    SubscribeEvent,
    TextMessage,
    VideoMessage,
    VoiceMessage,
)
from ..replies import Article, ImageReply, NewsReply, TextReply, VideoReply, VoiceReply
from ..signals import event_received, message_received

GREETING = "Thanks for following! Send me anything and I will send it back."


@message_received.connect_via("text")
def echo_text(sender: str, message: TextMessage, **extra: object) -> TextReply | None:
    return TextReply(message.content) if message.content else None


@message_received.connect_via("image")
def echo_image(sender: str, message: ImageMessage, **extra: object) -> ImageReply | None:
    return ImageReply(message.media_id) if message.media_id else None


@message_received.connect_via("voice")
def echo_voice(sender: str, message: VoiceMessage, **extra: object) -> VoiceReply | None:
    return VoiceReply(message.media_id) if message.media_id else None


@message_received.connect_via("video")
@message_received.connect_via("shortvideo")
def echo_video(sender: str, message: VideoMessage, **extra: object) -> VideoReply | None:
    return VideoReply(message.media_id) if message.media_id else None


@message_received.connect_via("location")
def echo_location(sender: str, message: LocationMessage, **extra: object) -> TextReply:
    fields = message.fields  # WeChat's own digits, not a float's repr
    text = f"{fields.get('Location_X', '')},{fields.get('Location_Y', '')} {fields.get('Label', '')}"
    return TextReply(text.rstrip())


@message_received.connect_via("link")
def echo_link(sender: str, message: LinkMessage, **extra: object) -> NewsReply:
    article = Article(title=message.title or "", description=message.description or "", url=message.url or "")
    return NewsReply([article])


@event_received.connect_via("subscribe")
def greet(sender: str, event: SubscribeEvent, **extra: object) -> TextReply:
    return TextReply(GREETING)
