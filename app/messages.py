"""Typed messages and events: what a push becomes once its XML is read.

:func:`parse` hands the body to :func:`app.xmlsafe.parse_xml`, then :func:`parse_push`
turns the element into one of the frozen dataclasses below.  Each class names the
MsgType or Event it stands for with :func:`message_type` or :func:`event_type`,
written above it; a type no class names becomes :class:`UnknownMessage` or
:class:`UnknownEvent` and keeps every field.

Each dataclass field names the XML element it comes from (``xml("Content")``, see
:mod:`app.fields`); a path such as ``"ScanCodeInfo/ScanType"`` reaches one level
down.  Text is trimmed (a follower's ``Content`` keeps its own spaces), an empty
element counts as absent, numbers become ``int`` or ``float``.  Only the four
fields every push has are required; a number that does not read is left out with
a warning (its text stays in ``fields``) rather than losing the push.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lxml import etree

from .fields import build, integer, number, read_fields, xml, xml_items
from .xmlsafe import PushError, parse_xml

# --- which class each MsgType and Event becomes ------------------------------

MESSAGE_TYPES: dict[str, type[Message]] = {}
EVENT_TYPES: dict[str, type[Event]] = {}

_T = TypeVar("_T", bound=type)


def message_type(*names: str) -> Callable[[_T], _T]:
    """Make the decorated class the one for MsgType ``names`` (lower case; matched ignoring case)."""
    return functools.partial(_register, MESSAGE_TYPES, names)


def event_type(*names: str) -> Callable[[_T], _T]:
    """Make the decorated class the one for Event ``names`` (lower case; matched ignoring case)."""
    return functools.partial(_register, EVENT_TYPES, names)


def _register(table: dict[str, Any], names: tuple[str, ...], cls: _T) -> _T:
    # Above @_frozen, or the class registered would not be the one slots=True makes.
    if "__dataclass_fields__" not in vars(cls):
        raise TypeError(f"{cls.__name__}: write @message_type/@event_type above @_frozen")
    for name in names:
        if name != name.lower():
            raise ValueError(f"{cls.__name__}: {name!r} is looked up in lower case")
        if name in table:
            raise ValueError(f"{cls.__name__}: {name!r} is {table[name].__name__} already")
        table[name] = cls
    return cls


# --- the push types ---------------------------------------------------------

_frozen = dataclass(frozen=True, kw_only=True, slots=True)


@_frozen
class Push:
    """What every push carries.  ``raw`` is the element, for fields not modelled here."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    fields: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def dedup_key(self) -> str:  # pragma: no cover - every concrete class overrides it
        raise NotImplementedError


@_frozen
class Message(Push):
    """A message a follower sent."""

    msg_id: int | None = xml("MsgId", integer)

    @property
    def dedup_key(self) -> str:
        msg_id = self.fields.get("MsgId")  # WeChat's own text, so an unreadable one still identifies
        if msg_id is not None:
            return f"msg:{msg_id}"
        return f"msg:{self.from_user}:{self.create_time}:{self.msg_type}"


@message_type("text")
@_frozen
class TextMessage(Message):
    content: str = xml("Content")


@message_type("image")
@_frozen
class ImageMessage(Message):
    pic_url: str | None = xml("PicUrl")
    media_id: str | None = xml("MediaId")


@message_type("voice")
@_frozen
class VoiceMessage(Message):
    media_id: str | None = xml("MediaId")
    format: str | None = xml("Format")
    recognition: str | None = xml("Recognition")


@message_type("video")
@_frozen
class VideoMessage(Message):
    media_id: str | None = xml("MediaId")
    thumb_media_id: str | None = xml("ThumbMediaId")


@message_type("shortvideo")
@_frozen
class ShortVideoMessage(VideoMessage):
    pass


@message_type("location")
@_frozen
class LocationMessage(Message):
    location_x: float | None = xml("Location_X", number)
    location_y: float | None = xml("Location_Y", number)
    scale: int | None = xml("Scale", integer)
    label: str | None = xml("Label")


@message_type("link")
@_frozen
class LinkMessage(Message):
    title: str | None = xml("Title")
    description: str | None = xml("Description")
    url: str | None = xml("Url")


@message_type("miniprogrampage")
@_frozen
class MiniProgramPageMessage(Message):
    title: str | None = xml("Title")
    app_id: str | None = xml("AppId")
    page_path: str | None = xml("PagePath")
    thumb_url: str | None = xml("ThumbUrl")
    thumb_media_id: str | None = xml("ThumbMediaId")


