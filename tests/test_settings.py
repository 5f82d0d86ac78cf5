"""Start-up refuses bad settings with one line that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import SettingsError, create_app
from app.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_only_the_token_is_set(tmp_path):
    settings = load_settings({"WECHAT_TOKEN": "t"}, environ={}, instance_path=str(tmp_path))
    assert settings.callback_path == "/wechat"
    assert settings.api_base_url == "https://api.weixin.qq.com"
    assert settings.timestamp_tolerance == 300
    assert settings.max_body_bytes == 262144
    assert settings.plugins == ()
    assert settings.store_url == f"sqlite:///{tmp_path}/wechat.sqlite3"
    assert settings.encoding_aes_key is None


def test_config_overrides_environment():
    settings = load_settings({"WECHAT_TOKEN": "from-config"}, environ={"WECHAT_TOKEN": "from-env"})
    assert settings.signing_token == "from-config"
    settings = load_settings({}, environ={"WECHAT_TOKEN": "from-env", "WECHAT_PLUGINS": "a.b, c ,"})
    assert settings.signing_token == "from-env"
    assert settings.plugins == ("a.b", "c")


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ({}, "WECHAT_TOKEN"),
        ({"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_ENCODING_AES_KEY": "short"}, "WECHAT_ENCODING_AES_KEY"),
        ({"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "wx1", "WECHAT_ENCODING_AES_KEY": "!" * 43}, "WECHAT_ENCODING_AES_KEY"),
        ({"WECHAT_TOKEN": "t", "WECHAT_ENCODING_AES_KEY": "a" * 43}, "WECHAT_APP_ID"),
        ({"WECHAT_TOKEN": "t", "WECHAT_STORE_URL": "postgres://db/1"}, "WECHAT_STORE_URL"),
        ({"WECHAT_TOKEN": "t", "WECHAT_PLUGINS": "no_such_plugin_module"}, "WECHAT_PLUGINS"),
        ({"WECHAT_TOKEN": "t", "WECHAT_TIMESTAMP_TOLERANCE": "soon"}, "WECHAT_TIMESTAMP_TOLERANCE"),
        ({"WECHAT_TOKEN": "t", "WECHAT_MAX_BODY_BYTES": "-5"}, "WECHAT_MAX_BODY_BYTES"),
        ({"WECHAT_TOKEN": "t", "WECHAT_CALLBACK_PATH": "wechat"}, "WECHAT_CALLBACK_PATH"),
    ],
)
def test_bad_setting_names_the_variable(tmp_path, config, variable):
    config.setdefault("WECHAT_STORE_URL", f"sqlite:///{tmp_path}/s.sqlite3")
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("WECHAT_"):
                patch.delenv(key)
        with pytest.raises(SettingsError) as caught:
            create_app(config)
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_gunicorn_refuses_to_start_with_one_clear_line(tmp_path):
    """Served the README's way, a missing token stops the master with one line naming it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_")}
    env["GUNICORN_BIND"] = "127.0.0.1:0"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "WECHAT_TOKEN" in line]
    assert lines == ["wechat-callback: WECHAT_TOKEN is required: set it to the token of the official-account console"]
    assert "Traceback" not in result.stderr


def test_the_default_store_is_in_the_working_directory(tmp_path, monkeypatch):
    """Not inside the virtualenv, where Flask would put an installed package's instance folder."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("WECHAT_"):
            monkeypatch.delenv(key)
    app = create_app({"WECHAT_TOKEN": "t"})
    assert app.extensions["wechat"].settings.store_url == f"sqlite:///{tmp_path}/instance/wechat.sqlite3"
    assert (tmp_path / "instance" / "wechat.sqlite3").exists()


def test_a_store_url_without_a_scheme_is_a_sqlite_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"WECHAT_TOKEN": "t", "WECHAT_STORE_URL": "data/s.sqlite3"}, environ={})
    assert settings.store_url == f"sqlite:///{tmp_path}/data/s.sqlite3"


def test_every_setting_can_be_loaded_and_is_documented():
    from app.settings import variables

    readme = (ROOT / "README.md").read_text()
    for variable in variables():
        assert f"`{variable}`" in readme, f"{variable} is not in the README"
    settings = load_settings({"WECHAT_TOKEN": "t", "WECHAT_DEDUP_TTL": "600"}, environ={})
    assert settings.dedup_ttl == 600


def test_a_dedup_ttl_shorter_than_wechats_retries_is_refused():
    with pytest.raises(SettingsError, match="WECHAT_DEDUP_TTL"):
        load_settings({"WECHAT_TOKEN": "t", "WECHAT_DEDUP_TTL": "10"}, environ={})


@pytest.mark.parametrize("value", ["0", "5", "5.0", "-1", "nan", "soon"])
def test_a_reply_deadline_outside_0_to_5_seconds_is_refused(value):
    with pytest.raises(SettingsError, match="WECHAT_REPLY_DEADLINE"):
        load_settings({"WECHAT_TOKEN": "t", "WECHAT_REPLY_DEADLINE": value}, environ={})


def test_customer_service_late_replies_need_the_appid_and_secret():
    with pytest.raises(SettingsError, match="WECHAT_LATE_REPLY"):
        load_settings({"WECHAT_TOKEN": "t", "WECHAT_LATE_REPLY": "customer_service"}, environ={})


def test_an_empty_late_reply_hint_is_kept_as_empty():
    settings = load_settings({"WECHAT_TOKEN": "t", "WECHAT_LATE_REPLY_HINT": ""}, environ={})
    assert settings.late_reply_hint == ""
    assert load_settings({"WECHAT_TOKEN": "t"}, environ={}).late_reply_hint != ""


def test_a_password_in_a_bad_store_url_is_masked():
    with pytest.raises(SettingsError) as caught:
        load_settings({"WECHAT_TOKEN": "t", "WECHAT_STORE_URL": "postgres://admin:s3cret@db/1"}, environ={})
    assert "s3cret" not in str(caught.value)
    assert "WECHAT_STORE_URL" in str(caught.value)
