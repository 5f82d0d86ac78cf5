"""The image, as far as it can be checked without a Docker engine.

The Dockerfile is read as Docker reads it (instructions, continuation lines, JSON
commands); its HEALTHCHECK and CMD are run here, as they would run in the
container: from the repository (the image's WORKDIR), with the image's
environment, as a user whose home does not exist.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from app.settings import variables
from app.testing import signed_query, text_push
from tests.conftest import TOKEN
from tests.servers import ROOT, free_port, serve, write_lock

DOCKER_STOP_TIMEOUT = 10.0  # seconds between docker stop's SIGTERM and its SIGKILL, unless told otherwise


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's ``(INSTRUCTION, arguments)``, continuation lines joined, comments left out."""
    joined, parts = [], []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not parts and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        joined.append(" ".join(part.strip() for part in [*parts, line]))
        parts = []
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def only(name: str) -> str:
    found = [arguments for instruction, arguments in instructions() if instruction == name]
    assert len(found) == 1, f"one {name} expected, found {len(found)}"
    return found[0]


def image_env() -> dict[str, str]:
    """The ENV instructions' variables, as the container starts with them."""
    env: dict[str, str] = {}
    for instruction, arguments in instructions():
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
    return env


def workdir() -> str:
    return only("WORKDIR")


def local(command: list[str]) -> list[str]:
    """An exec-form command of the image, run here: its programs from this virtualenv, WORKDIR as the repository."""
    programs = {"python": sys.executable, "gunicorn": str(Path(sys.executable).with_name("gunicorn"))}
    prefix = workdir().rstrip("/") + "/"
    return [programs.get(word, word.replace(prefix, f"{ROOT}/", 1)) for word in command]


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its exec-form command."""
    options, _, command = only("HEALTHCHECK").partition(" CMD ")
    flags = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    return flags, json.loads(command)


def run_healthcheck(bind: str) -> subprocess.CompletedProcess:
    _, command = healthcheck()
    env = {**os.environ, "GUNICORN_BIND": bind}
    return subprocess.run(local(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def seconds(text: str) -> float:
    """A Docker duration: ``30s``, ``1m``, ``1m30s``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- the build ---------------------------------------------------------------------


def test_dependencies_are_installed_from_the_lock_before_the_code_is_copied():
    steps = instructions()
    copies = [(n, arguments) for n, (instruction, arguments) in enumerate(steps) if instruction == "COPY"]
    runs = [(n, arguments) for n, (instruction, arguments) in enumerate(steps) if instruction == "RUN"]
    lock_install = next(n for n, arguments in runs if "-r deploy/requirements.lock" in arguments)
    first_code = next(n for n, arguments in copies if arguments.split()[0] in ("app", "."))
    assert lock_install < first_code, "a change to the code would reinstall every dependency"
    assert all(arguments.split()[:-1] == ["deploy/requirements.lock"] for n, arguments in copies if n < lock_install)
    assert all("--no-deps" in arguments for _, arguments in runs if "pip install" in arguments)