@_frozen
class UnknownMessage(Message):
    """A message type this project does not model; ``fields`` has all of it."""


@_frozen
class Event(Push):
    """Something that happened: a follow, a menu click, a send finishing."""

    event: str
    event_key: str | None = xml("EventKey")

    @property
    def name(self) -> str:
        """The event name in lower case, as the signals use it."""
        return self.event.lower()

    @property
    def dedup_key(self) -> str:
        msg_id = self.fields.get("MsgID") or self.fields.get("MsgId") or ""
        return f"event:{self.from_user}:{self.create_time}:{self.name}:{self.event_key or ''}:{msg_id}"


@_frozen
class QrSceneEvent(Event):
    """A follow or scan that may come from a parametric QR code; ``ticket`` names the code."""

    ticket: str | None = xml("Ticket")


@event_type("subscribe")
@_frozen
class SubscribeEvent(QrSceneEvent):
    """A follow; from a parametric QR code, ``event_key`` is ``qrscene_<scene>``."""

    @property
    def scene(self) -> str | None:
        key = self.event_key
        if key and key.startswith("qrscene_"):
            return key[len("qrscene_") :]
        return None


@event_type("unsubscribe")
@_frozen
class UnsubscribeEvent(Event):
    pass


@event_type("scan")
@_frozen
class ScanEvent(QrSceneEvent):
    """A follower scanned a parametric QR code; ``event_key`` is the scene."""


@event_type("location")
@_frozen
class LocationEvent(Event):
    latitude: float | None = xml("Latitude", number)
    longitude: float | None = xml("Longitude", number)
    precision: float | None = xml("Precision", number)


@event_type("click")
@_frozen
class ClickEvent(Event):
    pass


@_frozen
class MenuLinkEvent(Event):
    """A menu button that opens a page; ``menu_id`` tells which personalised menu it was on."""

    menu_id: str | None = xml("MenuId")


@event_type("view")
@_frozen
class ViewEvent(MenuLinkEvent):
    """A menu link was opened; ``event_key`` is the URL."""


@event_type("view_miniprogram")
@_frozen
class ViewMiniProgramEvent(MenuLinkEvent):
    """A menu mini-program was opened; ``event_key`` is the page path."""


@event_type("scancode_push", "scancode_waitmsg")
@_frozen
class ScanCodeEvent(Event):
    """A menu button opened the code scanner; ``scan_result`` is what it read."""

    scan_type: str | None = xml("ScanCodeInfo/ScanType")
    scan_result: str | None = xml("ScanCodeInfo/ScanResult")


@_frozen
class PicItem:
    pic_md5_sum: str | None = xml("PicMd5Sum")


@event_type("pic_sysphoto", "pic_photo_or_album", "pic_weixin")
@_frozen
class PicEvent(Event):
    """A menu button sent pictures, from the camera, the album or either."""

    count: int | None = xml("SendPicsInfo/Count", integer)
    pics: tuple[PicItem, ...] = xml_items("SendPicsInfo/PicList/item", PicItem)

    @property
    def pic_md5_sums(self) -> tuple[str, ...]:
        return tuple(p.pic_md5_sum for p in self.pics if p.pic_md5_sum)


@event_type("location_select")
@_frozen
class LocationSelectEvent(Event):
    location_x: float | None = xml("SendLocationInfo/Location_X", number)
    location_y: float | None = xml("SendLocationInfo/Location_Y", number)
    scale: int | None = xml("SendLocationInfo/Scale", integer)
    label: str | None = xml("SendLocationInfo/Label")
    poiname: str | None = xml("SendLocationInfo/Poiname")


@_frozen
class CopyrightCheckItem:
    article_idx: int | None = xml("ArticleIdx", integer)
    user_declare_state: int | None = xml("UserDeclareState", integer)
    audit_state: int | None = xml("AuditState", integer)
    original_article_url: str | None = xml("OriginalArticleUrl")
    original_article_type: int | None = xml("OriginalArticleType", integer)
    can_reprint: int | None = xml("CanReprint", integer)
    need_replace_content: int | None = xml("NeedReplaceContent", integer)
    need_show_reprint_source: int | None = xml("NeedShowReprintSource", integer)


