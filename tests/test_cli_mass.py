"""``wechat mass ...``, ``upload-video``, ``template send``'s options and ``jobs``/``job`` after a withdrawal,
against the fake WeChat API."""

from __future__ import annotations

import json
import re

import pytest

from app.testing import PushClient, event_push
from tests import conftest
from tests.api_fixtures import make_app

ALICE, BOB = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG", "oABCDq7Jd0Hn5Wc8ZtF1uLxM6sPa"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


@pytest.fixture(params=["sqlite", "redis"])
def app(request, tmp_path, fake):
    if request.param == "sqlite":
        return make_app(tmp_path, fake)
    return make_app(tmp_path, fake, WECHAT_STORE_URL=request.getfixturevalue("empty_redis"))


@pytest.fixture
def wechat(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["wechat", *args])


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


def jobs_rows(wechat, *args) -> dict[str, list[str]]:
    header, *lines = ok(wechat("jobs", *args)).splitlines()
    assert header == "MSG_ID\tKIND\tTARGET\tCREATED\tSTATUS\tCOUNTS"
    return {line.split("\t")[0]: line.split("\t") for line in lines}


# --- withdrawal ------------------------------------------------------------------


def test_a_deleted_send_keeps_its_status_word_with_the_deletion_beside_it(app, fake, wechat):
    pending = ok(wechat("mass", "send", "--tag", "2", "--text", "a")).strip()
    finished = ok(wechat("mass", "send", "--all", "--mpnews", "M1")).strip()
    partly = ok(wechat("mass", "send", "--all", "--mpnews", "M2")).strip()
    untouched = ok(wechat("mass", "send", "--all", "--text", "b")).strip()
    finish = {"MsgID": finished, "Status": "send success", "TotalCount": 3, "FilterCount": 3, "SentCount": 3}
    assert PushClient(app).post(event_push("MASSSENDJOBFINISH", {**finish, "ErrorCount": 0})).body == b"success"

    assert ok(wechat("mass", "delete", pending)) == f"deleted {pending}\n"
    assert ok(wechat("mass", "delete", finished)) == f"deleted {finished}\n"
    assert ok(wechat("mass", "delete", partly, "--article-idx", "2")) == f"deleted {partly}\n"

    rows = jobs_rows(wechat)
    assert re.fullmatch(f"submitted  deleted {ISO}", rows[pending][4])
    assert re.fullmatch(f"succeeded  send success  deleted {ISO}", rows[finished][4])
    assert rows[finished][5] == "total=3 filter=3 sent=3 error=0"
    assert re.fullmatch(f"submitted  deleted article 2 {ISO}", rows[partly][4])
    assert rows[untouched][4] == "submitted"
    assert set(jobs_rows(wechat, "--status", "submitted")) == {pending, partly, untouched}
    assert [r.json for r in fake.requests_to("message/mass/delete")] == [
        {"msg_id": int(pending)},
        {"msg_id": int(finished)},
        {"msg_id": int(partly), "article_idx": 2},
    ]


def test_deleting_a_send_that_was_never_tracked_says_so(wechat, fake):
    assert ok(wechat("mass", "delete", "1000000999")) == "deleted 1000000999 (no tracked job of it to mark)\n"
    assert ok(wechat("jobs")) == "no jobs\n"


def test_a_refused_delete_marks_nothing(wechat, fake):
    msg_id = ok(wechat("mass", "send", "--all", "--text", "a")).strip()
    fake.fail("message/mass/delete", 45009)

    assert wechat("mass", "delete", msg_id).exit_code == 1
    assert jobs_rows(wechat)[msg_id][4] == "submitted"


def test_job_shows_every_field_of_the_finish_event(app, wechat):
    msg_id = ok(wechat("mass", "send", "--all", "--mpnews", "M1")).strip()
    xml = (conftest.FIXTURES / "event_masssendjobfinish.xml").read_bytes().replace(b"2247498513", msg_id.encode())
    assert PushClient(app).post(xml).body == b"success"

    output = ok(wechat("job", msg_id))

    assert f"msg_id:      {msg_id}\n" in output
    assert "status:      succeeded  send success\n" in output
    assert "counts:      total=15382 filter=15104 sent=15097 error=7\n" in output
    assert "copyright_check_state: 2\n" in output
    results = json.loads(re.search(r"^copyright_check_results: (.*)$", output, re.M).group(1))
    assert [item["original_article_url"] for item in results] == [
        "https://mp.weixin.qq.com/s/Hk3vN8qTz1LpW6cRb4YmJw",
        "https://mp.weixin.qq.com/s/Zq7tB2mXc9VnK5pLw3HsRa",
    ]
    assert "https://mp.weixin.qq.com/s/Rb8wK3nYq5TzM1cVx7LpHg" in output  # the article URL result
    assert "msgtype: mpnews\n" in output and "content: M1\n" in output
    assert wechat("job", "42").exit_code == 1 and "no tracked job 42" in wechat("job", "42").output


