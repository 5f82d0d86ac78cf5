"""Splitting a long text reply: parts within WeChat's byte limit, cut where a reader expects.

The behaviour checked: a short text is one part, unchanged; every part fits the
limit in UTF-8 bytes (with room for the "more" hint where a part has a
continuation); nothing is lost but the line breaks at each cut and at the ends;
cuts prefer the last line break and never fall inside a grapheme cluster; the
cap on parts ends the text with "…"; a pathological cluster still ends in parts
within the limit.
"""

from __future__ import annotations

import time

import pytest
import regex
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.textsplit import DEFAULT_MAX_PARTS, ELLIPSIS, WECHAT_TEXT_LIMIT, split_text, utf8_len

HINT = "(more: reply anything)"

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 25 bytes
FLAG_CN = "\U0001f1e8\U0001f1f3"  # 🇨🇳
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"  # 👍🏽
E_ACUTE = "e\u0301"  # é as e + combining acute


def graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


BREAKS = regex.compile(r"(?:\r\n|\n)*")


def dropped_breaks(text: str, parts: list[str]) -> list[str]:
    """Walk ``text`` along ``parts``; return the line breaks dropped before, between and after them.

    Fails unless the parts are the text in order with nothing but line breaks
    ("\\n", "\\r\\n") before the first part, between two parts and after the last.
    """
    pos = 0
    dropped = []
    for i, part in enumerate([*parts, None]):
        gap = BREAKS.match(text, pos).group()
        if part is not None:
            assert text.startswith(part, pos + len(gap)), f"part {i} does not follow after line breaks"
        dropped.append(gap)
        pos += len(gap) + (len(part) if part is not None else 0)
    assert pos == len(text), "text is missing after the last part"
    return dropped


def assert_within(parts: list[str], limit: int, hint: str = "") -> None:
    for part in parts[:-1]:
        assert utf8_len(part + hint) <= limit
    assert utf8_len(parts[-1]) <= limit


# --- short text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["hello", "第一行\r\n第二行\n", FAMILY + FLAG_CN + THUMBS_UP_MEDIUM + E_ACUTE, "a" * WECHAT_TEXT_LIMIT],
)
def test_a_text_within_the_limit_is_one_part_unchanged(text):
    assert split_text(text) == [text]
    assert split_text(text, more_hint=HINT) == [text]  # no continuation, so no room kept for the hint


def test_empty_text_is_one_empty_part():
    assert split_text("") == [""]


def test_the_limit_counts_utf8_bytes_before_xml_escaping():
    assert split_text("<&>" * 10, limit=30) == ["<&>" * 10]  # escaped it would be 150 bytes
    assert split_text("中" * 10, limit=30) == ["中" * 10]
    assert split_text("中" * 11, limit=30) == ["中" * 10, "中"]


# --- where the cuts fall ----------------------------------------------------------------


def test_a_cut_falls_at_the_last_line_break_which_is_dropped():
    text = "a" * 500 + "\n" + "b" * 1000 + "\n" + "c" * 1000
    assert split_text(text) == ["a" * 500 + "\n" + "b" * 1000, "c" * 1000]


def test_crlf_is_one_line_break_and_no_part_starts_with_the_break_that_ended_the_one_before():
    text = "a" * 1500 + "\r\n" + "b" * 1500
    assert split_text(text) == ["a" * 1500, "b" * 1500]


def test_a_line_break_just_past_the_room_is_the_cut():
    text = "a" * WECHAT_TEXT_LIMIT + "\n" + "b" * 10
    assert split_text(text) == ["a" * WECHAT_TEXT_LIMIT, "b" * 10]


def test_blank_lines_at_the_cut_are_dropped_with_the_break():
    text = "a" * 1000 + "\n\n" + "b" * 1000 + "\r\n\r\n\n" + "c" * 1000
    assert split_text(text) == ["a" * 1000 + "\n\n" + "b" * 1000, "c" * 1000]
    text = "a" * 1000 + "\n\n" + "b" * 1040 + "\n\n\n" + "c" * 1000
    assert split_text(text) == ["a" * 1000 + "\n\n" + "b" * 1040, "c" * 1000]  # the run reaches past the room