@_frozen
class ArticleUrlItem:
    article_idx: int | None = xml("ArticleIdx", integer)
    article_url: str | None = xml("ArticleUrl")


@_frozen
class SendJobFinishEvent(Event):
    """A mass or template send finished; ``msg_id`` is the id the send call returned."""

    msg_id: int | None = xml("MsgID", integer)
    status: str | None = xml("Status")


@event_type("masssendjobfinish")
@_frozen
class MassSendJobFinishEvent(SendJobFinishEvent):
    """A mass send finished.  ``status`` is ``send success``, ``send fail`` or ``err(NNN)``."""

    total_count: int | None = xml("TotalCount", integer)
    filter_count: int | None = xml("FilterCount", integer)
    sent_count: int | None = xml("SentCount", integer)
    error_count: int | None = xml("ErrorCount", integer)
    copyright_check_state: int | None = xml("CopyrightCheckResult/CheckState", integer)
    copyright_check_results: tuple[CopyrightCheckItem, ...] = xml_items(
        "CopyrightCheckResult/ResultList/item", CopyrightCheckItem
    )
    article_url_results: tuple[ArticleUrlItem, ...] = xml_items("ArticleUrlResult/ResultList/item", ArticleUrlItem)


@event_type("templatesendjobfinish")
@_frozen
class TemplateSendJobFinishEvent(SendJobFinishEvent):
    """A template message was delivered or not: ``success``, ``failed:user block``, ``failed: system failed``."""


@_frozen
class SubscribeMsgItem:
    template_id: str | None = xml("TemplateId")
    subscribe_status: str | None = xml("SubscribeStatusString")
    popup_scene: int | None = xml("PopupScene", integer)
    msg_id: int | None = xml("MsgID", integer)
    error_code: int | None = xml("ErrorCode", integer)
    error_status: str | None = xml("ErrorStatus")


@event_type("subscribe_msg_popup_event", "subscribe_msg_change_event", "subscribe_msg_sent_event")
@_frozen
class SubscribeMsgEvent(Event):
    """A subscription-message popup was answered, a subscription changed, or a message was sent."""

    items: tuple[SubscribeMsgItem, ...] = xml_items("*/List", SubscribeMsgItem)

    @property
    def dedup_key(self) -> str:
        # Several of these can reach one follower in one second; what tells them apart is in the items.
        items = ",".join(f"{i.template_id}/{i.msg_id or ''}/{i.subscribe_status or ''}" for i in self.items)
        return f"{Event.dedup_key.fget(self)}:{items}"  # slots dataclasses cannot use super()


@event_type("kf_create_session", "kf_close_session")
@_frozen
class KfSessionEvent(Event):
    """A customer-service session was opened or closed."""

    kf_account: str | None = xml("KfAccount")


@event_type("kf_switch_session")
@_frozen
class KfSwitchSessionEvent(Event):
    from_kf_account: str | None = xml("FromKfAccount")
    to_kf_account: str | None = xml("ToKfAccount")


@_frozen
class UnknownEvent(Event):
    """An event this project does not model; ``event`` and ``fields`` keep all of it."""


# --- parsing -------------------------------------------------------------------

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")


def parse_push(root: etree._Element) -> Push:
    """Turn a push's root element into its typed message or event."""
    fields = read_fields(root)
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise PushError(f"push lacks {', '.join(missing)}")
    try:
        create_time = integer(fields["CreateTime"])
    except ValueError:
        raise PushError(f"CreateTime is not a valid integer: {fields['CreateTime'][:40]!r}") from None
    if "MsgID" in fields and "MsgId" not in fields:
        fields["MsgId"] = fields["MsgID"]
    common = {
        "to_user": fields["ToUserName"],
        "from_user": fields["FromUserName"],
        "create_time": create_time,
        "msg_type": fields["MsgType"],
        "fields": types.MappingProxyType(fields),
        "raw": root,
    }
    msg_type = fields["MsgType"].lower()
    if msg_type == "event":
        event = fields.get("Event")
        if event is None:
            raise PushError("event push lacks Event")
        cls = EVENT_TYPES.get(event.lower(), UnknownEvent)
        return build(cls, fields, root, event=event, **common)
    return build(MESSAGE_TYPES.get(msg_type, UnknownMessage), fields, root, **common)


def parse(body: bytes) -> Push:
    """Parse request bytes straight into a typed push."""
    return parse_push(parse_xml(body))
