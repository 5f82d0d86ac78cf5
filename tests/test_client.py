"""The WeChat API client against a fake WeChat API on 127.0.0.1 (:mod:`app.testing.fakeapi`).

Every send is checked as WeChat receives it: method, path, query and JSON body,
down to the UTF-8 bytes.  The token tests count the requests the fake saw.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from types import SimpleNamespace

import pytest

import app.client.base as client_base
from app import jobs
from app.access_token import CACHE_KEY, TokenCache
from app.errors import (
    InvalidOpenId,
    NotSubscribed,
    OutsideServiceWindow,
    RateLimited,
    SystemBusy,
    TokenInvalid,
    TransportError,
    WeChatError,
)
from app.store.sqlite import SQLiteStore
from app.testing import PushClient, event_push
from app.testing.fakeapi import FakeWeChatAPI
from tests.api_fixtures import age_cached_token, make_app, send_from_worker

SEND = "/cgi-bin/message/custom/send"
ALICE, BOB = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG", "oABCDq7Jd0Hn5Wc8ZtF1uLxM6sPa"
CHINESE_EMOJI = "你好😀"


@pytest.fixture
def app(tmp_path, fake):
    return make_app(tmp_path, fake)


@pytest.fixture
def client(app):
    return app.extensions["wechat"].client


@pytest.fixture
def store(app):
    return app.extensions["wechat"].store


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


def wire(value) -> bytes:
    """``value`` encoded as a JSON body should be: UTF-8, no \\u escapes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- sends: the exact request WeChat receives -----------------------------------


def test_text_goes_out_as_utf8_json_without_escapes(fake, client):
    client.send_text(ALICE, CHINESE_EMOJI)

    sent = only(fake.requests_to(SEND))
    assert sent.method == "POST"
    assert sent.query == {"access_token": fake.issued_tokens[0]}
    assert sent.body == f'{{"touser":"{ALICE}","msgtype":"text","text":{{"content":"你好😀"}}}}'.encode()
    assert b"\xe4\xbd\xa0\xe5\xa5\xbd\xf0\x9f\x98\x80" in sent.body  # the raw UTF-8 bytes, no \\u escapes
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda c: c.send_image(ALICE, "IMG_1"), {"msgtype": "image", "image": {"media_id": "IMG_1"}}),
        (lambda c: c.send_voice(ALICE, "VOICE_1"), {"msgtype": "voice", "voice": {"media_id": "VOICE_1"}}),
        (
            lambda c: c.send_video(ALICE, "VID_1", "THUMB_1", title="片名", description="简介"),
            {
                "msgtype": "video",
                "video": {"media_id": "VID_1", "thumb_media_id": "THUMB_1", "title": "片名", "description": "简介"},
            },
        ),
        (
            lambda c: c.send_video(ALICE, "VID_1", "THUMB_1"),
            {"msgtype": "video", "video": {"media_id": "VID_1", "thumb_media_id": "THUMB_1"}},
        ),
        (
            lambda c: c.send_music(
                ALICE, "https://m.example/a.mp3", "https://m.example/a-hq.mp3", "THUMB_2", title="歌", description="🎵"
            ),
            {
                "msgtype": "music",
                "music": {
                    "title": "歌",
                    "description": "🎵",
                    "musicurl": "https://m.example/a.mp3",
                    "hqmusicurl": "https://m.example/a-hq.mp3",
                    "thumb_media_id": "THUMB_2",
                },
            },
        ),
        (
            lambda c: c.send_news(
                ALICE,
                [
                    {
                        "title": "标题",
                        "description": "描述",
                        "url": "https://e.example/1",
                        "picurl": "https://e.example/1.jpg",
                    }
                ],
            ),
            {
                "msgtype": "news",
                "news": {
                    "articles": [
                        {
                            "title": "标题",
                            "description": "描述",
                            "url": "https://e.example/1",
                            "picurl": "https://e.example/1.jpg",
                        }
                    ]
                },
            },
        ),
        (lambda c: c.send_mpnews(ALICE, "NEWS_1"), {"msgtype": "mpnews", "mpnews": {"media_id": "NEWS_1"}}),
        (
            lambda c: c.send_text(ALICE, "hi", kf_account="kf2001@gh_test"),
            {"msgtype": "text", "text": {"content": "hi"}, "customservice": {"kf_account": "kf2001@gh_test"}},
        ),
        (
            lambda c: c.send_news(ALICE, [{"url": "https://e.example/2", "picurl": "https://e.example/2.jpg"}]),
            {
                "msgtype": "news",
                "news": {"articles": [{"url": "https://e.example/2", "picurl": "https://e.example/2.jpg"}]},
            },
        ),
        (
            lambda c: c.send_mpnewsarticle(ALICE, "ART_1", kf_account="kf2001@gh_test"),
            {
                "msgtype": "mpnewsarticle",
                "mpnewsarticle": {"article_id": "ART_1"},
                "customservice": {"kf_account": "kf2001@gh_test"},
            },
        ),
        (
            lambda c: c.send_msgmenu(
                ALICE, [("101", "满意"), {"id": "102", "content": "不满意"}], "您对本次服务是否满意呢？", "欢迎再次光临"
            ),
            {
                "msgtype": "msgmenu",
                "msgmenu": {
                    "head_content": "您对本次服务是否满意呢？",
                    "list": [{"id": "101", "content": "满意"}, {"id": "102", "content": "不满意"}],
                    "tail_content": "欢迎再次光临",
                },
            },
        ),
        (
            lambda c: c.send_msgmenu(ALICE, [("1", "yes")]),
            {"msgtype": "msgmenu", "msgmenu": {"list": [{"id": "1", "content": "yes"}]}},
        ),
        (lambda c: c.send_wxcard(ALICE, "CARD_1"), {"msgtype": "wxcard", "wxcard": {"card_id": "CARD_1"}}),
        (
            lambda c: c.send_miniprogrampage(ALICE, "wxmini", "pages/index?a=1", "THUMB_3", title="小程序"),
            {
                "msgtype": "miniprogrampage",
                "miniprogrampage": {
                    "title": "小程序",
                    "appid": "wxmini",
                    "pagepath": "pages/index?a=1",
                    "thumb_media_id": "THUMB_3",
                },
            },
        ),
        (
            lambda c: c.send_link(ALICE, "链接", "https://e.example/l", "https://e.example/t.jpg", description="d"),
            {
                "msgtype": "link",
                "link": {
                    "title": "链接",
                    "description": "d",
                    "url": "https://e.example/l",
                    "thumb_url": "https://e.example/t.jpg",
                },
            },
        ),
    ],
    ids=[
        "image",
        "voice",
        "video",
        "video-bare",
        "music",
        "news",
        "mpnews",
        "kf_account",
        "news-without-title",
        "mpnewsarticle",
        "msgmenu",
        "msgmenu-bare",
        "wxcard",
        "miniprogrampage",
        "link",
    ],
)
def test_each_customer_service_message(fake, client, send, expected):
    send(client)

    sent = only(fake.requests_to(SEND))
    assert sent.query == {"access_token": fake.issued_tokens[0]}
    assert sent.json == {"touser": ALICE, **expected}
    assert sent.body == wire(sent.json)  # UTF-8, compact, no escapes


