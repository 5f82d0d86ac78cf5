"""The log: one line per push, a JSON format for log shippers, openids masked on request, the access log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app import SettingsError
from app.testing import PushClient, event_push, signed_query, text_push
from tests.conftest import FIXTURES, TOKEN, make_app
from tests.servers import ROOT, serve

OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz0"  # 28 characters, as WeChat's
OTHER = "o9Z8y7X6w5V4u3T2s1R0qPoNmLkJ"


def push_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "app.push"]


def test_one_line_per_push_with_its_type_id_outcome_and_milliseconds(app, caplog):
    client = PushClient(app)
    first = text_push("hello", from_user=OPENID)
    msg_id = first.split(b"<MsgId>")[1].split(b"</MsgId>")[0].decode()
    with caplog.at_level(logging.INFO):
        client.post(first)
        client.post(first)  # WeChat's repeat: a line of its own
        client.post(event_push("CLICK", {"EventKey": "menu"}, from_user=OPENID, create_time=1700000000))
    lines = push_lines(caplog)
    assert len(lines) == 3
    for line, (kind, key, outcome) in zip(
        lines,
        [
            ("text", f"msg:{msg_id}", "reply"),
            ("text", f"msg:{msg_id}", "reply"),
            ("event:click", f"event:{OPENID}:1700000000:click:menu:", "success"),
        ],
        strict=True,
    ):
        words = line.split(" ")
        assert words[:4] == ["push", kind, key, outcome]
        assert words[4].endswith("ms") and 0 <= float(words[4][:-2]) < 4500


def test_a_refused_request_is_not_a_push_line(app, caplog):
    with caplog.at_level(logging.INFO):
        app.test_client().post("/wechat", data=text_push("unsigned"))
    assert push_lines(caplog) == []


@pytest.mark.parametrize(("variable", "value"), [("WECHAT_LOG_FORMAT", "yaml"), ("WECHAT_LOG_MASK_OPENIDS", "perhaps")])
def test_a_bad_log_setting_stops_start_up_naming_it(tmp_path, variable, value):
    with pytest.raises(SettingsError, match=variable):
        make_app(tmp_path, **{variable: value})


def replay_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "GUNICORN_"))}
    env.update(
        WECHAT_TOKEN=TOKEN,
        WECHAT_PLUGINS="app.plugins.echo",
        WECHAT_STORE_URL=f"sqlite:///{tmp_path}/cli.sqlite3",
        **extra,
    )
    return env


def test_the_command_line_logs_json_when_asked(tmp_path):
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(
        [str(flask), "--app", "wsgi", "wechat", "replay", str(FIXTURES / "text.xml")],
        cwd=ROOT,
        env=replay_env(tmp_path, WECHAT_LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    pushes = [entry for entry in entries if entry["logger"] == "app.push"]
    assert len(pushes) == 1
    assert pushes[0]["type"] == "text" and pushes[0]["outcome"] == "reply" and pushes[0]["id"].startswith("msg:")
    assert isinstance(pushes[0]["ms"], float)
    assert {"time", "level", "message"} <= set(pushes[0])


def test_under_gunicorn_json_lines_masked_openids_and_an_access_log_without_the_query(tmp_path):
    access_log = tmp_path / "access.log"
    settings = dict(
        WECHAT_LOG_FORMAT="json",
        WECHAT_LOG_MASK_OPENIDS="true",
        GUNICORN_ACCESSLOG=str(access_log),
    )
    with serve(tmp_path, **settings) as served:
        url = f"{served.base_url}/wechat"
        for openid, body in [
            (OPENID, text_push("hello", from_user=OPENID)),
            (OPENID, event_push("CLICK", {"EventKey": "menu"}, from_user=OPENID)),
            (OTHER, event_push("CLICK", {"EventKey": "menu"}, from_user=OTHER)),
        ]:
            query = {**signed_query(TOKEN), "openid": openid}  # WeChat adds the follower's openid to the query
            assert requests.post(url, params=query, data=body, timeout=10).status_code == 200
        process = served.process
    stderr = process.stderr.read().decode()
    access = access_log.read_text()

    assert OPENID not in stderr + access and OTHER not in stderr + access
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line, gunicorn's too
    assert any(entry["logger"] == "gunicorn.error" for entry in entries)
    pushes = [entry for entry in entries if entry["logger"] == "app.push"]
    assert [(entry["type"], entry["outcome"]) for entry in pushes] == [
        ("text", "reply"),
        ("event:click", "success"),
        ("event:click", "success"),
    ]
    first, second = (entry["id"].split(":")[1] for entry in pushes[1:])
    assert first.startswith("o~") and second.startswith("o~") and first != second  # followers still told apart

    lines = [json.loads(line) for line in access.splitlines() if line.strip()]
    posts = [line for line in lines if line["method"] == "POST"]
    assert len(posts) == 3
    assert all(line["path"] == "/wechat" and line["status"] == 200 for line in posts)
    assert "signature" not in access and "nonce" not in access


def test_under_gunicorn_the_text_format_is_the_default(tmp_path):
    access_log = tmp_path / "access.log"
    with serve(tmp_path, GUNICORN_ACCESSLOG=str(access_log)) as served:
        query = {**signed_query(TOKEN), "openid": OPENID}
        body = text_push("hello", from_user=OPENID)
        assert requests.post(f"{served.base_url}/wechat", params=query, data=body, timeout=10).status_code == 200
        process = served.process
    stderr = process.stderr.read().decode()
    pushes = [line for line in stderr.splitlines() if " app.push: push text msg:" in line]
    assert len(pushes) == 1 and " reply " in pushes[0] and pushes[0].endswith("ms")
    access = access_log.read_text()
    assert '"POST /wechat HTTP/1.1" 200 ' in access
    assert OPENID not in access and "signature" not in access


def test_a_line_shows_the_time_it_was_logged_though_each_second_is_formatted_once():
    """The text format writes each line's time as logging's own formatter does, second after second
    (the second's text is cached); the JSON format writes it in UTC."""
    from app.logs import JsonFormatter, TextFormatter

    text, reference, as_json = (
        TextFormatter(),
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
        JsonFormatter(),
    )
    start = 1_764_540_000.0  # whole seconds, then steps of 0.3 s across them and back
    for created in [start + step * 0.3 for step in range(12)] + [start + 0.999, start - 3600.5, start + 86_400.25]:
        record = logging.LogRecord("app.push", logging.INFO, __file__, 1, "push %s", ("text",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert text.format(record) == reference.format(record)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(record.msecs):03d}Z"
        assert json.loads(as_json.format(record))["time"] == expected


def test_the_push_line_can_be_turned_off_while_metrics_still_count_the_push(app, caplog):
    """The README's way to go without a line per push: the app.push logger raised above INFO."""
    from tests.test_metrics import sample, scrape

    push_logger = logging.getLogger("app.push")
    level = push_logger.level
    push_logger.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.INFO):
            assert PushClient(app).post(text_push("quiet", from_user=OPENID)).status == 200
    finally:
        push_logger.setLevel(level)
    assert push_lines(caplog) == []
    assert sample(scrape(app), "wechat_pushes_total", type="text", outcome="reply") == 1.0
