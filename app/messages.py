"""XML pushes -> typed messages and events: the one place that parses XML.

:func:`parse_xml` turns request bytes into an element with a parser that loads no
DTD, expands no entity and fetches nothing.  :func:`parse_push` turns that element
into one of the frozen dataclasses below, chosen from ``MESSAGE_TYPES`` or
``EVENT_TYPES``; a type the tables do not know becomes :class:`UnknownMessage` or
:class:`UnknownEvent` and keeps every field.

Each dataclass field names the XML element it comes from (``xml("Content")``); a
path such as ``"ScanCodeInfo/ScanType"`` reaches one level down.  Text is trimmed
(a follower's ``Content`` keeps its own spaces, see :func:`exact_text`), an empty
element counts as absent, numbers become ``int`` or ``float``.  Only the four
fields every push has are required; a number that does not read is left out with
a warning (its text stays in ``fields``) rather than losing the push.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

log = logging.getLogger(__name__)


class PushError(ValueError):
    """The body is not a push we can read (the callback answers 400)."""


# XML 1.0 forbids these; they do reach servers inside user text, so they are
# dropped before parsing.  In UTF-8 none of them occurs inside a multi-byte
# character, so deleting bytes is safe.
FORBIDDEN_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
# U+FFFE and U+FFFF are not XML characters either; their UTF-8 forms cannot occur inside another character.
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
_DECLARED_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")

_PARSER = etree.XMLParser(
    encoding="utf-8",
    resolve_entities=False,
    load_dtd=False,
    no_network=True,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    strip_cdata=False,  # kept so exact_text() can tell padding around CDATA from text inside it
)


def parse_xml(body: bytes) -> etree._Element:
    """Parse request bytes into the root element, refusing anything but plain UTF-8 XML."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PushError(f"body is not UTF-8 (byte {exc.start})") from None
    body = body.translate(None, FORBIDDEN_CONTROL_BYTES)
    for noncharacter in _NONCHARACTERS:
        if noncharacter in body:
            body = body.replace(noncharacter, b"")
    declared = _DECLARED_ENCODING.match(body)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise PushError(f"body declares encoding {declared.group(1).decode(errors='replace')!r}; pushes are UTF-8")
    if _has_doctype(body):
        # Refused before lxml sees it: libxml2 may open a SYSTEM DTD even when told not to load one.
        raise PushError("body has a DOCTYPE; pushes never do")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise PushError(f"body is not well-formed XML: {exc}") from None
    if root is None:
        raise PushError("body is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise PushError("body has a DOCTYPE; pushes never do")
    return root


def _has_doctype(body: bytes) -> bool:
    """Whether the prolog (before the root element) holds a ``<!DOCTYPE``."""
    position = 0
    while (position := body.find(b"<", position)) != -1:
        if body.startswith(b"<?", position):
            position = body.find(b"?>", position)
        elif body.startswith(b"<!--", position):
            position = body.find(b"-->", position)
        else:
            return body.startswith(b"<!DOCTYPE", position)
        if position == -1:
            return False
    return False


# A follower's own words: kept exactly, see exact_text().
EXACT_TEXT = frozenset({"Content"})


def read_fields(root: etree._Element) -> dict[str, str]:
    """Text of the leaf elements under ``root`` (and one level below), trimmed.

    Nested leaves are keyed by path (``"ScanCodeInfo/ScanType"``); empty ones are left out.
    """
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            for grandchild in child:
                if not len(grandchild):
                    text = (grandchild.text or "").strip()
                    if text:
                        fields[f"{child.tag}/{grandchild.tag}"] = text
        else:
            tag = child.tag
            text = exact_text(child) if tag in EXACT_TEXT else (child.text or "").strip()
            if text:
                fields[tag] = text
    return fields


def exact_text(element: etree._Element) -> str:
    """A user's text exactly: whitespace inside CDATA kept, padding around it dropped.

    WeChat pads some elements as ``<Tag> <![CDATA[value]]> </Tag>``; what is inside
    the CDATA is the sender's own text, leading and trailing spaces included.
    """
    text = element.text or ""
    stripped = text.strip()
    if stripped == text or not stripped or len(element):
        return stripped  # nothing around the text to tell apart: the common case, and cheap
    serialized = etree.tostring(element, encoding=str, with_tail=False)
    inner = serialized[serialized.index(">") + 1 : serialized.rindex("</")]
    first = inner.find("<![CDATA[")
    if first == -1:
        return text.strip()
    last = inner.rindex("]]>") + 3
    lead, trail = inner[:first], inner[last:]
    if lead.strip() or trail.strip() or "&" in lead or "&" in trail:
        return text.strip()
    return text[len(lead) : len(text) - len(trail)]


# --- describing fields -------------------------------------------------------


def xml(tag: str, convert: Callable[[str], Any] = str) -> Any:
    """A dataclass field filled from the element ``tag`` through ``convert``."""
    return field(default=None, metadata={"tag": tag, "convert": convert})


def xml_items(path: str, item: type) -> Any:
    """A dataclass field holding a tuple of ``item``, one per element at ``path``."""
    return field(default=(), metadata={"tag": path, "items": item})


# ASCII digits only, and no more than a 64-bit id has: int() and float() would also
# take "1_000", full-width digits, "nan", "1e999" and numbers of any length.
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_DECIMAL = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{0,20})?")


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _number(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError(text)
    return float(text)


@functools.cache
def _spec(cls: type) -> tuple[tuple[str, str, Callable[[str], Any] | None, type | None], ...]:
    return tuple(
        (f.name, f.metadata["tag"], f.metadata.get("convert"), f.metadata.get("items"))
        for f in dataclasses.fields(cls)
        if "tag" in f.metadata
    )


def _build(cls: type, texts: Mapping[str, str], element: etree._Element, **given: Any) -> Any:
    values: dict[str, Any] = {}
    for name, tag, convert, item in _spec(cls):
        if item is not None:
            values[name] = tuple(_build(item, read_fields(e), e) for e in element.iterfind(tag))
            continue
        text = texts.get(tag)
        if text is None:
            continue
        try:
            values[name] = convert(text)
        except (TypeError, ValueError):
            # Not worth losing the push over: the field is left out, its text stays in .fields.
            log.warning("push field %s is not a valid %s: %r; left out", tag, convert.__name__.strip("_"), text[:40])
    return cls(**values, **given)


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

    msg_id: int | None = xml("MsgId", _integer)

    @property
    def dedup_key(self) -> str:
        msg_id = self.fields.get("MsgId")  # WeChat's own text, so an unreadable one still identifies
        if msg_id is not None:
            return f"msg:{msg_id}"
        return f"msg:{self.from_user}:{self.create_time}:{self.msg_type}"


@_frozen
class TextMessage(Message):
    content: str = xml("Content")


@_frozen
class ImageMessage(Message):
    pic_url: str | None = xml("PicUrl")
    media_id: str | None = xml("MediaId")


@_frozen
class VoiceMessage(Message):
    media_id: str | None = xml("MediaId")
    format: str | None = xml("Format")
    recognition: str | None = xml("Recognition")


@_frozen
class VideoMessage(Message):
    media_id: str | None = xml("MediaId")
    thumb_media_id: str | None = xml("ThumbMediaId")


@_frozen
class ShortVideoMessage(VideoMessage):
    pass


@_frozen
class LocationMessage(Message):
    location_x: float | None = xml("Location_X", _number)
    location_y: float | None = xml("Location_Y", _number)
    scale: int | None = xml("Scale", _integer)
    label: str | None = xml("Label")


@_frozen
class LinkMessage(Message):
    title: str | None = xml("Title")
    description: str | None = xml("Description")
    url: str | None = xml("Url")


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
class SubscribeEvent(Event):
    """A follow; from a parametric QR code, ``event_key`` is ``qrscene_<scene>``."""

    ticket: str | None = xml("Ticket")

    @property
    def scene(self) -> str | None:
        key = self.event_key
        if key and key.startswith("qrscene_"):
            return key[len("qrscene_") :]
        return None


@_frozen
class UnsubscribeEvent(Event):
    pass


@_frozen
class ScanEvent(Event):
    """A follower scanned a parametric QR code; ``event_key`` is the scene."""

    ticket: str | None = xml("Ticket")


@_frozen
class LocationEvent(Event):
    latitude: float | None = xml("Latitude", _number)
    longitude: float | None = xml("Longitude", _number)
    precision: float | None = xml("Precision", _number)


@_frozen
class ClickEvent(Event):
    pass


@_frozen
class ViewEvent(Event):
    """A menu link was opened; ``event_key`` is the URL."""

    menu_id: str | None = xml("MenuId")


@_frozen
class ViewMiniProgramEvent(Event):
    """A menu mini-program was opened; ``event_key`` is the page path."""

    menu_id: str | None = xml("MenuId")


@_frozen
class ScanCodeEvent(Event):
    """``scancode_push`` and ``scancode_waitmsg``."""

    scan_type: str | None = xml("ScanCodeInfo/ScanType")
    scan_result: str | None = xml("ScanCodeInfo/ScanResult")


@_frozen
class PicItem:
    pic_md5_sum: str | None = xml("PicMd5Sum")


@_frozen
class PicEvent(Event):
    """``pic_sysphoto``, ``pic_photo_or_album`` and ``pic_weixin``."""

    count: int | None = xml("SendPicsInfo/Count", _integer)
    pics: tuple[PicItem, ...] = xml_items("SendPicsInfo/PicList/item", PicItem)

    @property
    def pic_md5_sums(self) -> tuple[str, ...]:
        return tuple(p.pic_md5_sum for p in self.pics if p.pic_md5_sum)


@_frozen
class LocationSelectEvent(Event):
    location_x: float | None = xml("SendLocationInfo/Location_X", _number)
    location_y: float | None = xml("SendLocationInfo/Location_Y", _number)
    scale: int | None = xml("SendLocationInfo/Scale", _integer)
    label: str | None = xml("SendLocationInfo/Label")
    poiname: str | None = xml("SendLocationInfo/Poiname")


@_frozen
class CopyrightCheckItem:
    article_idx: int | None = xml("ArticleIdx", _integer)
    user_declare_state: int | None = xml("UserDeclareState", _integer)
    audit_state: int | None = xml("AuditState", _integer)
    original_article_url: str | None = xml("OriginalArticleUrl")
    original_article_type: int | None = xml("OriginalArticleType", _integer)
    can_reprint: int | None = xml("CanReprint", _integer)
    need_replace_content: int | None = xml("NeedReplaceContent", _integer)
    need_show_reprint_source: int | None = xml("NeedShowReprintSource", _integer)


@_frozen
class ArticleUrlItem:
    article_idx: int | None = xml("ArticleIdx", _integer)
    article_url: str | None = xml("ArticleUrl")


@_frozen
class MassSendJobFinishEvent(Event):
    """A mass send finished.  ``status`` is ``send success``, ``send fail`` or ``err(NNN)``."""

    msg_id: int | None = xml("MsgID", _integer)
    status: str | None = xml("Status")
    total_count: int | None = xml("TotalCount", _integer)
    filter_count: int | None = xml("FilterCount", _integer)
    sent_count: int | None = xml("SentCount", _integer)
    error_count: int | None = xml("ErrorCount", _integer)
    copyright_check_state: int | None = xml("CopyrightCheckResult/CheckState", _integer)
    copyright_check_results: tuple[CopyrightCheckItem, ...] = xml_items(
        "CopyrightCheckResult/ResultList/item", CopyrightCheckItem
    )
    article_url_results: tuple[ArticleUrlItem, ...] = xml_items("ArticleUrlResult/ResultList/item", ArticleUrlItem)


@_frozen
class TemplateSendJobFinishEvent(Event):
    """A template message was delivered or not: ``success``, ``failed:user block``, ``failed: system failed``."""

    msg_id: int | None = xml("MsgID", _integer)
    status: str | None = xml("Status")


@_frozen
class SubscribeMsgItem:
    template_id: str | None = xml("TemplateId")
    subscribe_status: str | None = xml("SubscribeStatusString")
    popup_scene: int | None = xml("PopupScene", _integer)
    msg_id: int | None = xml("MsgID", _integer)
    error_code: int | None = xml("ErrorCode", _integer)
    error_status: str | None = xml("ErrorStatus")


@_frozen
class SubscribeMsgEvent(Event):
    """``subscribe_msg_popup_event``, ``subscribe_msg_change_event`` and ``subscribe_msg_sent_event``."""

    items: tuple[SubscribeMsgItem, ...] = xml_items("*/List", SubscribeMsgItem)

    @property
    def dedup_key(self) -> str:
        # Several of these can reach one follower in one second; what tells them apart is in the items.
        items = ",".join(f"{i.template_id}/{i.msg_id or ''}/{i.subscribe_status or ''}" for i in self.items)
        return f"{Event.dedup_key.fget(self)}:{items}"  # slots dataclasses cannot use super()


@_frozen
class KfSessionEvent(Event):
    """``kf_create_session`` and ``kf_close_session``."""

    kf_account: str | None = xml("KfAccount")


@_frozen
class KfSwitchSessionEvent(Event):
    from_kf_account: str | None = xml("FromKfAccount")
    to_kf_account: str | None = xml("ToKfAccount")


@_frozen
class UnknownEvent(Event):
    """An event this project does not model; ``event`` and ``fields`` keep all of it."""


# --- the one table of types -------------------------------------------------

MESSAGE_TYPES: dict[str, type[Message]] = {
    "text": TextMessage,
    "image": ImageMessage,
    "voice": VoiceMessage,
    "video": VideoMessage,
    "shortvideo": ShortVideoMessage,
    "location": LocationMessage,
    "link": LinkMessage,
    "miniprogrampage": MiniProgramPageMessage,
}

EVENT_TYPES: dict[str, type[Event]] = {
    "subscribe": SubscribeEvent,
    "unsubscribe": UnsubscribeEvent,
    "scan": ScanEvent,
    "location": LocationEvent,
    "click": ClickEvent,
    "view": ViewEvent,
    "view_miniprogram": ViewMiniProgramEvent,
    "scancode_push": ScanCodeEvent,
    "scancode_waitmsg": ScanCodeEvent,
    "pic_sysphoto": PicEvent,
    "pic_photo_or_album": PicEvent,
    "pic_weixin": PicEvent,
    "location_select": LocationSelectEvent,
    "masssendjobfinish": MassSendJobFinishEvent,
    "templatesendjobfinish": TemplateSendJobFinishEvent,
    "subscribe_msg_popup_event": SubscribeMsgEvent,
    "subscribe_msg_change_event": SubscribeMsgEvent,
    "subscribe_msg_sent_event": SubscribeMsgEvent,
    "kf_create_session": KfSessionEvent,
    "kf_close_session": KfSessionEvent,
    "kf_switch_session": KfSwitchSessionEvent,
}

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")


def parse_push(root: etree._Element) -> Push:
    """Turn a push's root element into its typed message or event."""
    fields = read_fields(root)
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise PushError(f"push lacks {', '.join(missing)}")
    try:
        create_time = _integer(fields["CreateTime"])
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
        return _build(cls, fields, root, event=event, **common)
    return _build(MESSAGE_TYPES.get(msg_type, UnknownMessage), fields, root, **common)


def parse(body: bytes) -> Push:
    """Parse request bytes straight into a typed push."""
    return parse_push(parse_xml(body))
