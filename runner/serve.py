"""``runner.serve()``: the loop a service runs in the background so that time passes for its
executions. It wakes what is due (timers, timeouts, pause deadlines, a signal an execution
waits for), and recovers executions whose driver died; in one process or many on one
database, each due execution driven by exactly one of them (its lease decides).

Finding what is due is one indexed range read of ``journal_wakeups`` (written with the events
that make an execution due, in their transaction), however many executions wait. Between
rounds the loop sleeps until the earliest wake-up, or until the database says something was
appended (PostgreSQL's LISTEN/NOTIFY), or for the polling interval (SQLite).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from journal import InvalidTransition, JournalError
from journal.errors import DecodingError
from journal.state import RUNNING, TERMINAL_STATUSES
from journal.storage.base import WORKER_HEARTBEAT, WorkerRow
from journal.storage.leases import process_started
from runner.errors import RunnerError, ValueClassMissing, WorkflowNotFound

if TYPE_CHECKING:
    from runner._runner import Run, Runner

__all__ = ["Server"]

logger = logging.getLogger("runner.serve")

#: How long an execution another live process drives (or one that cannot be driven here)
#: is left alone before it is looked at again.
BUSY_BACKOFF = 1.0
BROKEN_BACKOFF = 60.0


class Server:
    """One ``serve()`` loop of one runner (see :meth:`runner.Runner.serve`)."""

    def __init__(
        self,
        runner: Runner,
        *,
        workers: int = 4,
        poll_interval: float = 0.5,
        recover_after: timedelta = timedelta(minutes=1),
        recover_every: float = 10.0,
        grace: float = 30.0,
        on_run: Callable[[Run], object] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if workers < 1 or poll_interval <= 0 or grace < 0:
            raise ValueError("serve() needs workers >= 1, poll_interval > 0 and grace >= 0")
        self.runner = runner
        self.journal = runner.journal
        self.workers = workers
        self.poll_interval = poll_interval
        self.recover_after = recover_after
        self.recover_every = recover_every
        self.grace = grace
        self.on_run = on_run
        self.stopping = stop if stop is not None else threading.Event()
        self._busy: dict[UUID, float] = {}  # execution -> not looked at again before
        self._inflight: dict[UUID, Future[None]] = {}
        self._lock = threading.Lock()
        #: The search for orphans (a catch-up of the views) runs beside the loop, never in
        #: it: a long catch-up must not make due timers late.
        self._searcher = ThreadPoolExecutor(1, thread_name_prefix="runner-serve-recover")
        self._searching: Future[None] | None = None
        self._beat_at = 0.0  # when this process last said it is alive (monotonic)
        self._versions: dict[str, str] = {}
        #: This loop's row in journal_workers: its own id (a Runner made before a fork
        #: serves in every child; each child's loop is a worker of its own).
        self._worker_id = uuid.uuid4().hex

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT, when called from the main thread),
        then drain: what is being driven gets ``grace`` seconds to reach a stop, then is let
        go at its next call (left running, for any serve() to recover)."""
        restore = self._install_signals() if handle_signals else None
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="runner-serve")
        listener = self.journal.storage.listen(poll_interval=self.poll_interval)
        next_recover = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._heartbeat()
                try:
                    idle = self._round(pool)
                    if self.recover_every and time.monotonic() >= next_recover and (
                            self._searching is None or self._searching.done()):
                        next_recover = time.monotonic() + self.recover_every
                        self._searching = self._searcher.submit(self._recover, pool)
                    # Everything due is skipped (held elsewhere, backing off, all workers
                    # busy): no sooner than the polling interval, or it would spin.
                    timeout = self.poll_interval if idle else self._sleep_for()
                except JournalError as e:  # the database is away: say so, try again later
                    logger.warning("runner: serve() round failed (retrying): %s", e)
                    timeout = self.poll_interval
                # Awake for the next heartbeat, however long the polling interval.
                timeout = min(timeout, max(0.0, self._beat_at + WORKER_HEARTBEAT
                                           - time.monotonic()))
                if timeout > 0 and not self.stopping.is_set():
                    listener.wait(timeout)
        finally:
            listener.close()
            self._drain(pool)
            self._sign_off()
            if restore is not None:
                restore()

    def _heartbeat(self) -> None:
        """Say (every WORKER_HEARTBEAT seconds) that this process serves the journal, with
        the workflows and code versions it runs: ``journal stuck`` tells an execution no
        live process can drive from one waiting for its turn by it."""
        if time.monotonic() - self._beat_at < WORKER_HEARTBEAT:
            return
        if self._beat_at == 0.0:
            self._versions = self.runner.versions()  # fingerprints: worked out once
        self._beat_at = time.monotonic()  # failed or not: tried again at the next beat
        try:
            self.journal.storage.put_worker(WorkerRow(
                runner=self._worker_id, host=socket.gethostname(), pid=os.getpid(),
                started_at=process_started().timestamp(),
                seen_at=time.time(), workflows=self._versions,
            ))
        except JournalError as e:  # never a reason not to serve: only stuck's view suffers
            logger.warning("runner: serve() could not say it is alive: %s", e)

    def _sign_off(self) -> None:
        try:
            self.journal.storage.drop_worker(self._worker_id)
        except JournalError as e:  # it drops out of the live ones by itself
            logger.info("runner: serve() could not sign off: %s", e)

    def stop(self) -> None:
        """Ask the loop to stop taking work and drain (safe from any thread or a signal)."""
        self.stopping.set()

    def _sleep_for(self) -> float:
        """Until the earliest wake-up, at most the polling interval (new waits and signals
        of other processes show up at the latest then; sooner where notifications exist)."""
        due = self.journal.storage.next_due()
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, due - time.time()))

    def _round(self, pool: ThreadPoolExecutor) -> bool:
        """Hand what is due to the workers; True if something was due but all of it was
        skipped (so the loop waits instead of asking again at once)."""
        now = time.time()
        self._forget_finished()
        with self._lock:  # past the ones skipped, so they cannot starve the rest
            limit = self.workers * 25 + len(self._busy) + len(self._inflight)
        due = self.journal.storage.due(now, limit=limit)
        submitted = 0
        for eid, _due, position in due:
            if self.stopping.is_set():
                break
            with self._lock:
                if eid in self._inflight or self._busy.get(eid, 0.0) > time.monotonic():
                    continue
                if len(self._inflight) >= self.workers:
                    break
                self._inflight[eid] = pool.submit(self._wake, eid, position)
                submitted += 1
        return bool(due) and not submitted

    def _recover(self, pool: ThreadPoolExecutor) -> None:
        """Executions left running by a driver that died (their lease is free)."""
        try:
            stale = self.runner.stale_executions(self.recover_after)
        except JournalError as e:
            logger.warning("runner: serve() could not look for orphans (retrying): %s", e)
            return
        for eid in stale:
            if self.stopping.is_set():
                return
            with self._lock:
                if (eid in self._inflight or self._busy.get(eid, 0.0) > time.monotonic()
                        or len(self._inflight) >= self.workers):
                    continue
                self._inflight[eid] = pool.submit(self._wake, eid, None)

    def _forget_finished(self) -> None:
        now = time.monotonic()
        with self._lock:
            for eid in [e for e, f in self._inflight.items() if f.done()]:
                del self._inflight[eid]
            for eid in [e for e, t in self._busy.items() if t <= now]:
                del self._busy[eid]

    # -- one execution -------------------------------------------------------------------------

    def _wake(self, eid: UUID, position: int | None) -> None:
        """Drive one due execution, if no live process does and it is due still."""
        try:
            run = self.runner._wake(eid, position, stale_after=self.recover_after)
        except (WorkflowNotFound, ValueClassMissing, DecodingError, RunnerError) as e:
            logger.error("runner: serve() cannot drive %s here: %s", eid, e)
            self._back_off(eid, BROKEN_BACKOFF)
            return
        except InvalidTransition as e:  # ended meanwhile (its wake-up is gone), or cannot go on
            logger.info("runner: serve() did not drive %s: %s", eid, e)
            self._back_off(eid, BUSY_BACKOFF)
            return
        except JournalError as e:
            logger.warning("runner: serve() could not drive %s (will retry): %s", eid, e)
            self._back_off(eid, BUSY_BACKOFF)
            return
        except Exception:
            logger.exception("runner: serve() failed driving %s", eid)
            self._back_off(eid, BROKEN_BACKOFF)
            return
        if run is None:  # held elsewhere, or not due after all
            self._back_off(eid, BUSY_BACKOFF)
            return
        if run.status in TERMINAL_STATUSES or run.status != RUNNING:
            logger.info("runner: serve() drove %s: %s", eid, run.status)
        if self.on_run is not None:
            self.on_run(run)

    def _back_off(self, eid: UUID, seconds: float) -> None:
        with self._lock:
            self._busy[eid] = time.monotonic() + seconds

    # -- stopping ------------------------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def on_signal(signum: int, frame: object) -> None:
            logger.info("runner: serve() got signal %d: draining", signum)
            self.stop()

        for s in previous:
            signal.signal(s, on_signal)

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        return restore

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        deadline = time.monotonic() + self.grace
        with self._lock:
            futures = list(self._inflight.values())
        for future in futures:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                future.result(timeout=left)
            except Exception:  # logged by _wake
                pass
        if any(not f.done() for f in futures):
            released = self.runner._release_all()
            logger.warning("runner: serve() grace of %.0f s is over: %d execution(s) let go "
                           "at their next call (left running, for a serve() to recover)",
                           self.grace, released)
        # A step still running finishes in its thread (step code is never killed); its
        # engine stops at its next call.
        pool.shutdown(wait=False, cancel_futures=True)
        self._searcher.shutdown(wait=False, cancel_futures=True)
