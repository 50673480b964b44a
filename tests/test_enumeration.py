"""Account enumeration: a turn that may mail tells nobody whether the address is registered.

A password-reset request and a one-time-code request (for the newsletter opt-out and for a
withdrawal) are made for a registered address (tanaka@example.com, a demo member) and an
unregistered one (nobody@example.com), with the SMTP server up, down (nobody listens) and hung
(accepts, never answers), with and without a running delivery worker. Through the composition
root (``build_assistant``) and ``Assistant.handle``, as every channel calls it.

The replies must be identical; the median turn times must differ by less than 2 ms, over at least
30 turns of each kind. The two kinds are measured in adjacent pairs, in random order within each
pair, so that slow drifts of the machine (other processes, the database server's own work) fall
on both alike. With a worker running, each measured turn starts once the worker has had time to
deliver the previous turn's mail (a pause of the same length after every turn, longer only while
the worker is still busy), so that the delivery of one turn's mail is not counted in the next
turn's time. The deterministic part: the turn runs as many statements and computes as many keyed
hashes for either kind (timing only samples that).
"""

from __future__ import annotations

import gc
import hmac
import json
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from scipy.stats import mannwhitneyu
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.faq.index import FaqIndex
from bot.settings import MailSettings, Settings
from tests.api_support import silent_smtp
from tests.conftest import TEST_SECRET
from tests.mail_support import SMTP_HOST, SmtpServer, free_port, start_smtp

REGISTERED = "tanaka@example.com"
UNREGISTERED = "nobody@example.com"
ADDRESSES = (REGISTERED, UNREGISTERED)
TURNS = 30  # of each kind, per round
MAX_ROUNDS = 3  # more turns only when the first ones are inconclusive (a busy machine)
LIMIT_MS = 2.0
SETTLE_SECONDS = 0.015  # with a worker: the pause after every turn
BUSY_CAP_SECONDS = 0.5  # the longest wait for a busy worker


@dataclass(frozen=True)
class Kind:
    """A turn that may queue a mail: the buttons that lead to it (alternating), then the address."""

    name: str
    starts: tuple[str, ...]


KINDS = (
    Kind("password-reset", ("start:password_reset",)),
    Kind("one-time-code", ("start:newsletter_optout", "start:withdrawal_request")),
)


@pytest.fixture(scope="module")
def smtp_up() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smtp_hung() -> Iterator[int]:
    with silent_smtp() as port:
        yield port


@pytest.fixture
def make_assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex,
                   smtp_up: SmtpServer, smtp_hung: int) -> Iterator[Any]:
    built: list[Assistant] = []

    def make(smtp: str, deliver_mail: bool) -> Assistant:
        port = {"up": smtp_up.port, "down": free_port(), "hung": smtp_hung}[smtp]
        # The hourly limits are lifted here: they have tests of their own, and a limit reached
        # would measure the refusal (alike for both, tests/test_limits_under_concurrency.py).
        settings = Settings(database_url=database_url, secret_key=TEST_SECRET,
                            mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=port, timeout_seconds=5),
                            codes_per_hour=10**6, reset_requests_per_hour=10**6, code_requests_overall=10**6)
        assistant = build_assistant(settings, faq=jsug_index, deliver_mail=deliver_mail)
        built.append(assistant)
        return assistant

    yield make
    for assistant in built:
        assistant.close()


class WorkerWatch:
    """Whether the delivery worker is busy with a mail some turn queued (it is woken after the turn).

    A worker waiting on a hung server's socket is idle (it takes no CPU and no database lock), so
    with ``hung`` only the pause counts.
    """

    def __init__(self, assistant: Assistant, hung: bool) -> None:
        self.hung = hung
        self.wakes = self.seen = 0
        self.running = False
        engine, mailer = assistant.engine, assistant.mailer
        wake, deliver = engine.on_mail_queued, mailer.deliver_pending

        def on_mail_queued() -> None:
            self.wakes += 1
            wake()

        def deliver_pending(*args: Any, **kwargs: Any) -> Any:
            self.running, self.seen = True, self.wakes
            try:
                return deliver(*args, **kwargs)
            finally:
                self.running = False

        engine.on_mail_queued = on_mail_queued
        mailer.deliver_pending = deliver_pending  # type: ignore[method-assign]

    def settle(self, since: float) -> None:
        """Pause ``SETTLE_SECONDS`` after a turn, and longer while the worker is still busy."""
        while True:
            now = time.perf_counter()
            busy = not self.hung and (self.running or self.seen < self.wakes)
            if now - since >= BUSY_CAP_SECONDS or (now - since >= SETTLE_SECONDS and not busy):
                return
            time.sleep(0.001)


