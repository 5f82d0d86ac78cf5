"""gunicorn settings; every one can be overridden by its GUNICORN_* variable.

Threaded workers let a handler's slow outbound call wait without holding up
the other requests of its worker.  The app is loaded before forking so a bad
setting stops the master with its one-line message; the store opens its
connections lazily, per process.

/metrics adds up every worker's in-memory counters through prometheus-client's
multiprocess mode: it needs PROMETHEUS_MULTIPROC_DIR before the app is imported
(a fresh temporary folder unless the operator names one), and a dead worker's
files marked as such.
"""

import glob
import os
import tempfile

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

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)  # counters of an earlier run of the server
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="wechat-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
