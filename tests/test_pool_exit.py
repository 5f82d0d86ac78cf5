"""A process that exits normally (a CLI command, a script using the test kit) lets its handler pool finish first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time


def test_work_handed_to_the_pool_finishes_before_a_normal_exit(tmp_path):
    marker = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import time
        from app.runs import Pool

        def slow():
            time.sleep(0.5)
            open({str(marker)!r}, "w").write("done")

        Pool(4, "test").submit(slow)
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert marker.read_text() == "done", "the call was cut off at exit"
    assert time.monotonic() - started >= 0.5


def test_a_hung_call_holds_the_exit_no_longer_than_the_bound(tmp_path):
    script = textwrap.dedent(
        """
        import threading
        import app.runs as runs
        runs.EXIT_WAIT = 0.5
        runs.Pool(1, "test").submit(threading.Event().wait)  # never returns
        """
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert time.monotonic() - started < 0.5 + 5  # the bound, plus the interpreter's start and stop
    assert "work still running in the handler pool" in result.stderr