def test_news_takes_one_article_with_at_least_one_field(fake, client):
    two = [{"title": "a"}, {"title": "b"}]
    with pytest.raises(ValueError, match="1 article"):
        client.send_news(ALICE, two)
    with pytest.raises(ValueError, match="article 1: give at least one of title"):
        client.send_news(ALICE, [{}])
    with pytest.raises(ValueError, match="unknown field 'thumb_url'"):
        client.send_news(ALICE, [{"title": "t", "thumb_url": "x"}])
    assert fake.requests == []


def test_a_menu_needs_items_with_an_id_and_content(fake, client):
    with pytest.raises(ValueError, match="at least one item"):
        client.send_msgmenu(ALICE, [])
    with pytest.raises(ValueError, match="menu item 2: field 'content' is required"):
        client.send_msgmenu(ALICE, [("1", "yes"), {"id": "2"}])
    assert fake.requests == []


def test_upload_news_sends_up_to_eight_articles(fake, client):
    articles = [
        {
            "thumb_media_id": f"T{i}",
            "title": f"第{i}篇",
            "content": "<p>正文</p>",
            "author": "编辑",
            "digest": "摘要",
            "content_source_url": "https://e.example",
            "show_cover_pic": 1,
        }
        for i in range(8)
    ]

    result = client.upload_news(articles)

    sent = only(fake.requests_to("media/uploadnews"))
    assert sent.json == {"articles": articles}
    assert "第7篇".encode() in sent.body
    assert result["type"] == "news" and result["media_id"].startswith("fake-news-")


