"""The push parser against WeChat-shaped fixtures: one file per message and event type.

Every fixture in ``tests/fixtures/`` is a body exactly as WeChat POSTs it in plaintext mode.
``EXPECTED`` lists, per fixture, the class ``app.messages.parse`` must return and the value of
*every* modelled dataclass field; values are compared with their type (an ``int`` must be an
``int``, a coordinate a ``float``), nested items included.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from app import messages as m
from app.xmlsafe import _PARSER, PushError

FIXTURES = Path(__file__).parent / "fixtures"

OA = "gh_3b5a9e7c21d4"  # the official account: ToUserName of every fixture
ALICE = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG"
BOB = "oABCDq7Jd0Hn5Wc8ZtF1uLxM6sPa"
CAROL = "oABCDf3Gh8Jk1Lm5Np9Qr2St6Uv0"
DAVE = "oABCDk2Lm7Np1Qr6St0Uv4Wx8Yz3"
MASS_SENDER = "oABCDm4Ss0Jb9Fn2Ws6Kq1Lp8Xr5"
TEMPLATE_A = "Kx3vT8qLm1NpW6cRb4YzJs9dHf2GaE7uVo5iPnQ0rC"
TEMPLATE_B = "Pq9wM2nRx5LtYb8cK1VdHs4fJg7ZeA3uTo6iSnB0rD"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def message(cls: type, from_user: str, create_time: int, msg_type: str, msg_id: int, **fields: Any):
    common = {"to_user": OA, "from_user": from_user, "create_time": create_time, "msg_type": msg_type}
    return cls, {**common, "msg_id": msg_id, **fields}


def event(cls: type, from_user: str, create_time: int, event: str, **fields: Any):
    common = {"to_user": OA, "from_user": from_user, "create_time": create_time, "msg_type": "event"}
    return cls, {**common, "event": event, **fields}


EXPECTED: dict[str, tuple[type, dict[str, Any]]] = {
    # --- messages -------------------------------------------------------------
    "text.xml": message(
        m.TextMessage,
        ALICE,
        1718852461,
        "text",
        7382459180612344321,
        content="你好，请问周末营业到几点？",
    ),
    "image.xml": message(
        m.ImageMessage,
        BOB,
        1718852590,
        "image",
        7382459733958123522,
        pic_url="http://mmbiz.qpic.cn/mmbiz_jpg/Xk3pRb9vTq2LmN8wYc5Z1aHdGf7sJe0Ku4oPiQ6rVt/0",
        media_id="Vq8N2mJpLx4RtYb7cK1dHs9fWg3ZeA6uTo0iPnQ5rC-yBvMwE8kDjX_hFlGaUzIS",
    ),
    "voice.xml": message(
        m.VoiceMessage,
        ALICE,
        1718853012,
        "voice",
        7382461546198765571,
        media_id="Tn4xR8pLq2VbW7mKc1YdHs0fJg5ZeA9uSo3iPnQ6rD-kBvMwE2jCtX_hGlFaUyOI",
        format="amr",
        recognition="明天上午十点提醒我去开会。",
    ),
    "video.xml": message(
        m.VideoMessage,
        BOB,
        1718853377,
        "video",
        7382463114582901765,
        media_id="Rz6pT1mKx9LqWb4cN8YdJs2fHg7ZeA3uVo5iPnQ1rF-lBvMwE0kDtX_jGhCaUyOS",
        thumb_media_id="Bw3kQ7nMx2RtLb8cP5YdHs4fJg1ZeA6uSo9iVnT0rG-mKvNwE3jCpX_hDlFaUyWZ",
    ),
    "shortvideo.xml": message(
        m.ShortVideoMessage,
        ALICE,
        1718853402,
        "shortvideo",
        7382463221957083142,
        media_id="Kp2wN6mRx4LtYb9cQ1VdHs7fJg3ZeA8uTo0iSnP5rH-nBvMwE6kCjX_gDlFaUzIO",
        thumb_media_id="Mx8tR3nLq6VbWp1cK4YdJs9fHg2ZeA7uSo5iTnQ0rJ-oBvNwE1kDmX_hGlCaUyPE",
    ),
    "location.xml": message(
        m.LocationMessage,
        BOB,
        1718854020,
        "location",
        7382465876301298695,
        location_x=31.230416,
        location_y=121.473701,
        scale=15,
        label="上海市黄浦区人民大道200号",
    ),
    "link.xml": message(
        m.LinkMessage,
        ALICE,
        1718854561,
        "link",
        7382468200455716872,
        title="夏季新品上市｜全场满200减30",
        description="点击查看本周新品与门店活动详情",
        url="https://mp.weixin.qq.com/s/Qx7bT2pLmN9vRk4sWc1YhA",
    ),
    "miniprogrampage.xml": message(
        m.MiniProgramPageMessage,
        BOB,
        1718855103,
        "miniprogrampage",
        7382470528193364489,
        title="经典拿铁 大杯 限时8折",
        app_id="wx8c3f2a91d7e4b605",
        page_path="pages/goods/detail.html?id=1024&from=share",
        thumb_url="http://mmbiz.qpic.cn/mmbiz_jpg/Lq5nW8pTx1RvKb6cM3YdJs0fHg4ZeA9uSo2iVnP7rK/0?wx_fmt=jpeg",
        thumb_media_id="Nc9vS4mLx7RtWq2bK8YdHp5fJg0ZeA1uTo6iPnQ3rL-sBvMwE4kDjX_hGlFaUyCT",
    ),
    "unknown_message.xml": message(m.UnknownMessage, ALICE, 1718855890, "file", 7382473908147261450),
    # --- follow, QR codes, location -------------------------------------------
    "event_subscribe.xml": event(m.SubscribeEvent, CAROL, 1718860001, "subscribe", event_key=None, ticket=None),
    "event_subscribe_qrscene.xml": event(
        m.SubscribeEvent,
        DAVE,
        1718860245,
        "subscribe",
        event_key="qrscene_store_0571",
        ticket="gQE08DwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyUHZ0M2tLd2dmRjMxMDAwMGcwN1UAAgR2qHJmAwQAjScA",
    ),
    "event_unsubscribe.xml": event(m.UnsubscribeEvent, CAROL, 1721370388, "unsubscribe", event_key=None),
    "event_scan.xml": event(
        m.ScanEvent,
        DAVE,
        1718861730,
        "SCAN",
        event_key="10086",
        ticket="gQHt7zwAAAAAAAAAAS5odHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyQ1JfcmtzZGdmRjMxMDAwMHcwN2IAAgTxrHJmAwSAOgkA",
    ),
    "event_location.xml": event(
        m.LocationEvent,
        ALICE,
        1718862004,
        "LOCATION",
        event_key=None,
        latitude=39.908823,
        longitude=116.39747,
        precision=65.0,
    ),
    # --- custom menu ------------------------------------------------------------
    "event_click.xml": event(m.ClickEvent, BOB, 1718862517, "CLICK", event_key="MENU_CONTACT_US"),
    "event_view.xml": event(
        m.ViewEvent,
        BOB,
        1718862533,
        "VIEW",
        event_key="https://shop.example.com/wx/orders?from=menu",
        menu_id="428760915",
    ),
    "event_view_miniprogram.xml": event(
        m.ViewMiniProgramEvent,
        ALICE,
        1718862602,
        "view_miniprogram",
        event_key="pages/index/index",
        menu_id="428760915",
    ),
    "event_scancode_push.xml": event(
        m.ScanCodeEvent,
        CAROL,
        1718863120,
        "scancode_push",
        event_key="SCAN_PUSH_CHECKIN",
        scan_type="qrcode",
        scan_result="https://shop.example.com/checkin?store=0571",
    ),
    "event_scancode_waitmsg.xml": event(
        m.ScanCodeEvent,
        DAVE,
        1718863188,
        "scancode_waitmsg",
        event_key="SCAN_WAIT_BARCODE",
        scan_type="barcode",
        scan_result="EAN_13,6901234567892",
    ),
    "event_pic_sysphoto.xml": event(
        m.PicEvent,
        ALICE,
        1718863740,
        "pic_sysphoto",
        event_key="PIC_CAMERA",
        count=1,
        pics=(m.PicItem(pic_md5_sum="3f8a2c9e1b7d4056a8c2e4f6b1d3a597"),),
    ),
    "event_pic_photo_or_album.xml": event(
        m.PicEvent,
        BOB,
        1718863811,
        "pic_photo_or_album",
        event_key="PIC_CAMERA_OR_ALBUM",
        count=1,
        pics=(m.PicItem(pic_md5_sum="c41e7a9b3d5f2086e1a4c7b9d2f50836"),),
    ),
    "event_pic_weixin.xml": event(
        m.PicEvent,
        CAROL,
        1718863905,
        "pic_weixin",
        event_key="PIC_WEIXIN_ALBUM",
        count=2,
        pics=(
            m.PicItem(pic_md5_sum="7d2b9f4e1a6c3085b7e9d1f3a5c82946"),
            m.PicItem(pic_md5_sum="e5a1c8f3b9d7206a4c6e8b0d2f491735"),
        ),
    ),
    "event_location_select.xml": event(
        m.LocationSelectEvent,
        DAVE,
        1718864402,
        "location_select",
        event_key="MENU_SEND_LOCATION",
        location_x=22.543099,
        location_y=114.057868,
        scale=16,
        label="广东省深圳市福田区福中三路市民中心",
        poiname="深圳市民中心",
    ),
    # --- mass send and template message results ---------------------------------
    "event_masssendjobfinish.xml": event(
        m.MassSendJobFinishEvent,
        MASS_SENDER,
        1719302415,
        "MASSSENDJOBFINISH",
        event_key=None,
        msg_id=2247498513,
        status="send success",
        total_count=15382,
        filter_count=15104,
        sent_count=15097,
        error_count=7,
        copyright_check_state=2,
        copyright_check_results=(
            m.CopyrightCheckItem(
                article_idx=1,
                user_declare_state=0,
                audit_state=2,
                original_article_url="https://mp.weixin.qq.com/s/Hk3vN8qTz1LpW6cRb4YmJw",
                original_article_type=1,
                can_reprint=1,
                need_replace_content=1,
                need_show_reprint_source=1,
            ),
            m.CopyrightCheckItem(
                article_idx=2,
                user_declare_state=0,
                audit_state=1,
                original_article_url="https://mp.weixin.qq.com/s/Zq7tB2mXc9VnK5pLw3HsRa",
                original_article_type=0,
                can_reprint=0,
                need_replace_content=0,
                need_show_reprint_source=0,
            ),
        ),
        article_url_results=(
            m.ArticleUrlItem(article_idx=1, article_url="https://mp.weixin.qq.com/s/Rb8wK3nYq5TzM1cVx7LpHg"),
        ),
    ),
    "event_masssendjobfinish_single.xml": event(
        m.MassSendJobFinishEvent,
        MASS_SENDER,
        1721894730,
        "MASSSENDJOBFINISH",
        event_key=None,
        msg_id=2247498540,
        status="send success",
        total_count=15650,
        filter_count=15371,
        sent_count=15371,
        error_count=0,
        copyright_check_state=1,
        copyright_check_results=(
            m.CopyrightCheckItem(
                article_idx=1,
                user_declare_state=0,
                audit_state=0,
                original_article_url=None,  # <OriginalArticleUrl><![CDATA[]]></OriginalArticleUrl>
                original_article_type=0,
                can_reprint=0,
                need_replace_content=0,
                need_show_reprint_source=0,
            ),
        ),
        article_url_results=(
            m.ArticleUrlItem(article_idx=1, article_url="https://mp.weixin.qq.com/s/Tc4nM9vQx2KbW7pLz5HrJd"),
            m.ArticleUrlItem(article_idx=2, article_url="https://mp.weixin.qq.com/s/Wd6pR1kYs8NcV3mQz9LtGb"),
        ),
    ),
    "event_templatesendjobfinish.xml": event(
        m.TemplateSendJobFinishEvent,
        ALICE,
        1718866030,
        "TEMPLATESENDJOBFINISH",
        event_key=None,
        msg_id=3502817739602870273,
        status="success",
    ),
    "event_templatesendjobfinish_user_block.xml": event(
        m.TemplateSendJobFinishEvent,
        BOB,
        1718866031,
        "TEMPLATESENDJOBFINISH",
        event_key=None,
        msg_id=3502817743897837570,
        status="failed:user block",
    ),
    "event_templatesendjobfinish_system_failed.xml": event(
        m.TemplateSendJobFinishEvent,
        CAROL,
        1718866033,
        "TEMPLATESENDJOBFINISH",
        event_key=None,
        msg_id=3502817748192804867,
        status="failed: system failed",
    ),
    # --- subscription notifications ---------------------------------------------
    "event_subscribe_msg_popup_event.xml": event(
        m.SubscribeMsgEvent,
        DAVE,
        1718867215,
        "subscribe_msg_popup_event",
        event_key=None,
        items=(
            m.SubscribeMsgItem(template_id=TEMPLATE_A, subscribe_status="accept", popup_scene=2),
            m.SubscribeMsgItem(template_id=TEMPLATE_B, subscribe_status="reject", popup_scene=2),
        ),
    ),
    "event_subscribe_msg_change_event.xml": event(
        m.SubscribeMsgEvent,
        DAVE,
        1719041877,
        "subscribe_msg_change_event",
        event_key=None,
        items=(m.SubscribeMsgItem(template_id=TEMPLATE_A, subscribe_status="reject"),),
    ),
    "event_subscribe_msg_sent_event.xml": event(
        m.SubscribeMsgEvent,
        DAVE,
        1718870402,
        "subscribe_msg_sent_event",
        event_key=None,
        items=(
            m.SubscribeMsgItem(
                template_id=TEMPLATE_A, msg_id=3503954617028116481, error_code=0, error_status="success"
            ),
        ),
    ),
    # --- customer service -------------------------------------------------------
    "event_kf_create_session.xml": event(
        m.KfSessionEvent, BOB, 1718871120, "kf_create_session", event_key=None, kf_account="kf2001@bookshop_cs"
    ),
    "event_kf_close_session.xml": event(
        m.KfSessionEvent, BOB, 1718872488, "kf_close_session", event_key=None, kf_account="kf2002@bookshop_cs"
    ),
    "event_kf_switch_session.xml": event(
        m.KfSwitchSessionEvent,
        BOB,
        1718871960,
        "kf_switch_session",
        event_key=None,
        from_kf_account="kf2001@bookshop_cs",
        to_kf_account="kf2002@bookshop_cs",
    ),
    # --- not modelled -----------------------------------------------------------
    "unknown_event.xml": event(m.UnknownEvent, CAROL, 1718873300, "user_get_card", event_key=None),
}

EVENT_FIXTURES = sorted(name for name, (cls, _) in EXPECTED.items() if issubclass(cls, m.Event))


def modelled_fields(cls: type) -> set[str]:
    """The dataclass fields a test must pin down: all but the catch-all ``fields`` and ``raw``."""
    return {f.name for f in dataclasses.fields(cls)} - {"fields", "raw"}


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal *and* of the same type, all the way down (``1 == 1.0`` is not good enough)."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is {type(actual).__name__}, want {expected!r}"
    if dataclasses.is_dataclass(expected):
        for f in dataclasses.fields(expected):
            assert_same(getattr(actual, f.name), getattr(expected, f.name), f"{where}.{f.name}")
    elif isinstance(expected, tuple):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, want {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# --- every fixture, every modelled field ---------------------------------------------


def test_every_fixture_file_has_expectations():
    assert {p.name for p in FIXTURES.glob("*.xml")} == set(EXPECTED)


def test_every_known_type_has_a_fixture():
    msg_types = {values["msg_type"] for cls, values in EXPECTED.values() if not issubclass(cls, m.Event)}
    events = {values["event"].lower() for cls, values in EXPECTED.values() if issubclass(cls, m.Event)}
    assert set(m.MESSAGE_TYPES) <= msg_types
    assert set(m.EVENT_TYPES) <= events


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_push(name):
    cls, values = EXPECTED[name]
    push = m.parse(load(name))

    assert type(push) is cls
    # the expectations name every modelled field, so a field added later cannot go untested
    assert set(values) == modelled_fields(cls)
    for field_name, expected in values.items():
        assert_same(getattr(push, field_name), expected, field_name)
    assert push.raw is not None and push.raw.tag == "xml"


# --- event names, scenes, pictures ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event", "lower"),
    [
        ("event_scan.xml", "SCAN", "scan"),
        ("event_location.xml", "LOCATION", "location"),
        ("event_click.xml", "CLICK", "click"),
        ("event_view.xml", "VIEW", "view"),
        ("event_masssendjobfinish.xml", "MASSSENDJOBFINISH", "masssendjobfinish"),
        ("event_templatesendjobfinish.xml", "TEMPLATESENDJOBFINISH", "templatesendjobfinish"),
        ("event_subscribe.xml", "subscribe", "subscribe"),
        ("event_view_miniprogram.xml", "view_miniprogram", "view_miniprogram"),
        ("unknown_event.xml", "user_get_card", "user_get_card"),
    ],
)
def test_event_keeps_wechat_case_and_name_is_lower_case(name, event, lower):
    push = m.parse(load(name))
    assert push.event == event
    assert push.name == lower


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_every_event_name_is_its_event_lower_cased(name):
    push = m.parse(load(name))
    assert push.name == push.event.lower()
    assert push.msg_type == "event"


def test_subscribe_from_parametric_qr_code_has_a_scene():
    assert m.parse(load("event_subscribe_qrscene.xml")).scene == "store_0571"
    assert m.parse(load("event_subscribe.xml")).scene is None


def test_pic_event_lists_md5_sums_in_order():
    push = m.parse(load("event_pic_weixin.xml"))
    assert push.pic_md5_sums == ("7d2b9f4e1a6c3085b7e9d1f3a5c82946", "e5a1c8f3b9d7206a4c6e8b0d2f491735")


def test_short_video_is_its_own_class():
    assert m.MESSAGE_TYPES["shortvideo"] is m.ShortVideoMessage
    assert m.parse(load("shortvideo.xml")).msg_type == "shortvideo"


# --- dedup keys --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dedup_key_is_stable_across_retries(name):
    # WeChat retries an unanswered push with the very same body
    assert m.parse(load(name)).dedup_key == m.parse(load(name)).dedup_key


def test_dedup_keys_differ_between_mass_send_finish_pushes():
    both = m.parse(load("event_masssendjobfinish.xml")), m.parse(load("event_masssendjobfinish_single.xml"))
    assert both[0].dedup_key != both[1].dedup_key


def test_mass_send_finish_dedup_key_depends_on_msg_id():
    body = load("event_masssendjobfinish.xml")
    other = body.replace(b"<MsgID>2247498513</MsgID>", b"<MsgID>2247498514</MsgID>")
    assert other != body
    assert m.parse(body).dedup_key != m.parse(other).dedup_key


def test_message_dedup_key_depends_on_msg_id():
    body = load("text.xml")
    other = body.replace(b"7382459180612344321", b"7382459180612344322")
    assert m.parse(body).dedup_key != m.parse(other).dedup_key


def test_all_fixtures_have_distinct_dedup_keys():
    keys = [m.parse(load(name)).dedup_key for name in EXPECTED]
    assert len(set(keys)) == len(keys)


def test_subscribe_msg_sent_dedup_key_depends_on_nested_msg_id():
    body = load("event_subscribe_msg_sent_event.xml")
    other = body.replace(b"3503954617028116481", b"3503954617028116482").replace(
        TEMPLATE_A.encode(), TEMPLATE_B.encode()
    )
    assert m.parse(body).dedup_key != m.parse(other).dedup_key


# --- unknown types keep everything ------------------------------------------------


def test_unknown_message_keeps_every_field():
    push = m.parse(load("unknown_message.xml"))
    assert dict(push.fields) == {
        "ToUserName": OA,
        "FromUserName": ALICE,
        "CreateTime": "1718855890",
        "MsgType": "file",
        "Title": "2024年度会员活动方案.pdf",
        "Description": "1.2 MB",
        "FileKey": "5f3c9a1e7b2d4068a9c1e3f5b7d90246",
        "FileMd5": "9b2e4d6f8a0c1e3b5d7f9a1c3e5b7d90",
        "FileTotalLen": "1258291",
        "MsgId": "7382473908147261450",
    }


def test_unknown_event_keeps_every_field():
    push = m.parse(load("unknown_event.xml"))
    # padded CDATA is trimmed; FriendUserName and OldUserCardCode are empty, so absent
    assert dict(push.fields) == {
        "ToUserName": OA,
        "FromUserName": CAROL,
        "CreateTime": "1718873300",
        "MsgType": "event",
        "Event": "user_get_card",
        "CardId": "pABCDw5Kx2Lq8Tn3Vb6Yc1Rm9Zs4",
        "IsGiveByFriend": "0",
        "UserCardCode": "318604972215",
        "OuterId": "0",
        "OuterStr": "spring_campaign",
        "IsRestoreMemberCard": "0",
        "IsRecommendByFriend": "0",
        "UnionId": "oXYZu9Rk2Tm6Pn1Lq7Vb3Wc5Hs8D",
    }


def test_unmodelled_fields_of_known_types_stay_in_fields():
    push = m.parse(load("voice.xml"))
    assert push.fields["MediaId16"] == "Hd5qW2nLx8RtKb3cM7YpJs1fVg9ZeA4uTo6iPnQ0rE"
    push = m.parse(load("event_masssendjobfinish.xml"))
    assert push.fields["CopyrightCheckResult/Count"] == "2"


# --- what real pushes do to a parser ----------------------------------------------


def test_empty_element_is_none():
    body = re.sub(rb"<Recognition>.*?</Recognition>", b"<Recognition><![CDATA[]]></Recognition>", load("voice.xml"))
    assert b"<Recognition><![CDATA[]]></Recognition>" in body
    push = m.parse(body)
    assert push.recognition is None
    assert push.format == "amr"


def test_msg_id_spelled_msgid_upper_is_accepted_for_messages():
    body = load("text.xml").replace(b"<MsgId>", b"<MsgID>").replace(b"</MsgId>", b"</MsgID>")
    assert b"<MsgID>" in body
    push = m.parse(body)
    assert_same(push.msg_id, 7382459180612344321, "msg_id")
    assert push.dedup_key == m.parse(load("text.xml")).dedup_key


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("周末\x01营业", "周末营业"),
        ("周末\x08营业", "周末营业"),
        ("\x1b[1m周末营业", "[1m周末营业"),
        ("周\x01末\x08营\x1b业", "周末营业"),
    ],
)
def test_control_characters_in_text_are_stripped(dirty, clean):
    body = load("text.xml").replace("周末营业".encode(), dirty.encode())
    assert dirty.encode() in body
    push = m.parse(body)
    assert type(push) is m.TextMessage
    assert push.content == f"你好，请问{clean}到几点？"


DTD_BODIES = {
    "internal entity": b'<!DOCTYPE xml [<!ENTITY shop "Bookshop">]>\n'
    + load("text.xml").replace("你好".encode(), "你好 &shop;".encode()),
    "entity expansion bomb": b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>\n' + load("text.xml").replace("你好".encode(), b"&c;"),
    "external entity": b'<!DOCTYPE xml [<!ENTITY leak SYSTEM "file:///nonexistent/secret.txt">]>\n'
    + load("text.xml").replace("你好".encode(), b"&leak;"),
    "bare doctype": b"<!DOCTYPE xml>\n" + load("text.xml"),
    "network dtd": b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/push.dtd">\n' + load("text.xml"),
}


@pytest.mark.parametrize("body", DTD_BODIES.values(), ids=DTD_BODIES.keys())
def test_doctype_and_entity_declarations_are_refused(body):
    with pytest.raises(PushError):
        m.parse(body)


def test_parser_does_not_read_a_local_dtd(tmp_path):
    from lxml import etree

    dtd = tmp_path / "push.dtd"
    dtd.write_text("<!ELEMENT xml ANY>\n")
    body = f'<!DOCTYPE xml SYSTEM "{dtd}"><xml><A>1</A></xml>'.encode()
    assert etree.fromstring(body, _PARSER).getroottree().docinfo.externalDTD is None


@pytest.mark.parametrize("tag", m.REQUIRED_FIELDS)
def test_missing_required_field_is_refused(tag):
    body = re.sub(rf"\s*<{tag}>.*?</{tag}>".encode(), b"", load("text.xml"))
    assert f"<{tag}>".encode() not in body
    with pytest.raises(PushError, match=tag):
        m.parse(body)


@pytest.mark.parametrize("tag", m.REQUIRED_FIELDS)
def test_empty_required_field_is_refused(tag):
    body = re.sub(rf"<{tag}>.*?</{tag}>".encode(), f"<{tag}><![CDATA[ ]]></{tag}>".encode(), load("text.xml"))
    with pytest.raises(PushError, match=tag):
        m.parse(body)


@pytest.mark.parametrize(
    "body",
    [
        load("text.xml").replace("你好，请问周末营业到几点？".encode(), "你好，请问周末营业到几点？".encode("gbk")),
        load("text.xml").decode().encode("utf-16"),
        load("text.xml").replace(b"<MsgType>", b"\xff<MsgType>"),
    ],
    ids=["gbk", "utf-16", "stray 0xff"],
)
def test_non_utf8_body_is_refused(body):
    with pytest.raises(PushError, match="UTF-8"):
        m.parse(body)


@pytest.mark.parametrize("create_time", [b"tomorrow", b"1718852461.5", b"0x66754c6d", b"<![CDATA[now]]>"])
def test_non_numeric_create_time_is_refused(create_time):
    body = load("text.xml").replace(b">1718852461</CreateTime>", b">" + create_time + b"</CreateTime>")
    with pytest.raises(PushError, match="CreateTime"):
        m.parse(body)


def test_event_push_without_event_is_refused():
    body = re.sub(rb"\s*<Event>.*?</Event>", b"", load("event_click.xml"))
    with pytest.raises(PushError, match="Event"):
        m.parse(body)


@pytest.mark.parametrize("body", [b"", b"success", b"<xml><ToUserName>", b'{"ToUserName": "gh"}'])
def test_malformed_body_is_refused(body):
    with pytest.raises(PushError):
        m.parse(body)


def test_an_unreadable_optional_number_is_left_out_and_kept_as_text(caplog):
    body = load("location.xml").replace(b"<Scale>15</Scale>", b"<Scale>fifteen</Scale>")
    with caplog.at_level("WARNING", logger="app.messages"):
        push = m.parse(body)
    assert push.scale is None
    assert push.fields["Scale"] == "fifteen"
    assert "Scale is not a valid integer" in caplog.text


def test_an_unreadable_msg_id_still_deduplicates():
    body = load("text.xml")
    odd = re.sub(rb"<MsgId>\d+</MsgId>", b"<MsgId>not-a-number</MsgId>", body)
    push = m.parse(odd)
    assert push.msg_id is None
    assert push.dedup_key == m.parse(odd).dedup_key == "msg:not-a-number"