def test_a_split_text_loses_its_leading_and_trailing_line_breaks():
    text = "\r\n\n" + "a" * 1500 + "\n" + "b" * 1500 + "\n\r\n"
    assert split_text(text) == ["a" * 1500, "b" * 1500]
    assert split_text("a" * 2040 + "\n" * 10, max_parts=1) == ["a" * 2040]  # one part, no ellipsis: nothing cut
    assert split_text("\n" * 3000) == [""]


def test_without_a_line_break_a_part_is_filled_to_the_last_whole_cluster():
    parts = split_text(FAMILY * 100)  # 2,500 bytes; 81 families are 2,025 bytes, 82 would be 2,050
    assert parts == [FAMILY * 81, FAMILY * 19]


@pytest.mark.parametrize("cluster", [FAMILY, FLAG_CN, THUMBS_UP_MEDIUM, E_ACUTE, "\u1100\u1161\u11a8", "\r\n"])
def test_no_cut_falls_inside_a_cluster(cluster):
    text = "x" + cluster * 200
    for limit in range(30, 60):
        parts = split_text(text, limit=limit, max_parts=10_000)
        assert_within(parts, limit)
        for part in parts:
            assert graphemes(part)[-1] in (cluster, "x")
            assert graphemes(part)[0] in (cluster, "x")


def test_chinese_text_of_3000_characters():
    text = "中文" * 1500  # 3,000 characters, 9,000 bytes; 682 characters fit in 2,048 bytes
    parts = split_text(text)
    assert [len(part) for part in parts] == [682, 682, 682, 682, 272]
    assert "".join(parts) == text
    assert_within(parts, WECHAT_TEXT_LIMIT)


def test_room_for_the_more_hint_in_every_part_but_the_last():
    text = "中文" * 1500
    parts = split_text(text, more_hint=HINT)  # the hint is 22 bytes: 675 characters fit beside it
    assert [len(part) for part in parts] == [675, 675, 675, 675, 300]
    assert "".join(parts) == text
    assert all(not part.endswith(HINT) for part in parts)  # the caller appends it
    assert_within(parts, WECHAT_TEXT_LIMIT, HINT)


def test_the_last_part_gets_the_whole_limit():
    text = "a" * 2040 + "\n" + "b" * 2048
    assert split_text(text, more_hint=HINT) == ["a" * 2026, "a" * 14, "b" * 2048]


# --- the cap on parts --------------------------------------------------------------------


def test_text_beyond_the_cap_is_cut_and_the_last_part_ends_with_an_ellipsis():
    text = "中" * 3000
    parts = split_text(text, max_parts=2)
    assert len(parts) == 2
    assert parts[0] == "中" * 682
    assert parts[1] == "中" * 681 + ELLIPSIS  # 2,043 + 3 bytes
    assert_within(parts, WECHAT_TEXT_LIMIT)


def test_the_cap_with_the_hint_and_a_single_part():
    text = "中" * 3000
    parts = split_text(text, max_parts=3, more_hint=HINT)
    assert len(parts) == 3 and parts[-1].endswith(ELLIPSIS)
    assert_within(parts, WECHAT_TEXT_LIMIT, HINT)
    assert split_text(text, max_parts=1) == ["中" * 681 + ELLIPSIS]


def test_the_ellipsis_follows_text_not_a_line_break():
    text = "a" * 2042 + "\n\n\r\n" + "b" * 3000  # 2,045 bytes fit beside the ellipsis: the a's and the breaks
    assert split_text(text, max_parts=1) == ["a" * 2042 + ELLIPSIS]


def test_the_ellipsis_never_splits_a_cluster():
    parts = split_text(FAMILY * 200, max_parts=1)
    assert parts == [FAMILY * 81 + ELLIPSIS]


def test_a_text_that_needs_exactly_the_cap_is_whole():
    text = "中" * (682 * DEFAULT_MAX_PARTS)
    parts = split_text(text)
    assert len(parts) == DEFAULT_MAX_PARTS and "".join(parts) == text


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        split_text("abc", max_parts=0)
    with pytest.raises(ValueError):
        split_text("abc", limit=20, more_hint="x" * 17)
    with pytest.raises(ValueError):
        split_text("abc", limit=6)


# --- the last resort: a cluster bigger than a part --------------------------------------