def test_upload_news_refuses_nine_articles_or_a_missing_field_before_any_call(fake, client):
    article = {"thumb_media_id": "T", "title": "t", "content": "c"}
    with pytest.raises(ValueError, match="1 to 8 articles, got 9"):
        client.upload_news([article] * 9)
    with pytest.raises(ValueError, match="article 2: field 'content' is required"):
        client.upload_news([article, {"thumb_media_id": "T", "title": "t"}])
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        client.upload_news([{**article, "colour": "red"}])
    assert fake.requests == []


def test_mass_send_by_tag(fake, client, store):
    msg_id = client.mass_send_to_tag("text", CHINESE_EMOJI, 2)

    sent = only(fake.requests_to("message/mass/sendall"))
    assert sent.query == {"access_token": fake.issued_tokens[0]}
    clientmsgid = sent.json.pop("clientmsgid")
    assert sent.json == {
        "filter": {"is_to_all": False, "tag_id": 2},
        "text": {"content": CHINESE_EMOJI},
        "msgtype": "text",
        "send_ignore_reprint": 0,
    }
    assert isinstance(clientmsgid, str) and 0 < len(clientmsgid) <= 64
    assert CHINESE_EMOJI.encode() in sent.body
    job = store.get_job(jobs.MASS, str(msg_id))
    assert (job.kind, job.target, job.status) == ("mass", "tag:2", "submitted")


def test_mass_send_to_all(fake, client, store):
    msg_id = client.mass_send_to_all("mpnews", "NEWS_1", send_ignore_reprint=True, clientmsgid="batch-7")

    sent = only(fake.requests_to("message/mass/sendall"))
    assert sent.json == {
        "filter": {"is_to_all": True},
        "mpnews": {"media_id": "NEWS_1"},
        "msgtype": "mpnews",
        "send_ignore_reprint": 1,
        "clientmsgid": "batch-7",
    }
    assert store.get_job(jobs.MASS, str(msg_id)).target == "all"


def test_mass_send_to_openids_deduplicates_in_one_call(fake, client, store):
    msg_ids = client.mass_send_to_openids([ALICE, BOB, ALICE, " ", "", f" {BOB} "], "image", "IMG_1")

    sent = only(fake.requests_to("message/mass/send"))
    assert sent.json.pop("clientmsgid")
    assert sent.json == {
        "touser": [ALICE, BOB],
        "image": {"media_id": "IMG_1"},
        "msgtype": "image",
        "send_ignore_reprint": 0,
    }
    assert len(msg_ids) == 1
    assert store.get_job(jobs.MASS, str(msg_ids[0])).target == "openids:2"


@pytest.mark.parametrize(("count", "sizes"), [(10_000, [10_000]), (10_001, [5001, 5000]), (25_000, [8334, 8333, 8333])])
def test_mass_send_to_openids_splits_into_balanced_calls(fake, client, store, count, sizes):
    openids = [f"o{n:027d}" for n in range(count)]

    msg_ids = client.mass_send_to_openids(openids + openids[:50], "text", "hello")

    calls = fake.requests_to("message/mass/send")
    assert [len(call.json["touser"]) for call in calls] == sizes
    assert [o for call in calls for o in call.json["touser"]] == openids  # each once, in order
    assert len({call.json["clientmsgid"] for call in calls}) == len(calls)
    assert len(msg_ids) == len(calls) == len(set(msg_ids))
    targets = sorted(store.get_job(jobs.MASS, str(m)).target for m in msg_ids)
    assert targets == sorted(f"openids:{size}" for size in sizes)


@pytest.mark.parametrize("openids", [[], [ALICE], [ALICE, ALICE, " ", ""]])
def test_mass_send_to_fewer_than_two_openids_is_refused_before_any_call(fake, client, openids):
    with pytest.raises(ValueError, match="at least 2 distinct openids"):
        client.mass_send_to_openids(openids, "text", "hello")
    assert fake.requests == []


def test_mass_send_of_an_unknown_type_is_refused_before_any_call(fake, client):
    with pytest.raises(ValueError, match="mass send type"):
        client.mass_send_to_tag("video", "M", 1)
    with pytest.raises(ValueError, match="only with an mpvideo"):
        client.mass_send_to_tag("image", "M", 1, title="t")
    assert fake.requests == []


