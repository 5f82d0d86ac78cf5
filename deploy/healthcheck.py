"""The image's HEALTHCHECK: ``GET /healthz`` where gunicorn listens (``GUNICORN_BIND``); exit 0 on a 200.

``HOST:PORT``, ``[IPv6]:PORT`` and ``unix:PATH`` are understood, as gunicorn
writes them; an address that listens on every interface (``0.0.0.0``, ``[::]``)
is asked on the loopback one.  Anything but a 200 within the timeout exits 1,
with the reason on stderr (``docker inspect`` shows it).

Only the standard library: it runs in the image's Python, with nothing of the app imported.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

DEFAULT_BIND = "127.0.0.1:8000"  # gunicorn.conf.py's
TIMEOUT = 4.0  # below the HEALTHCHECK's --timeout
ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def connection(bind: str, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    """A connection to the address gunicorn binds for ``bind``."""
    bind = bind.strip()
    if bind.startswith("unix:"):
        return UnixConnection(bind[len("unix:") :], timeout)
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = bind.rpartition(":") if ":" in bind else (bind, "", "")
    return http.client.HTTPConnection(ANY.get(host, host), int(port or 8000), timeout=timeout)


def main() -> int:
    bind = os.environ.get("GUNICORN_BIND") or DEFAULT_BIND
    try:
        conn = connection(bind)
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"healthcheck: {bind}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {bind}: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
