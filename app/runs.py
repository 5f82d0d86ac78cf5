"""Where handlers run: a pool of threads in each process, and the leases that say a run is alive.

A delivery never runs handlers on its own thread: it starts a :class:`Run` in
the pool and waits for it only as long as WeChat's clock allows, so a slow
handler costs the delivery a waiting thread, never a late answer.

A run holds a lease in the store, renewed every second by one background
thread per process; a lease not renewed for 3 s has lapsed, and its run is
taken to be dead (its worker was killed).  The same thread looks for lapsed
runs in the store and hands them to ``on_lapsed``.

The pool and the thread start lazily in each process: gunicorn loads the app
before forking, and threads do not survive a fork.
"""

from __future__ import annotations

import atexit
import logging
import queue
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .logs import Throttle
from .messages import Push
from .process import pid as current_pid
from .store import Store
from .store.base import LEASE

log = logging.getLogger(__name__)

RENEW_EVERY = 1.0
WRITE_EVERY = 0.5  # outcomes put off by fast runs are written this often, together

EXIT_WAIT = 10.0  # how long a process exiting normally waits for its pools' calls

_runners: weakref.WeakSet[Runner] = weakref.WeakSet()
_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_throttle = Throttle()  # the lease thread's failures repeat every second while the store is down


class Latch:
    """A one-way flag a thread can wait on: :class:`threading.Event`'s ``set``/``is_set``/``wait``,
    for less.

    Every push's delivery waits on its run's latch, so it is on the request path: an Event's
    wait builds a Condition and a lock per waiter; this is one lock, held until the latch is set.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._lock.release()
            except RuntimeError:  # set twice at once: released already
                pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """True once set; False if ``timeout`` seconds pass first."""
        if self._set:
            return True
        if self._lock.acquire(timeout=max(0.0, timeout)):
            self._lock.release()  # for the next waiter
            return True
        return self._set


class Pool:
    """Threads that take calls off one queue, started as needed up to ``size``.

    What :class:`concurrent.futures.ThreadPoolExecutor` does without the futures,
    which nothing here reads: a run reports through its :class:`Latch`.  Like it, a
    process that exits normally (a CLI command) first lets the calls it was given
    finish, for up to ``EXIT_WAIT`` seconds; a server worker drains its runs itself.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._pending = 0  # calls submitted and not finished
        _pools.add(self)

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            if self._idle > 0:
                self._idle -= 1  # that thread takes this call
            elif len(self._threads) < self.size:
                thread = threading.Thread(target=self._serve, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._calls.put(call)  # with every thread busy, the call waits for the first to be free

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call()
            except Exception:
                log.exception("a call in the pool failed")
            with self._lock:
                self._idle += 1
                self._pending -= 1

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every call submitted so far to finish; whether they did."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._pending

    def shutdown(self, wait: bool = True) -> None:
        """Let every thread end once the calls queued before this are done."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()


@dataclass
class Run:
    """One run of a push's handlers in this process."""

    key: str
    push: Push
    journalled: bool = True  # False while the store is skipped: nothing to renew or finish
    received_at: float = 0.0  # when the push's first delivery arrived (wall clock)
    attempt: int = 1  # 1 for the first run of the push, 2 for a re-run
    deadline: float = 0.0  # the deadline of the delivery that started it (monotonic clock); 0: none
    done: Latch = field(default_factory=Latch)
    reply_xml: bytes | None = None


class Runner:
    """One app's pool, its live runs, and the background thread that keeps their leases."""

    def __init__(
        self,
        work: Callable[[Run], None],
        store: Store,
        pool_size: int,
        context: Callable[[], AbstractContextManager] = nullcontext,
        on_lapsed: Callable[[], None] | None = None,
        store_failed: Callable[[str], None] = lambda operation: None,
    ) -> None:
        self.work = work
        self.store = store
        self.pool_size = pool_size
        self.context = context
        self.on_lapsed = on_lapsed
        self.store_failed = store_failed  # counts a failed store call, by operation
        self.owner = ""
        self.releasing = threading.Event()  # set on shutdown: held deliveries let go
        self._runs: dict[str, Run] = {}
        self._outcomes: dict[str, tuple[str, bytes | None]] = {}  # written later, together
        self._lock = threading.Lock()
        self._pid = 0  # the process whose pool and lease thread are running; 0: none
        self._owner_pid = 0  # the process the owner id, the runs and the put-off outcomes are of
        self._pool: Pool | None = None
        self._lease_thread: threading.Thread | None = None
        self._stopping = threading.Event()  # this start's; set by stop()
        _runners.add(self)
        # An app that goes away (or a process that exits) writes what it put off first: unwritten, a
        # push answered in time would look, 3 s later, like a run that died.
        weakref.finalize(self, _write_outcomes, store, self._outcomes, self._lock, store_failed)

    def start_background(self) -> None:
        """Start this process's pool and lease thread now (a server worker at boot), not at the first push."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._pid == current_pid():
            return
        with self._lock:
            if self._pid == current_pid():
                return
            if self._owner_pid != current_pid():  # the first start in this process: nothing of a parent's
                self._runs = {}
                self._outcomes.clear()  # a forked copy's; the same dict, which the finalizer holds
                self.owner = f"{socket.gethostname()}:{current_pid()}:{secrets.token_hex(4)}"
                self._owner_pid = current_pid()
            self._pool = Pool(self.pool_size, "wechat-run")
            self._pid = current_pid()  # before the thread starts: it runs while this holds
            self._stopping = threading.Event()
            self._lease_thread = threading.Thread(
                target=_keep_leases, args=(weakref.ref(self), self._pid, self._stopping), daemon=True
            )
            self._lease_thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End this process's pool and lease thread, once the put-off outcomes are written; the next
        push starts them again.

        For a process that is done with the app while the app lives on, as a test is: its lease
        thread would otherwise go on looking in a store that later tests share, and take what
        they wait for (an expired hold is reported once).  A server's workers never call it.
        """
        with self._lock:
            if self._pid != current_pid():
                return
            self._pid = 0
            self._stopping.set()
            thread, pool = self._lease_thread, self._pool
        if thread is not None:
            thread.join(timeout)
        if pool is not None:
            pool.shutdown(wait=False)
        self.write_outcomes()

    def owner_id(self) -> str:
        self._ensure_started()
        return self.owner

    def start(
        self,
        key: str,
        push: Push,
        journalled: bool = True,
        received_at: float = 0.0,
        attempt: int = 1,
        deadline: float = 0.0,
    ) -> Run:
        """Run ``push``'s handlers in the pool; the caller holds the claim (or the store is skipped)."""
        self._ensure_started()
        run = Run(key, push, journalled, received_at, attempt, deadline)
        if journalled:
            with self._lock:
                self._runs[key] = run
        self._pool.submit(lambda: self._work(run))
        return run

    def local(self, key: str) -> Run | None:
        """The run of ``key`` in this process, if there is one."""
        return self._runs.get(key)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Other continuing work (a late send), in the same pool and app context."""
        self._ensure_started()

        def call() -> None:
            try:
                with self.context():
                    function(*args)
            except Exception:
                log.exception("continuing work %s failed", getattr(function, "__name__", function))

        self._pool.submit(call)

    def _work(self, run: Run) -> None:
        try:
            with self.context():
                self.work(run)
        except Exception:
            log.exception("run of %s failed inside the server", run.key)
        finally:
            run.done.set()
            with self._lock:
                if self._runs.get(run.key) is run:
                    del self._runs[run.key]

    def live_keys(self) -> list[str]:
        """The pushes whose leases this process holds: runs going, and runs whose outcome is not written yet."""
        with self._lock:
            return [key for key, run in self._runs.items() if run.journalled] + list(self._outcomes)

    def put_off(self, key: str, status: str, reply: bytes | None) -> None:
        """Record a run's outcome with others, within ``WRITE_EVERY``; its lease is kept until then.

        For fast runs only: no delivery of the push can have reached its deadline yet, so
        none is waiting on the outcome to decide what to answer.
        """
        with self._lock:
            self._outcomes[key] = (status, reply)

    def write_outcomes(self) -> None:
        """Write the outcomes put off so far, in one store call."""
        _write_outcomes(self.store, self._outcomes, self._lock, self.store_failed)

    def release(self) -> None:
        """Let every held delivery go now (the worker is stopping)."""
        self.releasing.set()

    def drain(self, timeout: float) -> list[Run]:
        """Wait up to ``timeout`` for the runs in this process; return those still going."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._runs:
                    return []
            time.sleep(0.05)
        with self._lock:
            return list(self._runs.values())


def _keep_leases(ref: weakref.ref[Runner], pid: int, stopping: threading.Event) -> None:
    """Every second: renew the leases of this process's runs, and look for runs lost elsewhere;
    every ``WRITE_EVERY``: write the outcomes fast runs put off.

    It holds its runner weakly and ends with it (an app that is gone, as in a test
    process that builds many), with a fork, or when the runner is stopped.
    """
    renewed = 0.0
    while (runner := ref()) is not None and runner._pid == pid and not stopping.is_set():
        started = time.monotonic()
        runner.write_outcomes()
        if started - renewed >= RENEW_EVERY:
            renewed = started
            keys = runner.live_keys()
            if keys:
                try:
                    runner.store.renew_leases(keys, runner.owner, time.time() + LEASE)
                except Exception as exc:
                    runner.store_failed("renew_leases")
                    _throttle.log(
                        log, logging.WARNING, "renew", "cannot renew the leases of %d runs: %s", len(keys), exc
                    )
            if runner.on_lapsed is not None:
                try:
                    runner.on_lapsed()
                except Exception as exc:
                    _throttle.log(log, logging.WARNING, "lapsed", "cannot look for lost runs: %s", exc)
        del runner
        stopping.wait(max(0.0, WRITE_EVERY - (time.monotonic() - started)))


def _write_outcomes(
    store: Store,
    outcomes: dict[str, tuple[str, bytes | None]],
    lock: threading.Lock,
    store_failed: Callable[[str], None],
) -> None:
    with lock:
        batch = dict(outcomes)
        outcomes.clear()
    if not batch:
        return
    try:
        store.finish_pushes([(key, status, reply) for key, (status, reply) in batch.items()])
    except Exception as exc:
        with lock:  # kept, leases and all, for the next try
            for key, outcome in batch.items():
                outcomes.setdefault(key, outcome)
        store_failed("finish_pushes")
        _throttle.log(log, logging.ERROR, "outcomes", "cannot record the outcome of %d pushes: %s", len(batch), exc)


@atexit.register
def _finish_calls() -> None:
    """At a normal exit, before the pools' (daemon) threads are stopped: let their calls finish, bounded."""
    deadline = time.monotonic() + EXIT_WAIT
    for pool in list(_pools):
        if not pool.join(max(0.0, deadline - time.monotonic())):
            log.warning("exiting with work still running in the handler pool (waited %gs)", EXIT_WAIT)
    for runner in list(_runners):  # what the runs that just finished put off
        runner.write_outcomes()


def release_held_deliveries() -> None:
    """On SIGTERM: every runner in this process lets its held deliveries go (those that are not a push's
    last, unanswered; the others are answered as at their deadline).

    WeChat then delivers the push again, to a worker that is not stopping, and
    that delivery takes the run over once its lease lapses.
    """
    for runner in list(_runners):
        runner.release()


def start_runners() -> None:
    """At a worker's boot: every runner in this process starts renewing leases and watching for lapsed runs.

    Otherwise a worker that has not handled a push yet would not notice another
    worker's run dying.
    """
    for runner in list(_runners):
        runner.start_background()


def stop_runners() -> None:
    """Stop every runner in this process (see :meth:`Runner.stop`): for a test run, between tests."""
    for runner in list(_runners):
        runner.stop()


def drain(timeout: float) -> None:
    """On shutdown: wait up to ``timeout`` for this process's runs; journal the rest as unfinished."""
    deadline = time.monotonic() + timeout
    for runner in list(_runners):
        left = runner.drain(max(0.0, deadline - time.monotonic()))
        runner.write_outcomes()
        for run in left:
            if not run.journalled:
                continue
            try:
                if runner.store.mark_unfinished(run.key, runner.owner):
                    log.warning("push %s: its run was still going at shutdown; journalled as unfinished", run.key)
            except Exception as exc:
                log.error("push %s: its run was still going at shutdown and cannot be journalled: %s", run.key, exc)
