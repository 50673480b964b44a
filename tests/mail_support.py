"""A real SMTP server (aiosmtpd) for the mail tests, and members created directly in the database.

Its fixtures (``smtp_server``, ``members``) reach every test module through ``pytest_plugins`` in
``tests/conftest.py``; modules import only the helpers and constants.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session, sessionmaker

from bot.mail import Mailer
from bot.settings import MailSettings, Settings
from bot.storage.models import Company, Member, Preferences

SMTP_HOST = "127.0.0.1"
CODE = re.compile(r"確認コード: (\d{6})")


def free_port() -> int:
    """A port nobody listens on (right now): bind to 0, read the port, let it go."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((SMTP_HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every mail it accepts; may refuse recipients or dawdle."""

    refuse: set[str] = field(default_factory=set)
    delay_seconds: float = 0.0
    envelopes: list[Any] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(envelope.content, policy=policy.default) for envelope in self.envelopes]

    def to(self, address: str, subject: str | None = None) -> list[EmailMessage]:
        """Mails to ``address`` (whose subject contains ``subject``, when given)."""
        return [m for m in self.messages if m["To"] == address and (subject is None or subject in m["Subject"])]

    def code_for(self, address: str) -> str:
        """The newest one-time code mailed to ``address``."""
        mails = self.to(address, "確認コード")
        assert mails, f"no code mail to {address} (got: {[m['To'] for m in self.messages]})"
        found = CODE.search(body(mails[-1]))
        assert found, body(mails[-1])
        return found.group(1)


def body(mail: EmailMessage) -> str:
    return mail.get_content().replace("\r\n", "\n")


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    controller: Controller

    def settings(self, **mail: Any) -> Settings:
        return Settings(mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=self.port, **mail))

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(port: int | None = None, inbox: Inbox | None = None, **options: Any) -> SmtpServer:
    inbox = inbox or Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname=SMTP_HOST, port=port, **options)
    controller.start()
    return SmtpServer(port, inbox, controller)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def inbox(smtp_server: SmtpServer) -> Inbox:
    """The SMTP server's inbox, emptied for this test (modules may share one server, module-scoped)."""
    smtp_server.inbox.envelopes.clear()
    return smtp_server.inbox


def add_member(
    session: Session, company: Company, login_id: str, email: str, *, representative: bool = False,
    status: str = "active",
) -> Member:
    member = Member(
        company=company, name=f"{login_id} 様", email=email, login_id=login_id, is_representative=representative,
        status=status,
    )
    session.add(member)
    session.add(Preferences(member=member))
    return member


@dataclass(frozen=True)
class Members:
    """Ids of the test members: Yamada owns two accounts on one address, Sato one, Old is withdrawn."""

    yamada_personal: int
    yamada_representative: int
    sato: int
    withdrawn: int


YAMADA = "yamada@example.com"
SATO = "sato@example.co.jp"
WITHDRAWN = "old@example.com"


@pytest.fixture
def members(sessions: sessionmaker[Session]) -> Members:
    with sessions.begin() as session:
        acme = Company(name="アクメ株式会社")
        beta = Company(name="ベータ工業株式会社", membership_class="賛助会員")
        session.add_all([acme, beta])
        created = Members(
            yamada_personal=_id(session, add_member(session, acme, "yamada", YAMADA)),
            yamada_representative=_id(session, add_member(session, beta, "beta-rep", "Yamada@Example.com",
                                                          representative=True)),
            sato=_id(session, add_member(session, acme, "sato", SATO)),
            withdrawn=_id(session, add_member(session, acme, "old", WITHDRAWN, status="withdrawn")),
        )
    return created


def _id(session: Session, member: Member) -> int:
    session.flush()
    return member.id


def mailer_for(settings: Settings, sessions: sessionmaker[Session]) -> Mailer:
    return Mailer(settings.mail, sessions)
