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
    assert settings.token == "from-config"
    settings = load_settings({}, environ={"WECHAT_TOKEN": "from-env", "WECHAT_PLUGINS": "a.b, c ,"})
    assert settings.token == "from-env"
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