@dataclass
class Measured:
    times: dict[str, list[float]] = field(default_factory=lambda: {address: [] for address in ADDRESSES})
    replies: dict[str, set[str]] = field(default_factory=lambda: {address: set() for address in ADDRESSES})

    def median_ms(self, address: str) -> float:
        return statistics.median(self.times[address]) * 1000

    @property
    def difference_ms(self) -> float:
        return self.median_ms(REGISTERED) - self.median_ms(UNREGISTERED)

    def summary(self) -> str:
        p = mannwhitneyu(self.times[REGISTERED], self.times[UNREGISTERED]).pvalue
        return (f"median registered {self.median_ms(REGISTERED):.2f} ms, unregistered "
                f"{self.median_ms(UNREGISTERED):.2f} ms (difference {self.difference_ms:+.2f} ms, "
                f"{len(self.times[REGISTERED])} turns each, Mann-Whitney U p={p:.3f})")


def measure(assistant: Assistant, kind: Kind, watch: WorkerWatch | None, label: str) -> Measured:
    measured = Measured()
    for round_number in range(MAX_ROUNDS):
        order = [address for _ in range(TURNS) for address in random.sample(ADDRESSES, 2)]
        gc.collect()
        gc.disable()  # a collection in one turn would be noise, not a difference
        try:
            for number, address in enumerate(order):
                user_ref = f"enum-{label}-{kind.name}-{round_number}-{number}"
                assistant.handle("web", user_ref, action=kind.starts[(number // 2) % len(kind.starts)])
                began = time.perf_counter()
                replies = assistant.handle("web", user_ref, text=address)
                ended = time.perf_counter()
                measured.times[address].append(ended - began)
                measured.replies[address].add(json.dumps([reply.as_dict() for reply in replies], ensure_ascii=False))
                if watch is not None:
                    watch.settle(ended)
        finally:
            gc.enable()
        if abs(measured.difference_ms) < LIMIT_MS:
            break
    return measured


SCENARIOS = [(smtp, worker) for smtp in ("up", "down", "hung") for worker in (False, True)]


@pytest.mark.parametrize(("smtp", "worker"), SCENARIOS,
                         ids=[f"smtp-{smtp}-{'worker' if worker else 'no-worker'}" for smtp, worker in SCENARIOS])
def test_replies_and_turn_times_do_not_depend_on_whether_the_address_is_registered(
    make_assistant: Any, smtp: str, worker: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assistant = make_assistant(smtp, worker)
    watch = WorkerWatch(assistant, hung=smtp == "hung") if worker else None
    for kind in KINDS:
        measured = measure(assistant, kind, watch, f"{smtp}-{worker}")

        assert measured.replies[REGISTERED] == measured.replies[UNREGISTERED], kind.name
        assert len(measured.replies[REGISTERED]) == 1, measured.replies  # the same reply every time
        assert abs(measured.difference_ms) < LIMIT_MS, f"{kind.name}: {measured.summary()}"
        with capsys.disabled():  # the figures, for the record (pytest -s shows them as they come)
            print(f"\n  {assistant.settings.database_url.split(':')[0]} smtp {smtp}, worker {worker}, "
                  f"{kind.name}: {measured.summary()}", end="")


def test_the_turn_does_the_same_work_for_a_registered_and_an_unregistered_address(
    make_assistant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many statements (round trips to the database) and keyed hashes either way: what the
    turn's time is made of, counted instead of timed."""
    assistant = make_assistant("down", False)
    statements: list[str] = []
    event.listen(assistant.database, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_rest: statements.append(statement.split(None, 1)[0]))
    keyed: list[int] = []
    real_hmac = hmac.new

    def counting_hmac(*args: Any, **kwargs: Any) -> Any:
        keyed.append(1)
        return real_hmac(*args, **kwargs)

    monkeypatch.setattr(hmac, "new", counting_hmac)
    work: dict[tuple[str, str], tuple[int, int]] = {}
    for kind in KINDS:
        for start in kind.starts:
            for address in ADDRESSES:
                user_ref = f"work-{start}-{address}"
                assistant.handle("web", user_ref, action=start)
                statements.clear()
                keyed.clear()
                assistant.handle("web", user_ref, text=address)
                work[(start, address)] = (len(statements), len(keyed))
    for kind in KINDS:
        for start in kind.starts:
            assert work[(start, REGISTERED)] == work[(start, UNREGISTERED)], (start, work)
