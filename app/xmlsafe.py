"""Request bytes -> an lxml element, parsed as if the body were hostile.

The parser loads no DTD, expands no entity and fetches nothing; a body that is not
UTF-8, declares another encoding or carries a DOCTYPE is refused with
:class:`PushError` before lxml reads it.  This module knows nothing of pushes, so
it can be read (and audited) on its own.
"""

from __future__ import annotations

import re

from lxml import etree


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
    strip_cdata=False,  # kept so fields.exact_text() can tell padding around CDATA from text inside it
)


def parse_xml(body: bytes) -> etree._Element:
    """Parse request bytes into the root element, refusing anything but plain UTF-8 XML."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PushError(f"body is not UTF-8 (byte {exc.start})") from None
    body = body.translate(None, FORBIDDEN_CONTROL_BYTES)
    if b"\xef\xbf" in body:  # one pass for both (and for the U+FFxx characters that are allowed)
        for noncharacter in _NONCHARACTERS:
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