def test_the_lock_pins_what_the_tests_run_on_the_python_of_the_image():
    lock = (ROOT / "deploy" / "requirements.lock").read_text()
    generated = runpy.run_path(str(ROOT / "deploy" / "lock.py"))["lock_text"]()
    assert lock == generated, "the lock and this virtualenv differ: run deploy/lock.py again"
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", line) for line in pins)
    names = {line.split("==")[0].lower().replace("_", "-") for line in pins}
    assert {"flask", "gunicorn", "lxml", "prometheus-client", "redis", "rq", "setuptools"} <= names
    image_python = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim(?:-\w+)?", only("FROM"))
    assert image_python, "the base image is pinned to a Python version"
    assert image_python.group(1) == ".".join(map(str, sys.version_info[:3]))


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last pattern matching it or a parent wins."""

    def regex(pattern: str) -> re.Pattern:
        text = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return re.compile(text.replace(r"\?", "[^/]") + "$")

    parents = [path.rsplit("/", depth)[0] for depth in range(path.count("/"), -1, -1)]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.lstrip("!")).match(candidate) for candidate in parents):
            result = not negated
    return result


def test_dockerignore_sends_what_the_image_copies_and_nothing_private():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [word for _, arguments in instructions() if _ == "COPY" for word in arguments.split()[:-1]]
    for source in copied:
        target = ROOT / source
        files = [target] if target.is_file() else [p for p in target.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            assert not ignored(str(file.relative_to(ROOT)), patterns), f"{file} is copied but ignored"
    for private in [
        ".venv/bin/python",
        ".git/config",
        "deploy/wechat.env",
        "instance/wechat.sqlite3",
        "tests/test_docker.py",
        "bench/.venv/bin/python",
        "app/__pycache__/metrics.cpython-311.pyc",
        "build/lib/app/__init__.py",
        "wechat_callback.egg-info/PKG-INFO",
    ]:
        assert ignored(private, patterns), f"{private} would be sent to the build"


# --- the HEALTHCHECK ---------------------------------------------------------------


def test_the_healthcheck_has_a_start_period_and_answers_within_its_timeout():
    flags, command = healthcheck()
    assert seconds(flags["start-period"]) >= 10
    assert seconds(flags["timeout"]) > 4.0  # deploy/healthcheck.py gives up after 4 s
    assert command[0] == "python" and command[1].startswith(workdir())


def test_the_healthcheck_follows_the_bind(tmp_path):
    with serve(tmp_path) as served:
        bind = f"127.0.0.1:{served.port}"
        assert run_healthcheck(bind).returncode == 0
        assert run_healthcheck(f"0.0.0.0:{served.port}").returncode == 0  # asked on the loopback address
        assert run_healthcheck(f"127.0.0.1:{free_port()}").returncode == 1  # another port: nothing there
        with write_lock(tmp_path / "served.sqlite3"):
            unhealthy = run_healthcheck(bind)
        assert unhealthy.returncode == 1 and "503" in unhealthy.stderr
    stopped = run_healthcheck(bind)
    assert stopped.returncode == 1 and bind in stopped.stderr


# --- the start command ---------------------------------------------------------------


def start_image_command(tmp_path: Path, bind: str) -> subprocess.Popen:
    """The Dockerfile's CMD with its ENV, as the image's user (no home); only the bind and the store moved here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "GUNICORN_", "XDG_", "PROMETHEUS_"))}
    env.update(image_env())
    home = tmp_path / "home"  # a file: nothing can be made under it, not even by root
    home.write_text("")
    env.update(
        HOME=str(home),
        GUNICORN_BIND=bind,
        WECHAT_STORE_URL=f"sqlite:///{tmp_path}/image.sqlite3",
        WECHAT_TOKEN=TOKEN,
        WECHAT_PLUGINS="app.plugins.echo",
    )
    command = local(json.loads(only("CMD")))
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(process: subprocess.Popen, bind: str) -> None:
    deadline = time.monotonic() + 30
    while run_healthcheck(bind).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the image's command did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> float:
    """``docker stop``: SIGTERM, then how long the server took to exit (SIGKILL past Docker's timeout)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=DOCKER_STOP_TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def test_the_image_command_serves_as_a_user_without_a_home_and_stops_in_time(tmp_path):
    port = free_port()
    bind = f"127.0.0.1:{port}"
    process = start_image_command(tmp_path, bind)
    try:
        wait_healthy(process, bind)
        answer = requests.post(
            f"http://{bind}/wechat", params=signed_query(TOKEN), data=text_push("in the image"), timeout=10
        )
        assert answer.status_code == 200 and b"in the image" in answer.content
    finally:
        took = stop(process)
    stderr = process.stderr.read().decode()
    assert "control socket" not in stderr.lower(), stderr[-2000:]
    assert took < DOCKER_STOP_TIMEOUT, "docker stop would have killed it"
    assert process.returncode == 0


def test_the_healthcheck_follows_a_unix_socket_bind(tmp_path):
    bind = f"unix:{tmp_path}/gunicorn.sock"
    process = start_image_command(tmp_path, bind)
    try:
        wait_healthy(process, bind)
    finally:
        stop(process)
    assert run_healthcheck(bind).returncode == 1


# --- deploy/compose.yaml -----------------------------------------------------------


def graceful_timeout() -> float:
    """gunicorn.conf.py's graceful timeout, read in a process of its own (it sets PROMETHEUS_MULTIPROC_DIR)."""
    code = "import runpy; print(runpy.run_path('gunicorn.conf.py')['graceful_timeout'])"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "PROMETHEUS_"))}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


def test_the_compose_file_builds_this_image_and_stops_it_after_gunicorn_has():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"nginx", "app", "worker", "redis"} <= set(services)
    app = services["app"]
    assert (ROOT / "deploy" / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    stop_after = seconds(app.get("stop_grace_period", f"{DOCKER_STOP_TIMEOUT:g}s"))
    assert graceful_timeout() + 1 < stop_after
    assert [name for name, service in services.items() if service.get("ports")] == ["nginx"]
    assert "healthcheck" not in app, "the app uses the image's HEALTHCHECK"
    assert services["worker"]["healthcheck"] == {"disable": True}
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    for name in ("nginx", "redis"):
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?-alpine", services[name]["image"]), f"{name}: a pinned version"


def test_the_example_env_file_names_only_real_settings():
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "wechat.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert names and set(names) <= set(variables())
