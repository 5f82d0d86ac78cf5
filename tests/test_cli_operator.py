"""The command line as an operator's shell runs it: ``flask --app wsgi wechat ...`` in a process of its own.

``--help`` needs no settings at all; a long mass send draws click's progress bar on a
terminal (a pseudo-terminal here) and leaves a script's output as it was.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
EMPTY_ENV = {"PATH": os.environ.get("PATH", "")}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLASK, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


# --- help without settings --------------------------------------------------------


def test_the_command_groups_help_needs_no_setting():
    result = run(["wechat", "--help"], EMPTY_ENV)

    assert result.returncode == 0, result.stderr
    for command in ("replay", "send", "upload-news", "upload-video", "mass", "template", "pushes", "jobs", "job"):
        assert f"\n  {command} " in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["wechat", "send", "--help"], ["msgmenu", "miniprogrampage", "wxcard", "link", "mpnews", "typing"]),
        (["wechat", "send", "text", "--help"], ["--kf-account"]),
        (["wechat", "mass", "--help"], ["send", "preview", "delete", "status", "speed"]),
        (["wechat", "mass", "send", "--help"], ["--openids", "--wxcard", "--group", "--title"]),
        (["wechat", "template", "send", "--help"], ["--miniprogram", "--pagepath", "--topcolor"]),
        (["wechat", "jobs", "--help"], ["--no-header"]),
        (["--help"], ["wechat"]),
    ],
    ids=["send", "send-text", "mass", "mass-send", "template-send", "jobs", "flask"],
)
def test_every_level_of_help_needs_no_setting(args, expected):
    result = run(args, EMPTY_ENV)

    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout
    assert "Traceback" not in result.stderr


def test_a_command_that_runs_without_its_settings_fails_in_one_line():
    result = run(["wechat", "jobs"], EMPTY_ENV)

    assert result.returncode != 0
    assert "WECHAT_TOKEN is required" in result.stderr
    assert "Traceback" not in result.stderr


# --- progress --------------------------------------------------------------------------


def settings(tmp_path: Path, fake) -> dict[str, str]:
    return {
        **EMPTY_ENV,
        "WECHAT_TOKEN": "callback-token",
        "WECHAT_STORE_URL": f"sqlite:///{tmp_path}/s.db",
        "WECHAT_API_BASE_URL": fake.base_url,
        "WECHAT_APP_ID": fake.app_id,
        "WECHAT_APP_SECRET": fake.app_secret,
    }


def run_with_terminal_stderr(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; the exit code, stdout, and what the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([*FLASK, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        stdout = process.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(leader)
    return process.returncode, stdout.decode(), shown.decode(errors="replace")


def test_a_mass_send_in_several_calls_shows_a_progress_bar_on_a_terminal(tmp_path, fake):
    openids = tmp_path / "openids.txt"
    openids.write_text("\n".join(f"o{n:027d}" for n in range(25_001)), encoding="utf-8")
    args = ["wechat", "mass", "send", "--openids", str(openids), "--text", "周末愉快"]

    code, stdout, terminal = run_with_terminal_stderr(args, settings(tmp_path, fake))

    assert code == 0, terminal
    assert stdout.split() == ["1000000001", "1000000002", "1000000003"]  # stdout is still only the msg_ids
    assert "mass send" in terminal
    assert "0/25001" in terminal and "25001/25001" in terminal
    assert [len(r.json["touser"]) for r in fake.requests_to("message/mass/send")] == [8334, 8334, 8333]


def test_off_a_terminal_there_is_no_progress_bar(tmp_path, fake):
    openids = tmp_path / "openids.txt"
    openids.write_text("\n".join(f"o{n:027d}" for n in range(10_001)), encoding="utf-8")

    result = run(["wechat", "mass", "send", "--openids", str(openids), "--text", "hi"], settings(tmp_path, fake))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000000001", "1000000002"]
    assert "10001" not in result.stderr and "mass send" not in result.stderr
