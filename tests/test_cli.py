"""The ``flask --app wsgi wechat ...`` commands: what each sends to the fake WeChat API and what it prints."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from app.testing import PushClient, event_push
from tests.api_fixtures import make_app

ALICE, BOB, CAROL = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG", "oABCDq7Jd0Hn5Wc8ZtF1uLxM6sPa", "oABCDf3Gh8Jk1Lm5Np9Qr2St6Uv0"
SEND = "message/custom/send"


@pytest.fixture
def app(tmp_path, fake):
    return make_app(tmp_path, fake)


@pytest.fixture
def wechat(app):
    """Runs ``wechat ARGS...`` as ``flask --app wsgi wechat ARGS...`` would."""
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["wechat", *args])


@pytest.fixture
def write(tmp_path):
    def write(name: str, content: object) -> str:
        path = tmp_path / name
        path.write_text(
            content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8"
        )
        return str(path)

    return write


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def failed(result) -> str:
    assert result.exit_code != 0, result.output
    return result.output


# --- send ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["text", ALICE, "你好😀"], {"msgtype": "text", "text": {"content": "你好😀"}}),
        (["image", ALICE, "IMG_1"], {"msgtype": "image", "image": {"media_id": "IMG_1"}}),
        (["voice", ALICE, "VOICE_1"], {"msgtype": "voice", "voice": {"media_id": "VOICE_1"}}),
        (
            ["video", ALICE, "VID_1", "THUMB_1", "--title", "片名", "--description", "简介"],
            {
                "msgtype": "video",
                "video": {"media_id": "VID_1", "thumb_media_id": "THUMB_1", "title": "片名", "description": "简介"},
            },
        ),
        (
            ["music", ALICE, "https://m.example/a.mp3", "https://m.example/hq.mp3", "THUMB_2", "--title", "歌"],
            {
                "msgtype": "music",
                "music": {
                    "title": "歌",
                    "musicurl": "https://m.example/a.mp3",
                    "hqmusicurl": "https://m.example/hq.mp3",
                    "thumb_media_id": "THUMB_2",
                },
            },
        ),
    ],
    ids=["text", "image", "voice", "video", "music"],
)
def test_send(fake, wechat, args, expected):
    output = succeeded(wechat("send", *args))

    sent = only(fake.requests_to(SEND))
    assert sent.query == {"access_token": fake.issued_tokens[0]}
    assert sent.json == {"touser": ALICE, **expected}
    assert f"sent {args[0]} to {ALICE}" in output


def test_send_news_from_a_file(fake, wechat, write):
    article = {
        "title": "新品上市",
        "description": "点击查看",
        "url": "https://e.example/n/1",
        "picurl": "https://e.example/n/1.jpg",
    }

    succeeded(wechat("send", "news", ALICE, write("articles.json", [article])))

    sent = only(fake.requests_to(SEND))
    assert sent.json == {"touser": ALICE, "msgtype": "news", "news": {"articles": [article]}}
    assert "新品上市".encode() in sent.body


def test_send_news_with_two_articles_is_refused_before_any_call(fake, wechat, write):
    output = failed(wechat("send", "news", ALICE, write("articles.json", [{"title": "a"}, {"title": "b"}])))

    assert "takes 1 article, got 2" in output
    assert fake.requests_to(SEND) == []


def test_a_wechat_error_exits_non_zero_with_errcode_and_errmsg(fake, wechat):
    fake.fail(SEND, 45015)

    output = failed(wechat("send", "text", ALICE, "hi"))

    assert "errcode 45015" in output
    assert "response out of time limit or subscription is canceled" in output
    assert "Traceback" not in output


def test_no_answer_exits_non_zero_naming_the_call(tmp_path, fake):
    app = make_app(tmp_path, fake, WECHAT_READ_TIMEOUT=0.5)
    fake.slow(SEND, 4)

    output = failed(app.test_cli_runner().invoke(args=["wechat", "send", "text", ALICE, "hi"]))

    assert "message/custom/send failed: no answer within 0.5s" in output


# --- upload-news ------------------------------------------------------------------------


def test_upload_news_prints_the_media_id(fake, wechat, write):
    articles = [
        {"thumb_media_id": "THUMB_1", "title": "第一篇", "content": "<p>正文</p>"},
        {"thumb_media_id": "THUMB_2", "title": "第二篇", "content": "<p>更多</p>", "author": "编辑"},
    ]

    output = succeeded(wechat("upload-news", write("articles.json", articles)))

    sent = only(fake.requests_to("media/uploadnews"))
    assert sent.json == {"articles": articles}
    assert output.strip().startswith("fake-news-") and output.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"title": "x",}]', "articles.json is not valid JSON"),
        ({"title": "not an array"}, "articles.json must hold a JSON array of article objects"),
        (["just a string"], "article 0 is not an object"),
        (
            [{"thumb_media_id": "T", "title": "t", "content": "c"}, {"thumb_media_id": "T", "title": "t"}],
            "article 2: field 'content' is required",
        ),
        ([{"thumb_media_id": "T", "title": "t", "content": "c", "titel": "typo"}], "unknown field 'titel'"),
    ],
    ids=["syntax", "not-array", "not-object", "missing-field", "unknown-field"],
)
def test_upload_news_names_what_is_wrong_with_the_file(fake, wechat, write, content, message):
    output = failed(wechat("upload-news", write("articles.json", content)))

    assert message in output
    assert fake.requests == []


def test_upload_news_of_a_missing_file(fake, wechat, tmp_path):
    output = failed(wechat("upload-news", str(tmp_path / "nope.json")))

    assert "cannot read" in output and "nope.json" in output
    assert fake.requests == []


# --- mass ---------------------------------------------------------------------------------


def test_mass_send_by_tag_prints_the_msg_id(fake, wechat):
    output = succeeded(wechat("mass", "send", "--tag", "2", "--text", "大家好"))

    sent = only(fake.requests_to("message/mass/sendall"))
    assert sent.json["filter"] == {"is_to_all": False, "tag_id": 2}
    assert (sent.json["msgtype"], sent.json["text"]) == ("text", {"content": "大家好"})
    assert output == "1000000001\n"


@pytest.mark.parametrize(
    ("option", "content"),
    [
        ("--mpnews", {"mpnews": {"media_id": "M1"}}),
        ("--image", {"image": {"media_id": "M1"}}),
        ("--voice", {"voice": {"media_id": "M1"}}),
        ("--mpvideo", {"mpvideo": {"media_id": "M1"}}),
    ],
)
def test_mass_send_to_all(fake, wechat, option, content):
    succeeded(wechat("mass", "send", "--all", option, "M1"))

    sent = only(fake.requests_to("message/mass/sendall"))
    assert sent.json["filter"] == {"is_to_all": True}
    assert {key: sent.json[key] for key in content} == content
    assert sent.json["msgtype"] == option[2:]


def test_mass_send_to_an_openids_file_skips_blank_lines_and_repeats(fake, wechat, write):
    path = write("openids.txt", f"{ALICE}\n\n{BOB}\n  \n{ALICE}\n{CAROL}\r\n{BOB}\n")

    output = succeeded(wechat("mass", "send", "--openids", path, "--text", "hi"))

    sent = only(fake.requests_to("message/mass/send"))
    assert sent.json["touser"] == [ALICE, BOB, CAROL]
    assert output.split() == ["1000000001"]


def test_mass_send_to_a_long_openids_file_prints_one_msg_id_per_call(fake, wechat, write):
    path = write("openids.txt", "\n".join(f"o{n:027d}" for n in range(10_001)))

    output = succeeded(wechat("mass", "send", "--openids", path, "--mpnews", "M1"))

    calls = fake.requests_to("message/mass/send")
    assert [len(call.json["touser"]) for call in calls] == [5001, 5000]
    assert output.split() == ["1000000001", "1000000002"]


def test_mass_send_to_one_openid_is_refused_before_any_call(fake, wechat, write):
    output = failed(wechat("mass", "send", "--openids", write("openids.txt", f"{ALICE}\n{ALICE}\n\n"), "--text", "hi"))

    assert "at least 2 distinct openids, got 1" in output
    assert fake.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "hi"], "exactly one of --tag ID, --all, --openids FILE"),
        (["--tag", "2", "--all", "--text", "hi"], "exactly one of --tag ID, --all, --openids FILE"),
        (["--tag", "2"], "exactly one of --text, --mpnews"),
        (["--tag", "2", "--text", "hi", "--image", "M1"], "exactly one of --text, --mpnews"),
        (["--tag", "1", "--group", "1", "--text", "x"], "exactly one of --tag ID, --all, --openids FILE"),
        (["--all", "--image", "M", "--title", "t"], "--title and --description go only with --mpvideo"),
    ],
)
def test_mass_send_needs_one_target_and_one_content(fake, wechat, args, message):
    result = wechat("mass", "send", *args)

    assert result.exit_code == 2 and message in result.output
    assert fake.requests == []


def test_mass_send_failure_shows_errcode(fake, wechat):
    fake.fail("message/mass/sendall", 45009)

    output = failed(wechat("mass", "send", "--all", "--text", "hi"))

    assert "errcode 45009" in output and "reach max api daily quota limit" in output


def test_mass_delete(fake, wechat):
    succeeded(wechat("mass", "delete", "1000000123"))
    succeeded(wechat("mass", "delete", "1000000124", "--article-idx", "2"))

    assert [r.json for r in fake.requests_to("message/mass/delete")] == [
        {"msg_id": 1000000123},
        {"msg_id": 1000000124, "article_idx": 2},
    ]


def test_mass_delete_failure(fake, wechat):
    fake.fail("message/mass/delete", 40001)  # one refresh and retry, then the failure is reported
    fake.fail("message/mass/delete", 40001)

    output = failed(wechat("mass", "delete", "1000000123"))

    assert "errcode 40001" in output
    assert len(fake.requests_to("message/mass/delete")) == 2


# --- template -----------------------------------------------------------------------------


def test_template_send_prints_the_msgid(fake, wechat, write):
    data = {
        "first": {"value": "您的订单已发货", "color": "#173177"},
        "keyword1": {"value": "42"},
        "remark": {"value": "谢谢😀"},
    }

    output = succeeded(
        wechat("template", "send", ALICE, "TPL_1", write("data.json", data), "--url", "https://e.example/o/42")
    )

    sent = only(fake.requests_to("message/template/send"))
    assert sent.json["client_msg_id"]
    assert {key: sent.json[key] for key in ("touser", "template_id", "data", "url")} == {
        "touser": ALICE,
        "template_id": "TPL_1",
        "data": data,
        "url": "https://e.example/o/42",
    }
    assert "谢谢😀".encode() in sent.body
    assert output == "1000000001\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"first": {"value": "x"}', "data.json is not valid JSON"),
        ([{"value": "x"}], "data.json must hold the template data object"),
        ({"first": {"value": "x"}, "keyword1": {"color": "#000"}}, "'keyword1' needs a \"value\""),
        ({"first": {"value": "x", "colour": "#000"}}, "unknown field 'colour'"),
    ],
    ids=["syntax", "array", "no-value", "unknown-field"],
)
def test_template_send_names_what_is_wrong_with_the_data_file(fake, wechat, write, content, message):
    output = failed(wechat("template", "send", ALICE, "TPL_1", write("data.json", content)))

    assert message in output
    assert fake.requests == []


# --- jobs ---------------------------------------------------------------------------------


def test_jobs_with_none(wechat):
    assert succeeded(wechat("jobs")).strip() == "no jobs"
    assert succeeded(wechat("jobs", "--status", "failed")).strip() == "no jobs with status failed"


def test_jobs_follow_each_send_to_its_finish_push(app, fake, wechat, write):
    pushes = PushClient(app)
    mass_ok = int(succeeded(wechat("mass", "send", "--tag", "2", "--text", "a")))
    mass_err = int(succeeded(wechat("mass", "send", "--all", "--mpnews", "M1")))
    template_ok = int(succeeded(wechat("template", "send", ALICE, "TPL_1", write("d.json", {"k": {"value": "v"}}))))
    template_blocked = int(succeeded(wechat("template", "send", BOB, "TPL_1", write("d.json", {"k": {"value": "v"}}))))
    pending = int(succeeded(wechat("mass", "send", "--openids", write("o.txt", f"{ALICE}\n{BOB}\n"), "--text", "b")))
    header, *lines = succeeded(wechat("jobs")).splitlines()
    assert header.split("\t") == ["MSG_ID", "KIND", "TARGET", "CREATED", "STATUS", "COUNTS"]
    jobs_before = {line.split("\t")[0]: line.split("\t") for line in lines}
    assert {fields[4] for fields in jobs_before.values()} == {"submitted"}

    for fields in (
        {
            "MsgID": mass_ok,
            "Status": "send success",
            "TotalCount": 120,
            "FilterCount": 118,
            "SentCount": 117,
            "ErrorCount": 1,
        },
        {"MsgID": mass_err, "Status": "err(20013)", "TotalCount": 5, "FilterCount": 5, "SentCount": 0, "ErrorCount": 5},
    ):
        assert pushes.post(event_push("MASSSENDJOBFINISH", fields)).body == b"success"
    pushes.post(event_push("TEMPLATESENDJOBFINISH", {"MsgID": template_ok, "Status": "success"}))
    pushes.post(event_push("TEMPLATESENDJOBFINISH", {"MsgID": template_blocked, "Status": "failed:user block"}))

    rows = {
        int(line.split("\t")[0]): line.split("\t") for line in succeeded(wechat("jobs", "--no-header")).splitlines()
    }
    assert {msg_id: row[1:3] + row[4:] for msg_id, row in rows.items()} == {
        mass_ok: ["mass", "tag:2", "succeeded  send success", "total=120 filter=118 sent=117 error=1"],
        mass_err: ["mass", "all", "failed  err(20013)", "total=5 filter=5 sent=0 error=5"],
        template_ok: ["template", f"openid:{ALICE}", "succeeded  success"],
        template_blocked: ["template", f"openid:{BOB}", "failed  failed:user block"],
        pending: ["mass", "openids:2", "submitted"],
    }
    for row in rows.values():
        created = datetime.fromisoformat(row[3])
        assert created.tzinfo is not None and row[3] == jobs_before[row[0]][3]

    def ids(status: str) -> set[int]:
        return {int(line.split("\t")[0]) for line in succeeded(wechat("jobs", "--status", status)).splitlines()[1:]}

    assert ids("failed") == {mass_err, template_blocked}
    assert ids("succeeded") == {mass_ok, template_ok}
    assert ids("submitted") == {pending}
    assert wechat("jobs", "--status", "done").exit_code == 2


# --- token --------------------------------------------------------------------------------


def test_token_shows_its_state_but_never_the_token(fake, wechat):
    assert "none cached" in succeeded(wechat("token"))
    assert fake.requests == []  # looking does not fetch

    succeeded(wechat("send", "text", ALICE, "hi"))
    output = succeeded(wechat("token"))
    assert "fresh" in output and "stable_token" in output
    assert fake.issued_tokens[0] not in output

    output = succeeded(wechat("token", "--refresh"))
    refresh = fake.token_requests()[-1]
    assert refresh.json["force_refresh"] is False  # asks WeChat, without revoking other servers' token
    assert len(fake.token_requests()) == 2
    assert "fresh" in output

    output = succeeded(wechat("token", "--refresh", "--force"))
    assert fake.token_requests()[-1].json["force_refresh"] is True
    assert len(fake.issued_tokens) == 2
    assert not [token for token in fake.issued_tokens if token in output]


def test_token_refresh_failure_shows_errcode_but_not_the_secret(tmp_path, fake):
    app = make_app(tmp_path, fake, WECHAT_APP_SECRET="not-the-secret-4f2a")

    output = failed(app.test_cli_runner().invoke(args=["wechat", "token", "--refresh"]))

    assert "errcode 40125" in output and "invalid appsecret" in output
    assert "not-the-secret-4f2a" not in output


def test_a_long_mass_send_that_fails_part_way_can_be_finished_without_sending_twice(fake, wechat, write):
    path = write("openids.txt", "\n".join(f"o{n:027d}" for n in range(25_000)))
    send_normally = fake._routes["/cgi-bin/message/mass/send"]
    calls = []

    def second_call_over_quota(request):
        calls.append(request)
        if len(calls) == 2:
            return {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
        return send_normally(request)

    fake.route("message/mass/send", second_call_over_quota)
    output = failed(wechat("mass", "send", "--openids", path, "--text", "周末愉快"))
    assert "1000000001" in output.split()  # the first call's msg_id is shown
    assert "errcode 45009" in output
    clientmsgid = output.split("--clientmsgid ")[1].split()[0]

    fake.route("message/mass/send", send_normally)
    output = succeeded(wechat("mass", "send", "--openids", path, "--text", "周末愉快", "--clientmsgid", clientmsgid))
    # WeChat names the first call's send again instead of repeating it; the other two go out now.
    assert output.split() == ["1000000001", "1000000002", "1000000003"]
    sent = [r.json["clientmsgid"] for r in fake.requests_to("message/mass/send")]
    assert sent == [f"{clientmsgid}-1", f"{clientmsgid}-2", f"{clientmsgid}-1", f"{clientmsgid}-2", f"{clientmsgid}-3"]


def test_an_openids_file_saved_with_a_bom_sends_each_openid_once(fake, wechat, tmp_path):
    path = tmp_path / "openids.txt"
    path.write_bytes("\ufeff".encode() + f"{ALICE}\n{BOB}\n{ALICE}\n".encode())
    succeeded(wechat("mass", "send", "--openids", str(path), "--text", "hi"))
    assert only(fake.requests_to("message/mass/send")).json["touser"] == [ALICE, BOB]


def test_an_articles_file_saved_with_a_bom_is_read(fake, wechat, tmp_path):
    path = tmp_path / "articles.json"
    article = {"title": "标题", "description": "d", "url": "https://example.com", "picurl": "https://example.com/p"}
    path.write_bytes("\ufeff".encode() + json.dumps([article], ensure_ascii=False).encode())
    succeeded(wechat("send", "news", ALICE, str(path)))
    assert only(fake.requests_to(SEND)).json["news"]["articles"][0]["title"] == "标题"