def test_a_mass_video_goes_through_uploadvideo_with_its_title_and_description(fake, client, store):
    uploaded = client.upload_video("VIDEO_RAW", title="发布会", description="全程回放")
    by_tag = client.mass_send_to_tag("mpvideo", uploaded["media_id"], 3)
    by_openid = client.mass_send_to_openids(
        [ALICE, BOB], "mpvideo", uploaded["media_id"], title="发布会", description="全程回放"
    )

    assert only(fake.requests_to("media/uploadvideo")).json == {
        "media_id": "VIDEO_RAW",
        "title": "发布会",
        "description": "全程回放",
    }
    assert uploaded["type"] == "video" and uploaded["media_id"].startswith("fake-video-")
    sendall = only(fake.requests_to("message/mass/sendall")).json
    assert (sendall["msgtype"], sendall["mpvideo"]) == ("mpvideo", {"media_id": uploaded["media_id"]})
    send = only(fake.requests_to("message/mass/send")).json
    assert send["mpvideo"] == {"media_id": uploaded["media_id"], "title": "发布会", "description": "全程回放"}
    assert store.get_job(jobs.MASS, str(by_tag)).status == "submitted"
    assert store.get_job(jobs.MASS, str(by_openid[0])).target == "openids:2"


def test_a_mass_card(fake, client):
    client.mass_send_to_all("wxcard", "CARD_1")

    sent = only(fake.requests_to("message/mass/sendall")).json
    assert (sent["filter"], sent["msgtype"], sent["wxcard"]) == ({"is_to_all": True}, "wxcard", {"card_id": "CARD_1"})


def test_mass_preview_goes_to_one_follower_and_records_no_job(fake, client, store):
    by_openid = client.mass_preview("text", CHINESE_EMOJI, openid=ALICE)
    client.mass_preview("mpnews", "NEWS_1", wxname="some_wechat_id")

    first, second = fake.requests_to("message/mass/preview")
    assert first.json == {"touser": ALICE, "text": {"content": CHINESE_EMOJI}, "msgtype": "text"}
    assert second.json == {"towxname": "some_wechat_id", "mpnews": {"media_id": "NEWS_1"}, "msgtype": "mpnews"}
    assert isinstance(by_openid, int)
    assert store.list_jobs() == []
    with pytest.raises(ValueError, match="exactly one of openid or wxname"):
        client.mass_preview("text", "x", openid=ALICE, wxname="w")
    assert len(fake.requests_to("message/mass/preview")) == 2


def test_mass_speed(fake, client):
    assert client.mass_speed() == {"speed": 0, "realspeed": 80}
    client.set_mass_speed(3)
    assert client.mass_speed() == {"speed": 3, "realspeed": 30}
    assert only(fake.requests_to("message/mass/speed/set")).json == {"speed": 3}
    with pytest.raises(ValueError, match="0 to 4"):
        client.set_mass_speed(5)


def test_a_long_mass_send_reports_its_progress_after_each_call(fake, client):
    seen = []

    client.mass_send_to_openids([f"o{n:027d}" for n in range(25_001)], "text", "hi", progress=lambda *p: seen.append(p))

    assert seen == [(0, 25_001), (8_334, 25_001), (16_668, 25_001), (25_001, 25_001)]


def test_mass_delete_and_get(fake, client):
    client.mass_delete(1000000123)
    client.mass_delete(1000000124, article_idx=2)
    status = client.mass_status(1000000123)

    deletes = fake.requests_to("message/mass/delete")
    assert [d.json for d in deletes] == [{"msg_id": 1000000123}, {"msg_id": 1000000124, "article_idx": 2}]
    assert only(fake.requests_to("message/mass/get")).json == {"msg_id": 1000000123}
    assert status == "SEND_SUCCESS"


def test_template_send(fake, client, store):
    data = {"first": {"value": "您好😀", "color": "#173177"}, "keyword1": {"value": "订单 42"}}
    msgid = client.send_template(
        ALICE,
        "TPL_1",
        data,
        url="https://e.example/o/42",
        miniprogram={"appid": "wxmini", "pagepath": "pages/o?id=42"},
        topcolor="#FF0000",
    )

    sent = only(fake.requests_to("message/template/send"))
    assert sent.query == {"access_token": fake.issued_tokens[0]}
    client_msg_id = sent.json.pop("client_msg_id")
    assert isinstance(client_msg_id, str) and client_msg_id
    assert sent.json == {
        "touser": ALICE,
        "template_id": "TPL_1",
        "data": data,
        "url": "https://e.example/o/42",
        "miniprogram": {"appid": "wxmini", "pagepath": "pages/o?id=42"},
        "topcolor": "#FF0000",
    }
    assert "您好😀".encode() in sent.body and b"\\u" not in sent.body
    assert isinstance(msgid, int)
    job = store.get_job(jobs.TEMPLATE, str(msgid))
    assert (job.kind, job.target, job.status) == ("template", f"openid:{ALICE}", "submitted")