# --- sends, preview, status, speed ----------------------------------------------------


def test_a_mass_video_with_its_title_and_description(wechat, fake, tmp_path):
    media_id = ok(wechat("upload-video", "RAW_1", "--title", "发布会", "--description", "回放")).strip()
    openids = tmp_path / "o.txt"
    openids.write_text(f"{ALICE}\n{BOB}\n", encoding="utf-8")

    ok(wechat("mass", "send", "--tag", "3", "--mpvideo", media_id))
    ok(wechat("mass", "send", "--openids", str(openids), "--mpvideo", media_id, "--title", "发布会"))

    assert only(fake.requests_to("media/uploadvideo")).json == {
        "media_id": "RAW_1",
        "title": "发布会",
        "description": "回放",
    }
    assert only(fake.requests_to("message/mass/sendall")).json["mpvideo"] == {"media_id": media_id}
    assert only(fake.requests_to("message/mass/send")).json["mpvideo"] == {"media_id": media_id, "title": "发布会"}


def test_a_mass_card_and_the_old_group_filter(wechat, fake):
    ok(wechat("mass", "send", "--group", "7", "--wxcard", "CARD_1"))

    sent = only(fake.requests_to("message/mass/sendall")).json
    assert (sent["filter"], sent["msgtype"], sent["wxcard"]) == (
        {"is_to_all": False, "tag_id": 7},
        "wxcard",
        {"card_id": "CARD_1"},
    )


def test_preview_to_an_openid_or_a_wechat_id_records_no_job(wechat, fake):
    output = ok(wechat("mass", "preview", "--openid", ALICE, "--text", "预览"))
    assert re.fullmatch(rf"previewed text to {ALICE} \(msg_id \d+\)\n", output)
    ok(wechat("mass", "preview", "--wxname", "my_wechat_id", "--mpnews", "M1"))

    first, second = fake.requests_to("message/mass/preview")
    assert first.json == {"touser": ALICE, "text": {"content": "预览"}, "msgtype": "text"}
    assert second.json == {"towxname": "my_wechat_id", "mpnews": {"media_id": "M1"}, "msgtype": "mpnews"}
    assert ok(wechat("jobs")) == "no jobs\n"
    result = wechat("mass", "preview", "--text", "x")
    assert result.exit_code == 2 and "exactly one of --openid OPENID, --wxname NAME" in result.output


def test_status_and_speed(wechat, fake):
    assert ok(wechat("mass", "status", "1000000001")) == "SEND_SUCCESS\n"
    assert only(fake.requests_to("message/mass/get")).json == {"msg_id": 1000000001}

    assert ok(wechat("mass", "speed")) == "speed 0 (800,000 followers a minute)\n"
    assert ok(wechat("mass", "speed", "--set", "3")) == "speed 3 (300,000 followers a minute)\n"
    assert only(fake.requests_to("message/mass/speed/set")).json == {"speed": 3}
    assert wechat("mass", "speed", "--set", "5").exit_code == 2


def test_a_failed_status_shows_the_errcode(wechat, fake):
    fake.fail("message/mass/get", 45009)
    result = wechat("mass", "status", "1000000001")
    assert result.exit_code == 1 and "errcode 45009" in result.output


# --- template ------------------------------------------------------------------------


def test_template_send_with_a_mini_program_and_top_colour(wechat, fake, tmp_path):
    data = tmp_path / "d.json"
    data.write_text('{"first": {"value": "v"}}', encoding="utf-8")

    args = ["template", "send", ALICE, "TPL_1", str(data), "--miniprogram", "wxmini", "--pagepath", "pages/o"]
    ok(wechat(*args, "--topcolor", "#FF0000", "--client-msg-id", "order-42"))
    ok(wechat("template", "send", ALICE, "TPL_1", str(data), "--miniprogram", "wxmini"))

    first, second = fake.requests_to("message/template/send")
    assert first.json["miniprogram"] == {"appid": "wxmini", "pagepath": "pages/o"}
    assert (first.json["topcolor"], first.json["client_msg_id"]) == ("#FF0000", "order-42")
    assert second.json["miniprogram"] == {"appid": "wxmini"} and "topcolor" not in second.json
    result = wechat("template", "send", ALICE, "TPL_1", str(data), "--pagepath", "pages/o")
    assert result.exit_code == 2 and "--pagepath goes with --miniprogram APPID" in result.output
    assert len(fake.requests_to("message/template/send")) == 2