def test_a_huge_cluster_is_cut_between_code_points_into_parts_within_the_limit():
    cluster = "e" + "\u0301" * 3000  # one grapheme cluster of 6,001 bytes
    assert len(graphemes(cluster)) == 1
    text = "hello " + cluster + " world"
    parts = split_text(text, max_parts=100, more_hint=HINT)
    assert_within(parts, WECHAT_TEXT_LIMIT, HINT)
    assert "".join(parts) == text
    assert parts[0] == "hello "  # the cluster starts a fresh part
    assert len(parts) == 4  # pieces of 2,025, 2,026 and 1,950 bytes, the last with " world"


def test_a_huge_cluster_under_the_cap():
    parts = split_text("a" + "\u0308" * 10_000, max_parts=2)
    assert len(parts) == 2 and parts[-1].endswith(ELLIPSIS)
    assert_within(parts, WECHAT_TEXT_LIMIT)


# --- large text ---------------------------------------------------------------------------


def test_a_100_kb_text_splits_quickly():
    line = "Hello 你好 " + FAMILY + FLAG_CN + THUMBS_UP_MEDIUM + E_ACUTE + " 한국어\n"
    text = line * (100_000 // utf8_len(line) + 1)
    assert utf8_len(text) > 100_000
    started = time.perf_counter()
    parts = split_text(text, max_parts=10_000, more_hint=HINT)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # a sanity bound; it takes milliseconds
    assert_within(parts, WECHAT_TEXT_LIMIT, HINT)
    assert dropped_breaks(text, parts) == [""] + ["\n"] * len(parts)  # every cut at a line end
    for part in parts[:-1]:  # and no part is cut shorter than it need be
        assert utf8_len(part + "\n" + line + HINT) > WECHAT_TEXT_LIMIT


# --- any text ----------------------------------------------------------------------------

CLUSTERS = st.sampled_from(
    [
        FAMILY,
        "\U0001f469\u200d\U0001f4bb",  # 👩‍💻
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # 🏳️‍🌈
        FLAG_CN,
        "\U0001f1ef\U0001f1f5",  # 🇯🇵
        THUMBS_UP_MEDIUM,
        "\U0001f44b\U0001f3ff",  # 👋🏿
        E_ACUTE,
        "a\u0308\u0301",
        "\u0301",  # a lone mark joins what comes before it
        "\u1100\u1161\u11a8",  # Hangul L V T
        "한",
        "\n",
        "\r\n",
        "\n\n",
        "\r\n\r\n",
        "\r",
        " ",
    ]
)
PIECES = st.one_of(
    CLUSTERS,
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=20),
)
TEXTS = st.lists(PIECES, min_size=10, max_size=200).map("".join)
HINTS = st.sampled_from(["", "(more)", "（更多）"])


@settings(max_examples=500, deadline=None)
@given(text=TEXTS, limit=st.integers(40, 150), hint=HINTS)
def test_any_text_splits_within_the_limit_on_cluster_boundaries(text, limit, hint):
    assume(all(utf8_len(g) <= limit - max(utf8_len(hint), 3) for g in graphemes(text)))
    parts = split_text(text, limit=limit, max_parts=10_000, more_hint=hint)
    if utf8_len(text) <= limit:
        assert parts == [text]
        return
    assert_within(parts, limit, hint)
    assert all(parts)
    dropped = dropped_breaks(text, parts)
    rejoined = graphemes(dropped[0])
    for part, gap in zip(parts, dropped[1:], strict=True):
        rejoined += graphemes(part) + graphemes(gap)
    assert rejoined == graphemes(text)  # no cluster was cut, nothing but line breaks was dropped
    assert not any(BREAKS.match(part).group() or part.endswith("\n") for part in parts)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, limit=st.integers(40, 150), hint=HINTS, max_parts=st.integers(1, 4))
def test_any_text_under_a_cap(text, limit, hint, max_parts):
    parts = split_text(text, limit=limit, max_parts=max_parts, more_hint=hint)
    assert 1 <= len(parts) <= max_parts
    assert_within(parts, limit, hint)
    whole = split_text(text, limit=limit, max_parts=10_000, more_hint=hint)
    if len(whole) <= max_parts:
        assert parts == whole
    else:
        assert parts[:-1] == whole[: max_parts - 1]
        assert parts[-1].endswith(ELLIPSIS)