def test_template_data_needs_a_value_for_each_field(fake, client):
    with pytest.raises(ValueError, match="'keyword1' needs a \"value\""):
        client.send_template(ALICE, "TPL_1", {"first": {"value": "x"}, "keyword1": {"color": "#000"}})
    assert fake.requests == []


def test_every_send_gets_a_new_client_id(fake, client):
    client.send_template(ALICE, "TPL_1", {"first": {"value": "x"}})
    client.send_template(ALICE, "TPL_1", {"first": {"value": "x"}})
    client.mass_send_to_tag("text", "a", 1)
    client.mass_send_to_tag("text", "a", 1)

    template_ids = {r.json["client_msg_id"] for r in fake.requests_to("message/template/send")}
    mass_ids = {r.json["clientmsgid"] for r in fake.requests_to("message/mass/sendall")}
    assert len(template_ids) == 2 and len(mass_ids) == 2


# --- typed errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "error_class"),
    [
        (45015, OutsideServiceWindow),
        (43004, NotSubscribed),
        (40003, InvalidOpenId),
        (45009, RateLimited),
        (45011, RateLimited),
        (48001, WeChatError),
    ],
)
def test_wechat_errors_are_typed_and_not_retried(fake, client, errcode, error_class):
    fake.fail("message/custom/send", errcode, "refused for the test")

    with pytest.raises(WeChatError) as caught:
        client.send_text(ALICE, "hi")

    assert type(caught.value) is error_class
    assert (caught.value.errcode, caught.value.errmsg, caught.value.endpoint) == (
        errcode,
        "refused for the test",
        "message/custom/send",
    )
    assert len(fake.requests_to(SEND)) == 1


# --- the access token -------------------------------------------------------------


def test_stable_token_is_fetched_once_and_reused(fake, client):
    for _ in range(3):
        client.send_text(ALICE, "hi")

    token_request = only(fake.token_requests())
    assert (token_request.method, token_request.path, token_request.query) == ("POST", "/cgi-bin/stable_token", {})
    assert token_request.json == {
        "grant_type": "client_credential",
        "appid": fake.app_id,
        "secret": fake.app_secret,
        "force_refresh": False,
    }
    assert {r.query["access_token"] for r in fake.requests_to(SEND)} == {fake.issued_tokens[0]}


def test_classic_token_endpoint_is_a_setting(tmp_path, fake):
    client = make_app(tmp_path, fake, WECHAT_TOKEN_ENDPOINT="token").extensions["wechat"].client

    client.send_text(ALICE, "hi")
    client.send_text(ALICE, "hi")

    token_request = only(fake.token_requests())
    assert (token_request.method, token_request.path, token_request.body) == ("GET", "/cgi-bin/token", b"")
    assert token_request.query == {"grant_type": "client_credential", "appid": fake.app_id, "secret": fake.app_secret}


def test_the_token_is_cached_in_the_store_for_every_worker(tmp_path, fake, client):
    client.send_text(ALICE, "hi")
    another_worker = make_app(tmp_path, fake).extensions["wechat"].client  # same store file

    another_worker.send_text(BOB, "hi")

    assert len(fake.token_requests()) == 1
    assert only(fake.requests_to(SEND)[1:]).query["access_token"] == fake.issued_tokens[0]


def test_a_token_near_its_expiry_is_refreshed_ahead_of_it(fake, client):
    client.send_text(ALICE, "hi")
    age_cached_token(client, seconds_left=100)

    client.send_text(ALICE, "hi")
    client.send_text(ALICE, "hi")

    assert len(fake.token_requests()) == 2
    assert fake.token_requests()[1].json["force_refresh"] is False
    assert [r.query["access_token"] for r in fake.requests_to(SEND)[1:]] == [fake.issued_tokens[-1]] * 2


def test_a_token_handed_back_near_its_expiry_is_not_asked_for_on_every_call(fake, client):
    """WeChat's stable endpoint may return the same token in its last minutes; that must not cause a storm."""
    client.send_text(ALICE, "hi")
    age_cached_token(client, seconds_left=100, fetched_ago=1)  # just fetched, yet inside the refresh window

    for _ in range(5):
        client.send_text(ALICE, "hi")

    assert len(fake.token_requests()) == 1
    age_cached_token(client, seconds_left=100, fetched_ago=61)  # asked a minute ago: time to ask again
    client.send_text(ALICE, "hi")
    assert len(fake.token_requests()) == 2


