"""``flask --app wsgi wechat pushes ...``: the journal of real pushes, listed, shown and run again."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from app.messages import parse
from app.signals import message_received
from app.store.base import ANSWERED, HANDLER_FAILED, RUNNING
from app.testing import PushClient, text_push
from tests import api_fixtures, conftest

FOLLOWER = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG"
SEND = "message/custom/send"
HEADER = ["KEY", "KIND", "STATUS", "RECEIVED", "DELIVERIES", "ATTEMPTS", "LATE"]


@pytest.fixture
def app(tmp_path):
    return conftest.make_app(tmp_path, WECHAT_PLUGINS="app.plugins.echo")


def cli(app):
    """Runs ``wechat pushes ARGS...`` as ``flask --app wsgi wechat pushes ARGS...`` would."""
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["wechat", "pushes", *args])


def post(app, content: str) -> str:
    """Post a text push from FOLLOWER as WeChat would; its journal key once its run is recorded."""
    xml = text_push(content, from_user=FOLLOWER)
    assert PushClient(app).post(xml).status == 200
    key = parse(xml).dedup_key
    store = app.extensions["wechat"].store
    deadline = time.monotonic() + 5
    while store.get_push(key).status == RUNNING:  # the run records its outcome just after it answers
        assert time.monotonic() < deadline, f"{key} is still running"
        time.sleep(0.01)
    return key


def succeeded(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def failed(result) -> list[str]:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    return result.output.splitlines()


# --- list ---------------------------------------------------------------------------


def test_list_shows_a_table_newest_first_and_filters_by_status(app):
    first, second, third = post(app, "one"), post(app, "two"), post(app, "three")
    store = app.extensions["wechat"].store
    store.set_push_status(second, HANDLER_FAILED)
    late = parse(text_push("slow", from_user=FOLLOWER))
    store.claim_push(late.dedup_key, "text", b"<xml/>", 60, "w1", 60.0)
    store.mark_late(late.dedup_key, "hint")

    lines = succeeded(cli(app)("list"))

    assert lines[0].split() == HEADER
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [late.dedup_key, third, second, first]
    assert rows[0][1:3] == ["text", RUNNING] and rows[0][-1] == "hint"
    assert rows[1][1:] == ["text", ANSWERED, rows[1][3], "1", "1"], "no late mark: the column is empty"
    assert rows[2][2] == HANDLER_FAILED
    received = datetime.fromisoformat(rows[1][3])
    assert received.tzinfo is not None and abs(received.timestamp() - time.time()) < 60

    failed_only = succeeded(cli(app)("list", "--status", "failed"))
    assert failed_only[0].split() == HEADER
    assert [line.split()[0] for line in failed_only[1:]] == [second]
    assert [line.split()[0] for line in succeeded(cli(app)("list", "--limit", "2"))[1:]] == [late.dedup_key, third]
    assert succeeded(cli(app)("list", "--status", "abandoned")) == ["no pushes with status abandoned"]
    assert "Invalid value" in "\n".join(failed(cli(app)("list", "--status", "bogus")))


# --- show ---------------------------------------------------------------------------


def test_show_prints_every_field_the_push_and_its_reply(app):
    key = post(app, "你好 show")

    lines = succeeded(cli(app)("show", key))

    output = "\n".join(lines)
    assert lines[0].split() == ["key:", key]
    for field in ("kind:", "status:", "received:", "deliveries:", "attempts:", "lease until:", "late:"):
        assert any(line.startswith(field) for line in lines), field
    assert "status:      answered" in lines
    body = output.split("\nbody:\n", 1)[1].split("\nreply:\n", 1)[0]
    assert f"<FromUserName><![CDATA[{FOLLOWER}]]></FromUserName>" in body
    assert "<Content><![CDATA[你好 show]]></Content>" in body
    reply = output.split("\nreply:\n", 1)[1]
    assert reply.startswith("<xml>") and "<Content><![CDATA[你好 show]]></Content>" in reply
    assert f"<ToUserName><![CDATA[{FOLLOWER}]]></ToUserName>" in reply


@pytest.mark.parametrize("command", ["show", "rerun"])
def test_a_missing_key_exits_non_zero_with_one_line(app, command):
    lines = failed(cli(app)(command, "msg:404"))
    assert len(lines) == 1 and "msg:404" in lines[0]


# --- rerun --------------------------------------------------------------------------


def test_rerun_runs_the_handlers_again_and_prints_the_reply(app):
    key = post(app, "again")
    seen = []

    with message_received.connected_to(lambda sender, message, **extra: seen.append(message.content)):
        first = succeeded(cli(app)("rerun", key))
        second = succeeded(cli(app)("rerun", key))

    assert seen == ["again", "again"], "every re-run runs the handlers: none is deduplicated away"
    assert first == second
    assert first[0].startswith("<xml>") and "<Content><![CDATA[again]]></Content>" in "\n".join(first)
    record = app.extensions["wechat"].store.get_push(key)
    assert (record.status, record.attempts, record.deliveries) == (ANSWERED, 1, 1), "the journal is left as it was"


def test_rerun_without_a_reply_prints_success(app):
    key = post(app, "quiet")
    app.extensions["wechat"].store.db.execute(
        "UPDATE pushes SET body = ? WHERE key = ?", (text_push("", from_user=FOLLOWER), key)
    )  # an empty text: echo has nothing to say

    assert succeeded(cli(app)("rerun", key)) == ["success"]


def test_a_failing_handler_on_a_rerun_exits_non_zero(app):
    key = post(app, "boom")

    def explode(sender, **extra):
        raise RuntimeError("boom")

    with message_received.connected_to(explode):
        lines = failed(cli(app)("rerun", key))

    assert "<Content><![CDATA[boom]]></Content>" in "\n".join(lines), "the other handlers' reply still shows"
    assert lines[-1] == f"Error: a handler failed on the re-run of {key} (see the log)"


@pytest.mark.parametrize(
    ("body", "message"), [(None, "has no body in the journal"), (b"<xml><a>1</a></xml>", "is not a push")]
)
def test_a_push_without_a_usable_body_is_not_rerun(app, body, message):
    key = post(app, "lost")
    app.extensions["wechat"].store.db.execute("UPDATE pushes SET body = ? WHERE key = ?", (body, key))
    seen = []

    with message_received.connected_to(lambda sender, **extra: seen.append(sender)):
        lines = failed(cli(app)("rerun", key))

    assert len(lines) == 1 and key in lines[0] and message in lines[0]
    assert seen == []


@pytest.fixture
def api_app(tmp_path, fake):
    return api_fixtures.make_app(tmp_path, fake, WECHAT_PLUGINS="app.plugins.echo")


def test_rerun_send_delivers_the_reply_through_the_customer_service_api(api_app, fake):
    key = post(api_app, "送达")
    assert fake.requests_to(SEND) == [], "answering the push itself sends nothing"

    lines = succeeded(cli(api_app)("rerun", key, "--send"))

    [sent] = fake.requests_to(SEND)
    assert sent.json == {"touser": FOLLOWER, "msgtype": "text", "text": {"content": "送达"}}
    assert "<Content><![CDATA[送达]]></Content>" in "\n".join(lines)
    assert lines[-1] == f"sent the text reply to {FOLLOWER}"


def test_rerun_without_send_sends_nothing(api_app, fake):
    key = post(api_app, "kept")

    succeeded(cli(api_app)("rerun", key))

    assert fake.requests_to(SEND) == []


def test_a_refused_send_exits_non_zero_with_errcode_and_errmsg(api_app, fake):
    key = post(api_app, "too late")
    fake.fail(SEND, 45015)

    lines = failed(cli(api_app)("rerun", key, "--send"))

    assert "errcode 45015" in lines[-1]
    assert "response out of time limit or subscription is canceled" in lines[-1]
