"""gunicorn settings; every one can be overridden by its GUNICORN_* variable.

Threaded workers (gthread), 64 threads each.  A delivery whose handlers are slow
is held open (up to 5.5 s) while they run in the app's own pool: in a threaded
worker that costs one waiting thread, so 50 slow pushes held at once leave
threads free for a fast one.  A sync worker would be taken whole by one held
delivery; gevent would stop a whole worker while SQLite waits for a lock (its C
calls do not yield).  The app is loaded before forking so a bad setting stops the
master with its one-line message; the store opens its connections lazily, per
process.

On SIGTERM a worker lets the held deliveries that are not a push's last go at
once, unanswered, so that WeChat delivers again to a live worker (the others are
answered as at their deadline); it then waits for running handlers
until shortly before the graceful timeout and journals what is left as
unfinished.

gunicorn's own lines and its access log (off unless GUNICORN_ACCESSLOG names a
file, or "-" for stdout) follow WECHAT_LOG_FORMAT and WECHAT_LOG_MASK_OPENIDS
like the app's.  The access log's fields are documented in the README.

/metrics adds up every worker's in-memory counters through prometheus-client's
multiprocess mode: it needs PROMETHEUS_MULTIPROC_DIR before the app is imported
(a fresh temporary folder unless the operator names one), and a dead worker's
files marked as such.
"""

import glob
import os
import tempfile
import time

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "8"))  # below Docker's 10 s stop timeout
keepalive = 5
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None  # "-": stdout; each push has its own line anyway
errorlog = "-"
# The request's path, never its query: WeChat's carries the follower's openid and the signatures.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
# gunicorn's control socket (gunicornc) is off: its default place, under $HOME or $XDG_RUNTIME_DIR, may not be
# writable (the image's user has no home), and two servers on one machine would share it.  To have one, name
# its path in GUNICORN_CONTROL_SOCKET.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)  # counters of an earlier run of the server
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="wechat-metrics-")


class AppFormatLogger(Logger):
    """gunicorn's error and access logs in the app's WECHAT_LOG_FORMAT, openids masked as the app's are."""

    def setup(self, cfg):
        super().setup(cfg)
        from app.logs import adopt  # here, not above: PROMETHEUS_MULTIPROC_DIR must be set before app is imported

        adopt(self.error_log, self.access_log)


logger_class = AppFormatLogger


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    import signal

    from app.runs import release_held_deliveries, start_runners

    start_runners()
    stop = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        worker.stopping_since = time.monotonic()
        release_held_deliveries()
        if callable(stop):
            stop(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server, worker):
    from app.runs import drain

    since = getattr(worker, "stopping_since", time.monotonic())
    drain(timeout=max(0.0, server.cfg.graceful_timeout - 2.0 - (time.monotonic() - since)))
    os._exit(0)  # a handler still running must not hold the process past what was journalled