def test_a_token_in_its_last_seconds_is_never_used(fake, client):
    client.send_text(ALICE, "hi")
    age_cached_token(client, seconds_left=3, fetched_ago=1)
    client.send_text(ALICE, "hi")
    assert len(fake.token_requests()) == 2


def run_threads(count, target):
    errors = []
    start = threading.Barrier(count)

    def run(n):
        start.wait()
        try:
            target(n)
        except Exception as exc:  # collected, so a failure in a thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def test_fifty_threads_without_a_token_make_one_token_request(fake, client):
    errors = run_threads(50, lambda n: client.send_text(f"o{n}", "hi"))

    assert errors == []
    assert len(fake.token_requests()) == 1
    sends = fake.requests_to(SEND)
    assert len(sends) == 50
    assert {r.query["access_token"] for r in sends} == {fake.issued_tokens[0]}


def test_fifty_threads_with_an_expired_token_make_one_token_request(fake, client):
    client.send_text(ALICE, "warm up")
    fake.expire_tokens()  # WeChat answers 42001 from now on; the cache still holds the old token
    fake.clear()

    errors = run_threads(50, lambda n: client.send_text(f"o{n}", "hi"))

    assert errors == []
    assert len(fake.token_requests()) == 1  # one refresh, not one per thread
    old, new = fake.issued_tokens
    sends = fake.requests_to(SEND)
    assert {r.query["access_token"] for r in sends} <= {old, new}
    assert len([r for r in sends if r.query["access_token"] == new]) == 50  # every thread got through
    assert len(sends) <= 100  # at most one retry each


