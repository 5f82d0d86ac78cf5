"""The ``wechat_*`` pytest fixtures, as a plugin author's project meets them: pytest run in a project of its own.

pytest loads ``pytest_wechat`` by itself (the ``pytest11`` entry point), in every run of
the environment, so it must not disturb a project that has its own ``app`` package and
``app`` and ``client`` fixtures, and must work when a test asks for one of its fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from app.testing import text_push


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def run_pytest(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """pytest in ``folder`` with this environment's interpreter, its plugins autoloaded."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WECHAT_"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
        cwd=folder,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_plugin_is_registered_for_pytest():
    assert [(ep.name, ep.value) for ep in entry_points(group="pytest11") if ep.value == "pytest_wechat"] == [
        ("wechat", "pytest_wechat")
    ]


THEIR_CONFTEST = """
    import pytest

    @pytest.fixture
    def app():
        return "their app"

    @pytest.fixture
    def client(app):
        return f"their client of {app}"
"""


def test_a_project_with_its_own_app_package_and_fixtures_is_left_alone(tmp_path):
    write(
        tmp_path,
        {
            "app/__init__.py": 'NAME = "theirs"\n',
            "conftest.py": THEIR_CONFTEST,
            "test_theirs.py": """
                import sys

                import app as their_package

                def test_their_package_is_the_one_imported(request):
                    assert request.config.pluginmanager.hasplugin("wechat")
                    assert their_package.NAME == "theirs"
                    assert "app.testing" not in sys.modules and "flask" not in sys.modules

                def test_their_fixtures_are_theirs(app, client):
                    assert (app, client) == ("their app", "their client of their app")
            """,
            "test_shadowed.py": """
                def test_wechat(wechat_client):
                    pass
            """,
        },
    )
    theirs = run_pytest(tmp_path, "test_theirs.py")
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert "2 passed" in theirs.stdout

    # Their `app` package is the one `import app` finds there: the fixtures say so instead of failing obscurely.
    shadowed = run_pytest(tmp_path, "test_shadowed.py")
    assert shadowed.returncode == 1
    assert "the wechat_* fixtures need wechat-callback's package `app`" in shadowed.stdout
    assert str(tmp_path / "app" / "__init__.py") in shadowed.stdout


PLUGIN_PROJECT = {
    "pyproject.toml": """
        [tool.pytest.ini_options]
        pythonpath = ["."]
        wechat_plugins = "shout"
    """,
    "conftest.py": THEIR_CONFTEST,
    "shout.py": """
        from app.signals import event_received, message_received

        @message_received.connect_via("text")
        def shout(sender, message, **extra):
            return message.content.upper()

        @event_received.connect_via("subscribe")
        def welcome(sender, event, client, **extra):
            client.send_text(event.from_user, "welcome")
    """,
    "pushes/hello.xml": """
        <xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_1]]></FromUserName>
        <CreateTime>1718852461</CreateTime><MsgType><![CDATA[text]]></MsgType>
        <Content><![CDATA[from a file]]></Content><MsgId>7382459180612344321</MsgId></xml>
    """,
    "test_three_lines.py": """
        def test_shout(wechat_client):
            assert wechat_client.text("hi").content == "HI"
    """,
    "test_more.py": """
        from pathlib import Path

        import pytest

        def test_with_their_own_fixtures_beside(wechat_client, app, client):
            assert wechat_client.post("text").content == "你好，请问周末营业到几点？".upper()
            assert (app, client) == ("their app", "their client of their app")

        def test_safe_mode_and_a_recorded_file(wechat_client):
            answer = wechat_client.post(Path(__file__).parent / "pushes" / "hello.xml", safe=True)
            assert answer.raw.startswith(b"<xml><Encrypt>")
            assert answer.content == "FROM A FILE"

        def test_the_sends_are_recorded(wechat_client, wechat_api):
            assert wechat_client.post("subscribe").success
            [sent] = wechat_api.wait_for_sends(1)
            assert sent["text"] == {"content": "welcome"}
            assert sent["touser"] == "oABCDf3Gh8Jk1Lm5Np9Qr2St6Uv0"

        @pytest.mark.wechat_plugins("app.plugins.echo")
        def test_a_marker_names_other_plugins(wechat_client):
            assert wechat_client.text("hi").content == "hi"

        def test_the_environment_does_not_reach_the_app(wechat_app, wechat_client):
            from app import get_state

            assert get_state(wechat_app).allowlist is None
            assert wechat_client.text("hi").status == 200
    """,
    "settings/conftest.py": """
        import pytest

        @pytest.fixture
        def wechat_settings(wechat_settings):
            return {**wechat_settings, "WECHAT_CALLBACK_PATH": "/callback"}
    """,
    "settings/test_settings_override.py": """
        def test_an_override_of_the_settings(wechat_app, wechat_client):
            assert wechat_app.test_client().get("/wechat").status_code == 404
            assert wechat_client.text("hi").content == "HI"
    """,
}


def test_a_plugin_project_tests_its_plugin_with_the_fixtures(tmp_path):
    write(tmp_path, PLUGIN_PROJECT)
    result = run_pytest(tmp_path, WECHAT_ALLOWED_IPS="10.9.8.7")  # would refuse the test client, were it read
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed" in result.stdout


def test_without_plugins_named_the_app_loads_none(tmp_path):
    write(
        tmp_path,
        {
            "test_bare.py": """
                def test_nothing_answers(wechat_client):
                    assert wechat_client.text("hi").success
            """
        },
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# --- the fixtures in this suite, which loads the plugin as any other does ----------------


@pytest.mark.wechat_plugins("app.plugins.echo")
def test_the_fake_api_holds_the_sends_in_order_and_nothing_else(wechat_app, wechat_api):
    from app import get_state

    client = get_state(wechat_app).client
    client.send_text("o_follower", "你好")
    client.send_template("o_follower", "TEMPLATE", {"first": {"value": "hi"}})
    client.mass_send_to_tag("text", "to everyone", tag_id=2)
    assert [request.path for request in wechat_api.sends] == [
        "/cgi-bin/message/custom/send",
        "/cgi-bin/message/template/send",
        "/cgi-bin/message/mass/sendall",
    ]
    assert wechat_api.sent[0] == {"touser": "o_follower", "msgtype": "text", "text": {"content": "你好"}}
    assert wechat_api.token_requests()  # the token call happened, and is not a send
    assert wechat_api.wait_for_sends(3) == wechat_api.sent


def test_waiting_for_a_send_that_never_comes_ends(wechat_api):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="0 send"):
        wechat_api.wait_for_sends(1, timeout=0.3)
    assert time.monotonic() - started < 2


@pytest.mark.wechat_plugins("app.plugins.echo")
def test_the_client_posts_xml_a_sample_and_a_file(wechat_client, tmp_path):
    assert (
        wechat_client.post(
            "<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName>"
            "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>str</Content>"
            "<MsgId>1</MsgId></xml>"
        ).content
        == "str"
    )
    assert wechat_client.post("text.xml", safe=True).content == "你好，请问周末营业到几点？"
    (tmp_path / "mine.xml").write_bytes(text_push("from a file"))
    assert wechat_client.post(str(tmp_path / "mine.xml")).content == "from a file"
    assert wechat_client.event("subscribe").content.startswith("Thanks for following")
    with pytest.raises(LookupError, match="no sample push called 'nonsense'"):
        wechat_client.post("nonsense")
    with pytest.raises(FileNotFoundError):
        wechat_client.post(str(tmp_path / "missing.xml"))
