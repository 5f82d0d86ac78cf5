"""Dataclass fields filled from XML: declaring them, reading element text, building.

The push dataclasses in :mod:`app.messages` name the element each field comes from
with :func:`xml` or :func:`xml_items`; :func:`read_fields` turns a root element into
``{tag: text}``; :func:`build` makes the dataclass from both.  :func:`integer` and
:func:`number` read numbers no more loosely than WeChat writes them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from lxml import etree

# Unreadable fields are warned about under the pushes' module name, the logger to watch for them.
log = logging.getLogger("app.messages")

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


def integer(text: str) -> int:
    """``text`` as an ``int``, or ``ValueError``."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def number(text: str) -> float:
    """``text`` (digits, perhaps a decimal point) as a ``float``, or ``ValueError``."""
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


def build(cls: type, texts: Mapping[str, str], element: etree._Element, **given: Any) -> Any:
    """``cls(**given)`` plus every field of ``cls`` declared with :func:`xml` or :func:`xml_items`.

    ``texts`` is :func:`read_fields` of ``element``; items are built from the elements themselves.
    """
    values: dict[str, Any] = {}
    for name, tag, convert, item in _spec(cls):
        if item is not None:
            values[name] = tuple(build(item, read_fields(e), e) for e in element.iterfind(tag))
            continue
        text = texts.get(tag)
        if text is None:
            continue
        try:
            values[name] = convert(text)
        except (TypeError, ValueError):
            # Not worth losing the push over: the field is left out, its text stays in .fields.
            log.warning("push field %s is not a valid %s: %r; left out", tag, convert.__name__, text[:40])
    return cls(**values, **given)
