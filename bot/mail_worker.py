"""Delivering the outbox off the request path: a background thread that a turn only wakes, and the
loop of the ``jsug-bot mail deliver --every`` worker process.

No chat turn waits on SMTP: the engine queues mails in the turn's transaction and calls ``wake``
after the commit; this thread sends them (or, later, retries them) while the member already reads
the reply. A hung SMTP server holds up this thread alone. ``serve`` runs one on the embedded
database; in production the Procfile's ``worker`` process (``jsug-bot mail deliver --every``)
delivers instead, and several of them may run at once (the outbox claims each mail once).

Neither gives up on a failure that may pass: a database outage or an SMTP error is logged and the
next run tries again. A missing SMTP configuration does not pass by itself: the worker process
stops on it (exit status 2), the in-process thread says so once and keeps serving the chat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from bot.mail import DeliveryReport, Mailer, MailNotConfiguredError

log = logging.getLogger("bot.mail")


class MailWorker:
    """Runs ``mailer.deliver_pending`` when woken, and every ``interval`` seconds for retries."""

    def __init__(self, mailer: Mailer, interval: float) -> None:
        self.mailer = mailer
        self.interval = interval
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_not_configured = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mail-worker", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wanted.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Deliver what is pending once more, then stop; a thread stuck on a hung server is left to
        die with the process (its mails stay pending for the next run, nothing is lost)."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            self._wanted.wait(self.interval)
            self._wanted.clear()
            self.run_once()
            if self._stopping.is_set():
                return

    def run_once(self) -> DeliveryReport | None:
        """One delivery run that never raises: the thread must outlive every failure."""
        try:
            report = self.mailer.deliver_pending()
        except MailNotConfiguredError as exc:
            if not self._said_not_configured:  # once, not every few seconds: it will not fix itself
                self._said_not_configured = True
                log.error("%s", exc)
            return None
        except SQLAlchemyError as exc:
            log.warning("mail delivery run failed: the database is unavailable (%s); it will be tried again",
                        type(exc).__name__)
            return None
        except Exception:  # noqa: BLE001 - a failed run is retried at the next wake or interval
            log.exception("mail delivery run failed; it will be tried again")
            return None
        self._said_not_configured = False
        return report


def deliver_every(
    mailer: Mailer,
    every: float,
    on_report: Callable[[DeliveryReport], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    runs: int | None = None,
) -> None:
    """The worker process: deliver, wait ``every`` seconds, again; ``runs`` bounds it (tests).

    A database error (an outage, a failover, a restart) ends one run, not the worker: it is logged
    as a warning, by its class only (a message could quote SQL), and the next run tries again.
    ``MailNotConfiguredError`` is not caught: no retry can fix a missing SMTP host.
    """
    done = 0
    while True:
        try:
            report = mailer.deliver_pending()
        except SQLAlchemyError as exc:
            log.warning("mail delivery: the database is unavailable (%s); trying again in %g s",
                        type(exc).__name__, every)
        else:
            on_report(report)
        done += 1
        if runs is not None and done >= runs:
            return
        sleep(every)
