"""Split a long text reply into parts that WeChat accepts.

WeChat drops a text reply whose Content is over its byte limit. ``split_text``
cuts a long text into parts the server sends one after the other: the first as
the passive reply, the rest later. It is a pure function: no Flask, no app state.

What it promises (each is tested in tests/test_textsplit.py):

* Bytes: the limit is in bytes of the UTF-8 encoding of a part's Content before
  XML escaping (escaping is the reply encoder's business).
* Short text: a text within the limit comes back as one part, unchanged, even if
  it ends with a line break. Empty text comes back as ``[""]``: there is always at
  least one part, so ``parts[0]`` is always the passive reply, and a handler that
  returns "" still gets the empty text reply it gets today.
* Cuts fall on extended grapheme cluster boundaries (Unicode UAX #29, the
  ``regex`` package's ``\\X``): emoji ZWJ sequences, flags, skin tones, combining
  marks, Hangul syllables and CRLF stay whole.
* Where: a part ends at its last line break ("\\n", or "\\r\\n" as one break),
  including a break that comes right after the largest piece that fits; with no
  break in it, a part ends at the last grapheme boundary that fits.
* The line break that ends a part is dropped, and so are the blank lines around
  it (the whole run of consecutive breaks at the cut); so are the line breaks
  at the start and the end of a text that is split. So no part of a
  split text starts or ends with a line break: each part is a message of its
  own, where leading or trailing blank lines only look broken, and a dropped
  break costs no room. Every other character of the text is kept, in order, and
  parts are never empty.
* ``more_hint``: the function reserves room for the hint and does NOT append it.
  When the text needs more than one part, every part but the last is at most
  ``limit - bytes(more_hint)`` bytes, so the caller appends ``more_hint`` exactly
  as passed (include any separator in it, e.g. "\\n(more: reply anything)") to
  each part but the last. The last part has no continuation: it gets the whole
  limit and no hint. The parts themselves stay plain content.
* ``max_parts`` caps the number of parts. When the text needs more, the last
  allowed part is filled up to the last grapheme boundary that fits with room for
  an ellipsis, trailing line breaks are removed, and "…" is appended: that part,
  ellipsis included, is within the limit. The ellipsis counts 3 bytes. The rest of the text is not returned.
  Only a part ending in "…" this way means text was cut; a text that needs
  exactly ``max_parts`` parts is returned whole.
* Last resort: a single grapheme cluster bigger than the room a part has (e.g. a
  base letter with thousands of combining marks) is cut between code points into
  pieces that each fit; such a cluster starts a fresh part where it can. No part
  is ever over the limit, and the function always ends.
* Cost: linear in the length of the text (each cluster is encoded once; the cuts
  use running byte totals), so a 100 KB reply splits in well under 0.1 s.

Lone surrogates (not valid in a reply anyway) count 3 bytes each.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import regex

WECHAT_TEXT_LIMIT = 2048
DEFAULT_MAX_PARTS = 5
ELLIPSIS = "…"

_GRAPHEME = regex.compile(r"\X")
_LINE_BREAKS = frozenset({"\n", "\r\n"})
_LONGEST_CODE_POINT = 4  # bytes in UTF-8


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8, the measure of WeChat's limit."""
    return len(text.encode("utf-8", "surrogatepass"))


def split_text(
    text: str,
    limit: int = WECHAT_TEXT_LIMIT,
    max_parts: int = DEFAULT_MAX_PARTS,
    more_hint: str = "",
) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-8 bytes each.

    See the module docstring for the rules. ``more_hint`` is not appended: room
    for it is kept in every part but the last, for the caller to append.
    Raises ValueError when ``max_parts`` < 1 or the limit leaves fewer than 4
    bytes (one code point) once the hint or the ellipsis is taken out.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    ellipsis_bytes = utf8_len(ELLIPSIS)
    room = limit - utf8_len(more_hint)  # for a part that has a continuation
    smallest_room = min(room, limit - ellipsis_bytes) if max_parts > 1 else limit - ellipsis_bytes
    if smallest_room < _LONGEST_CODE_POINT:
        raise ValueError(
            f"limit {limit} leaves {smallest_room} bytes for text once the hint or the ellipsis is taken out;"
            f" at least {_LONGEST_CODE_POINT} are needed"
        )

    if utf8_len(text) <= limit:
        return [text]
    units = _units(text, smallest_room)
    first, last = 0, len(units)
    while first < last and units[first] in _LINE_BREAKS:
        first += 1
    while last > first and units[last - 1] in _LINE_BREAKS:
        last -= 1
    units = units[first:last]  # no part starts or ends with a line break
    if not units:
        return [""]
    ends = [0, *accumulate(utf8_len(unit) for unit in units)]  # ends[i]: bytes of units[:i]
    breaks = [i for i, unit in enumerate(units) if unit in _LINE_BREAKS]
    total = ends[-1]
    count = len(units)

    parts: list[str] = []
    start = 0
    while start < count:
        if total - ends[start] <= limit:
            parts.append("".join(units[start:]))
            break
        if len(parts) == max_parts - 1:
            stop = _fit(ends, start, limit - ellipsis_bytes)
            while units[stop - 1] in _LINE_BREAKS:  # units[start] is never a break
                stop -= 1
            parts.append("".join(units[start:stop]) + ELLIPSIS)
            break
        stop = _fit(ends, start, room)
        # The last line break at or just after the piece that fits, and the run of breaks it is in.
        k = bisect_right(breaks, stop) - 1
        if k >= 0 and breaks[k] > start:
            run = k
            while run > 0 and breaks[run - 1] == breaks[run] - 1:
                run -= 1  # stays after start: units[start] is never a break
            parts.append("".join(units[start : breaks[run]]))
            start = breaks[k] + 1
            while start < count and units[start] in _LINE_BREAKS:
                start += 1  # the whole run of breaks is dropped
        else:
            parts.append("".join(units[start:stop]))
            start = stop
    return parts


def _fit(ends: list[int], start: int, room: int) -> int:
    """The largest ``stop`` such that units[start:stop] fit in ``room`` bytes (always > start)."""
    return bisect_right(ends, ends[start] + room) - 1


def _units(text: str, most: int) -> list[str]:
    """The grapheme clusters of ``text``; a cluster over ``most`` bytes is cut between code points."""
    units: list[str] = []
    for cluster in _GRAPHEME.findall(text):
        if len(cluster) * _LONGEST_CODE_POINT <= most or utf8_len(cluster) <= most:
            units.append(cluster)
            continue
        piece: list[str] = []
        size = 0
        for char in cluster:
            char_bytes = utf8_len(char)
            if size + char_bytes > most:
                units.append("".join(piece))
                piece, size = [], 0
            piece.append(char)
            size += char_bytes
        units.append("".join(piece))
    return units
