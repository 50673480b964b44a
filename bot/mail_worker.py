"""Delivering the outbox off the request path: a background thread that a turn only wakes.

No chat turn waits on SMTP: the engine queues mails in the turn's transaction and calls ``wake``
after the commit; this thread sends them (or, later, retries them) while the member already reads
the reply. A hung SMTP server holds up this thread alone. ``serve`` runs one on the embedded
database; in production the Procfile's ``worker`` process (``jsug-bot mail deliver --every``)
delivers instead, and several of them may run at once (the outbox claims each mail once).
"""

from __future__ import annotations

import logging
import threading

from bot.mail import Mailer

log = logging.getLogger("bot.mail")


class MailWorker:
    """Runs ``mailer.deliver_pending`` when woken, and every ``interval`` seconds for retries."""

    def __init__(self, mailer: Mailer, interval: float) -> None:
        self.mailer = mailer
        self.interval = interval
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

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
            try:
                self.mailer.deliver_pending()
            except Exception:  # noqa: BLE001 - a failed run is retried at the next wake or interval
                log.exception("mail delivery run failed; it will be tried again")
            if self._stopping.is_set():
                return
