"""gunicorn settings; every one can be overridden by its GUNICORN_* variable.

Threaded workers let a handler's slow outbound call wait without holding up
the other requests of its worker.  The app is loaded before forking so a bad
setting stops the master with its one-line message; the store opens its
connections lazily, per process.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