@pytest.mark.parametrize("cache", ["empty", "expired at WeChat"])
def test_worker_processes_share_one_token_refresh(tmp_path, fake, cache):
    db_path = str(tmp_path / "s.db")
    if cache == "expired at WeChat":
        make_app(tmp_path, fake).extensions["wechat"].client.send_text(ALICE, "warm up")
        fake.expire_tokens()
    fake.clear()
    workers = 4
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(workers + 1)
    processes = [
        spawn.Process(
            target=send_from_worker, args=(db_path, fake.base_url, fake.app_id, fake.app_secret, f"o{n}", barrier)
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    barrier.wait(timeout=60)
    for process in processes:
        process.join(timeout=60)

    assert [p.exitcode for p in processes] == [0] * workers
    assert len(fake.token_requests()) == 1
    new = fake.issued_tokens[-1]
    assert len([r for r in fake.requests_to(SEND) if r.query["access_token"] == new]) == workers


def test_a_refused_token_is_replaced_and_the_call_retried_once(fake, client):
    client.send_text(ALICE, "hi")
    fake.fail("message/custom/send", 40001)  # revokes the token that call carries

    client.send_text(BOB, "again")

    first, failed, retried = fake.requests_to(SEND)
    assert len(fake.token_requests()) == 2
    assert fake.token_requests()[1].json["force_refresh"] is False  # WeChat already issues a new one
    assert failed.query["access_token"] == fake.issued_tokens[0]
    assert retried.query["access_token"] == fake.issued_tokens[1]
    assert retried.json == failed.json == {"touser": BOB, "msgtype": "text", "text": {"content": "again"}}


def test_two_refusals_in_a_row_raise_instead_of_looping(fake, client):
    fake.fail("message/custom/send", 42001, times=5)

    with pytest.raises(TokenInvalid) as caught:
        client.send_text(ALICE, "hi")

    assert (caught.value.errcode, caught.value.endpoint) == (42001, "message/custom/send")
    assert len(fake.requests_to(SEND)) == 2
    assert len(fake.token_requests()) == 2


def test_a_failed_token_is_dropped_only_if_it_is_still_the_cached_one(fake, client):
    client.send_text(ALICE, "hi")
    old = fake.issued_tokens[0]
    new = client.tokens.refresh(force=True)  # e.g. another worker replaced it meanwhile
    assert fake.token_requests()[1].json["force_refresh"] is True

    client.tokens.invalidate(old)
    assert client.tokens.refresh(failed_token=old) == new

    assert client.tokens.cached().token == new
    assert len(fake.token_requests()) == 2


def test_force_mode_only_when_wechat_hands_back_the_refused_token(tmp_path):
    calls = []

    def fetch(force):
        calls.append(force)
        return ("T2" if force else "T1"), 7200

    tokens = TokenCache(SQLiteStore(str(tmp_path / "t.db")), fetch)
    assert tokens.get() == "T1"
    assert tokens.refresh(failed_token="T1") == "T2"
    assert calls == [False, False, True]


def test_wrong_app_secret_is_a_typed_error_from_the_token_endpoint(tmp_path, fake):
    client = make_app(tmp_path, fake, WECHAT_APP_SECRET="wrong").extensions["wechat"].client

    with pytest.raises(WeChatError) as caught:
        client.send_text(ALICE, "hi")

    assert (caught.value.errcode, caught.value.endpoint) == (40125, "stable_token")
    assert fake.requests_to(SEND) == []


# --- retries, timeouts and broken answers ------------------------------------------------


def test_system_busy_is_retried_with_backoff_until_it_succeeds(fake, client, monkeypatch):
    client.send_text(ALICE, "warm up")
    delays = []
    monkeypatch.setattr(client_base, "time", SimpleNamespace(sleep=delays.append))  # only the client's pauses
    fake.fail("message/custom/send", -1, times=2)

    client.send_text(ALICE, "hi")

    assert len(fake.requests_to(SEND)) == 4
    assert client.backoff <= delays[0] <= 2 * client.backoff  # exponential, with jitter
    assert 2 * client.backoff <= delays[1] <= 4 * client.backoff


def test_system_busy_gives_up_after_three_attempts(fake, client):
    fake.fail("message/custom/send", -1, times=10)

    with pytest.raises(SystemBusy) as caught:
        client.send_text(ALICE, "hi")

    assert (caught.value.errcode, caught.value.errmsg) == (-1, "system error")
    assert len(fake.requests_to(SEND)) == 3


@pytest.mark.parametrize("fault", ["http 500", "dropped", "dropped mid-answer", "not JSON"])
def test_a_send_without_a_usable_answer_is_not_sent_twice(fake, client, fault):
    client.send_text(ALICE, "warm up")
    {
        "http 500": lambda: fake.http_error("message/custom/send"),
        "dropped": lambda: fake.drop("message/custom/send"),
        "dropped mid-answer": lambda: fake.drop("message/custom/send", after_headers=True),
        "not JSON": lambda: fake.garbage("message/custom/send"),
    }[fault]()

    with pytest.raises(TransportError) as caught:
        client.send_text(ALICE, "hi")

    assert caught.value.errcode is None and caught.value.endpoint == "message/custom/send"
    assert len(fake.requests_to(SEND)) == 2  # WeChat may have acted: the send is not repeated


def test_a_slow_answer_times_out_within_the_read_timeout(tmp_path, fake):
    client = make_app(tmp_path, fake, WECHAT_READ_TIMEOUT=0.5).extensions["wechat"].client
    client.send_text(ALICE, "warm up")
    fake.slow("message/custom/send", 4)

    started = time.monotonic()
    with pytest.raises(TransportError, match="no answer within 0.5s"):
        client.send_text(ALICE, "hi")

    assert time.monotonic() - started < 2.5
    assert len(fake.requests_to(SEND)) == 2


def test_idempotent_calls_are_retried_after_a_server_error(fake, client):
    fake.http_error("message/mass/get", times=2)

    assert client.mass_status(5) == "SEND_SUCCESS"
    assert len(fake.requests_to("message/mass/get")) == 3


def test_the_token_fetch_has_a_timeout_and_bounded_retries(tmp_path, fake):
    client = make_app(tmp_path, fake, WECHAT_READ_TIMEOUT=0.5).extensions["wechat"].client
    fake.slow("stable_token", 4, times=3)

    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        client.send_text(ALICE, "hi")

    assert caught.value.endpoint == "stable_token"
    assert time.monotonic() - started < 4  # three attempts of 0.5 s, not even one of 4 s
    assert len(fake.token_requests()) == 3
    assert fake.requests_to(SEND) == []


def test_a_dropped_token_fetch_is_retried(fake, client):
    fake.drop("stable_token", times=2)

    client.send_text(ALICE, "hi")

    assert len(fake.token_requests()) == 3
    assert len(fake.requests_to(SEND)) == 1


def test_a_refused_connection_is_retried_three_times(tmp_path, monkeypatch):
    with FakeWeChatAPI() as gone:
        client = make_app(tmp_path, gone).extensions["wechat"].client
    delays = []
    monkeypatch.setattr(client_base, "time", SimpleNamespace(sleep=delays.append))  # only the client's pauses

    with pytest.raises(TransportError, match="connection failed") as caught:
        client.send_text(ALICE, "hi")

    assert caught.value.endpoint == "stable_token"
    assert len(delays) == 2  # three attempts, two pauses


def test_one_session_reuses_its_connection(fake, client):
    for _ in range(5):
        client.send_text(ALICE, "hi")

    assert len(fake.requests) == 6
    assert fake.connections == 1


# --- the token never leaks ------------------------------------------------------------------


def test_neither_token_nor_secret_appears_in_logs_or_errors(tmp_path, fake, caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs every URL at DEBUG
    client = make_app(tmp_path, fake, WECHAT_TOKEN_ENDPOINT="token").extensions["wechat"].client
    errors = []
    client.send_text(ALICE, "hi")
    fake.fail("message/custom/send", 40001)
    client.send_text(ALICE, "hi")
    for fault in (fake.drop, fake.http_error):
        fault("message/custom/send")
        with pytest.raises(TransportError) as caught:
            client.send_text(ALICE, "hi")
        errors.append(caught.value)
    base_url = fake.base_url
    fake.stop()  # nothing listens now: the refused connection's message names the URL
    client.tokens.store.delete_value(CACHE_KEY)
    with pytest.raises(TransportError) as caught:
        client.send_text(ALICE, "hi")
    errors.append(caught.value)

    secrets = [*fake.issued_tokens, fake.app_secret]
    assert len(secrets) == 3
    lines = [record.getMessage() for record in caplog.records]
    assert any(base_url in line and "access_token=***" in line for line in lines)  # urllib3's URLs, masked
    assert any("secret=***" in line for line in lines)  # the classic token URL in the retry warnings
    for secret in secrets:
        assert not [line for line in lines if secret in line]
        assert not [e for e in errors if secret in str(e) or secret in e.errmsg]


# --- send jobs and their finish events ------------------------------------------------------


def test_a_mass_job_goes_from_submitted_to_its_finish_status(app, client, store):
    msg_id = client.mass_send_to_tag("text", "hello", 2)
    assert store.get_job(jobs.MASS, str(msg_id)).status == "submitted"

    reply = PushClient(app).post(
        event_push(
            "MASSSENDJOBFINISH",
            {
                "MsgID": msg_id,
                "Status": "send success",
                "TotalCount": 120,
                "FilterCount": 118,
                "SentCount": 117,
                "ErrorCount": 1,
            },
        )
    )

    assert (reply.status, reply.body) == (200, b"success")
    job = store.get_job(jobs.MASS, str(msg_id))
    assert (job.status, job.finish_status, job.target) == ("succeeded", "send success", "tag:2")
    assert job.counts == {"total": 120, "filter": 118, "sent": 117, "error": 1}


def test_a_finish_event_that_arrives_before_the_record_is_kept(app, fake, client, store):
    fake.route("message/template/send", lambda request: {"errcode": 0, "errmsg": "ok", "msgid": 3502817743897837570})
    PushClient(app).post(
        event_push("TEMPLATESENDJOBFINISH", {"MsgID": 3502817743897837570, "Status": "failed:user block"})
    )

    before = time.time()
    msgid = client.send_template(ALICE, "TPL_1", {"first": {"value": "x"}})

    assert msgid == 3502817743897837570
    job = store.get_job(jobs.TEMPLATE, str(msgid))
    assert (job.status, job.finish_status, job.target) == ("failed", "failed:user block", f"openid:{ALICE}")
    assert job.created_at >= before - 1
    assert [j.msg_id for j in store.list_jobs("failed")] == [str(msgid)]
    assert store.list_jobs("submitted") == []


def test_a_success_answer_without_its_msgid_is_a_transport_error(fake, client):
    fake.route("message/template/send", lambda request: {"errcode": 0, "errmsg": "ok"})
    with pytest.raises(TransportError, match="msgid"):
        client.send_template(ALICE, "T", {"first": {"value": "x"}})


def test_a_non_numeric_errcode_is_a_transport_error(fake, client):
    fake.route("message/custom/send", lambda request: {"errcode": "oops", "errmsg": "?"})
    with pytest.raises(TransportError, match="errcode"):
        client.send_text(ALICE, "hi")
