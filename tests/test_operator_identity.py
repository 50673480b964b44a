"""Who acts at the terminal, and what the audit log says about it.

``jsug-bot chat --as EMAIL`` lets an operator act for a member without a one-time code. The
operator is the OS account of the process (not ``LOGNAME``/``USER``, which anyone sets), kept on the
conversation (``assumed_by``), and every change made there is recorded as the operator's on the
member's behalf (``operator:NAME for member:ID``), which ``members show`` lists with the member's
history. Without ``--trust-identity`` this works only on the demo database ``db seed-demo`` made,
not on any SQLite file. Each ``chat`` run is a conversation of its own. A preferences row the
newsletter handler has to create is audited like any other change.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.cli import main
from bot.faq.index import FaqIndex
from bot.messages import message
from bot.settings import MailSettings, Settings
from bot.storage.members import import_members, is_demo_database, seed_demo
from bot.storage.models import AuditLog, Conversation, Member, OutboxMail, Preferences, RequestEvent, SecretariatRequest
from tests.conftest import TEST_SECRET
from tests.mail_support import SMTP_HOST, SmtpServer

TANAKA = "tanaka@example.com"  # demo-tanaka: newsletter and postal DM on
STOP_BOTH = ["メルマガを止めてください", "!start:newsletter_optout", "!stop:both", "!confirm"]
ENVIRONMENT_NAMES = ("LOGNAME", "USER", "LNAME", "USERNAME")
PLAIN_CSV = (
    "company,membership_class,name,email,login_id,is_representative,newsletter,postal_dm\n"
    "株式会社アルファ,法人会員,青木 一郎,aoki@example.com,t-aoki,true,true,true\n"
)


# --- the command's surroundings --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABASE_URL for the command, a real SMTP server (so no mail is logged instead), no other JSUG_
    settings from outside, and environment variables that claim to be someone else."""
    for name in list(os.environ):
        if name.startswith("JSUG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JSUG_SECRET_KEY", TEST_SECRET.get_secret_value())
    monkeypatch.setenv("JSUG_MAIL__SMTP_HOST", SMTP_HOST)
    monkeypatch.setenv("JSUG_MAIL__SMTP_PORT", str(smtp_server.port))
    for name in ENVIRONMENT_NAMES:
        monkeypatch.setenv(name, "mallory")
    return database_url


@pytest.fixture
def os_account(monkeypatch: pytest.MonkeyPatch) -> str:
    """The OS account the process runs as, as ``pwd`` reports it (here: a stand-in the test names)."""
    real = pwd.getpwuid

    def getpwuid(uid: int) -> Any:
        return SimpleNamespace(pw_name="suzuki-ops") if uid == os.getuid() else real(uid)

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    return "suzuki-ops"


@pytest.fixture
def demo(sessions: sessionmaker[Session], cli_env: str) -> sessionmaker[Session]:
    with sessions.begin() as session:
        assert seed_demo(session) is True
    return sessions


@pytest.fixture
def plain(sessions: sessionmaker[Session], cli_env: str, tmp_path: Path) -> sessionmaker[Session]:
    """A migrated database (``db upgrade``) with a member list imported: not the demo, SQLite or not."""
    path = tmp_path / "members.csv"
    path.write_text(PLAIN_CSV, encoding="utf-8")
    with sessions.begin() as session:
        import_members(session, path)
    return sessions


def chat(tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], *options: str) -> tuple[int, list[dict], str]:
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(["chat", *options, "--script", str(script), "--json"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def audit(sessions: sessionmaker[Session], *actions: str) -> list[AuditLog]:
    with sessions() as session:
        query = select(AuditLog).order_by(AuditLog.id)
        if actions:
            query = query.where(AuditLog.action.in_(actions))
        return list(session.scalars(query))


def member_id(sessions: sessionmaker[Session], login_id: str) -> int:
    with sessions() as session:
        return session.scalars(select(Member.id).where(Member.login_id == login_id)).one()


def conversations(sessions: sessionmaker[Session]) -> list[Conversation]:
    with sessions() as session:
        return list(session.scalars(select(Conversation).order_by(Conversation.id)))


def preferences(sessions: sessionmaker[Session], login_id: str) -> tuple[bool, bool]:
    with sessions() as session:
        prefs = session.get(Preferences, member_id(sessions, login_id))
        assert prefs is not None
        return prefs.newsletter, prefs.postal_dm


# --- the operator is the OS account, acting on the member's behalf ---------------------------------------------


def test_chat_as_names_the_os_account_and_records_the_change_on_the_members_behalf(
    demo: sessionmaker[Session], os_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, turns, err = chat(tmp_path, capsys, STOP_BOTH, "--as", TANAKA)

    assert code == 0, err
    assert turns[0]["replies"][0]["faq_id"] == "newsletter-dm-stop"
    assert turns[1]["replies"][0]["text"] == message("identity_verified")
    assert preferences(demo, "demo-tanaka") == (False, False)
    tanaka = member_id(demo, "demo-tanaka")
    operator = f"operator:{os_account}"
    [conversation] = conversations(demo)
    assert conversation.assumed_by == operator
    [assumed] = audit(demo, "identity_assumed")
    assert (assumed.actor, assumed.after) == (operator, {"email": TANAKA})
    [verified] = audit(demo, "identity_verified")
    [changed] = audit(demo, "preferences_changed")
    assert verified.actor == changed.actor == f"{operator} for member:{tanaka}"
    assert (changed.entity, changed.entity_id) == ("member", tanaka)
    actors = {entry.actor for entry in audit(demo)}
    assert f"member:{tanaka}" not in actors  # the member did not prove who they are: never their own change
    assert not any("mallory" in actor for actor in actors)


def test_chat_as_reads_the_real_os_account_not_logname_or_user(
    demo: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = chat(tmp_path, capsys, STOP_BOTH, "--as", TANAKA)

    assert code == 0, err
    try:
        account = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry for this uid (some containers)
        account = f"uid-{os.getuid()}"
    [assumed] = audit(demo, "identity_assumed")
    assert assumed.actor == f"operator:{account}" != "operator:mallory"
    assert conversations(demo)[0].assumed_by == f"operator:{account}"


def test_members_show_lists_what_an_operator_did_on_the_members_behalf(
    demo: sessionmaker[Session], os_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chat(tmp_path, capsys, STOP_BOTH, "--as", TANAKA)[0] == 0

    assert main(["members", "show", TANAKA, "--json"]) == 0
    [account] = json.loads(capsys.readouterr().out)
    by_operator = [entry for entry in account["audit"] if entry["acted_by"] == f"operator:{os_account}"]
    assert {entry["action"] for entry in by_operator} == {"identity_verified", "preferences_changed"}
    assert all(entry["on_behalf_of"] == "demo-tanaka" for entry in by_operator)
    [change] = [entry for entry in by_operator if entry["action"] == "preferences_changed"]
    assert change["after"] == {"newsletter": False, "postal_dm": False}
    import_entry = account["audit"][-1]
    assert (import_entry["acted_by"], import_entry["on_behalf_of"]) == ("seed-demo", None)

    assert main(["members", "show", TANAKA]) == 0
    shown = capsys.readouterr().out
    line = next(line for line in shown.splitlines() if "preferences_changed" in line)
    assert f"operator:{os_account} (demo-tanaka の代理 / on behalf of demo-tanaka) via terminal" in line
    assert "newsletter: true → false" in line


def test_a_request_filed_by_an_operator_says_so_in_its_history_and_the_secretariats_mail(
    demo: sessionmaker[Session], os_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = ["!start:withdrawal_request", "!kind:user_deregistration", "!skip", "!confirm"]
    code, turns, err = chat(tmp_path, capsys, script, "--as", TANAKA)
    assert code == 0, err
    assert "受付番号" in turns[-1]["replies"][0]["text"]

    operator = f"operator:{os_account}"
    with demo() as session:
        request = session.scalars(select(SecretariatRequest)).one()
        [event] = session.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id)).all()
        mail = session.scalars(select(OutboxMail).where(OutboxMail.recipient == "secretariat@jsug.org")).one()
    tanaka = member_id(demo, "demo-tanaka")
    assert event.actor == f"{operator} for member:{tanaka}"
    assert request.details["acted_by_operator"] == operator
    assert f"acted_by_operator: {operator}" in mail.body.split("\n")


def test_assume_identity_refuses_an_operator_that_is_not_one(
    sessions: sessionmaker[Session], database_url: str, jsug_index: FaqIndex
) -> None:
    assistant = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                                deliver_mail=False)
    try:
        for operator in ("mallory", "operator:", "operator:a b", "operator:" + "x" * 60, "member:1"):
            with pytest.raises(ValueError):
                assistant.assume_identity("terminal", "as:1", TANAKA, operator=operator)
        with pytest.raises(ValueError):
            assistant.assume_identity("terminal", "as:1", "not an address", operator="operator:suzuki")
    finally:
        assistant.close()
    assert conversations(sessions) == []


# --- "the demo database" is the one `db seed-demo` made -------------------------------------------------------


def test_chat_as_without_trust_identity_is_refused_on_a_database_that_is_not_the_demo(
    plain: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(audit(plain))

    code, turns, err = chat(tmp_path, capsys, STOP_BOTH, "--as", "aoki@example.com")

    assert code == 2 and turns == []
    assert "--trust-identity" in err and "seed-demo" in err
    assert conversations(plain) == [] and len(audit(plain)) == before
    assert preferences(plain, "t-aoki") == (True, True)


def test_chat_as_with_trust_identity_acts_on_any_database_as_the_operator(
    plain: sessionmaker[Session], os_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = chat(tmp_path, capsys, STOP_BOTH, "--as", "aoki@example.com", "--trust-identity")

    assert code == 0, err
    assert preferences(plain, "t-aoki") == (False, False)
    [changed] = audit(plain, "preferences_changed")
    assert changed.actor == f"operator:{os_account} for member:{member_id(plain, 't-aoki')}"


def test_a_demo_database_is_no_longer_the_demo_once_real_members_are_imported(
    demo: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(PLAIN_CSV, encoding="utf-8")
    with demo.begin() as session:
        assert is_demo_database(session)
        import_members(session, path)
    with demo() as session:
        assert not is_demo_database(session)

    code, _, err = chat(tmp_path, capsys, STOP_BOTH, "--as", TANAKA)
    assert code == 2 and "--trust-identity" in err


def test_seeding_the_demo_into_a_real_member_list_does_not_make_it_the_demo(plain: sessionmaker[Session]) -> None:
    with plain.begin() as session:
        assert seed_demo(session) is False
    with plain() as session:
        assert not is_demo_database(session)
        assert session.scalar(select(func.count()).select_from(Member)) == 1 + 7


# --- each run is a conversation of its own ---------------------------------------------------------------------


def test_each_chat_run_is_a_conversation_of_its_own_not_the_os_accounts(
    demo: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first, err = chat(tmp_path, capsys, ["担当者と話したい"])
    assert code == 0, err
    assert first[0]["replies"][-1]["text"] != message("greeting")  # the inquiry now waits for its details

    code, second, err = chat(tmp_path, capsys, ["こんにちは"])
    assert code == 0, err
    assert second[0]["replies"] == [{"kind": "text", "text": message("greeting")}]  # not the inquiry's details

    refs = [c.user_ref for c in conversations(demo)]
    assert len(refs) == len(set(refs)) == 2
    assert all(re.fullmatch(r"local:[0-9a-f]{16}", ref) for ref in refs), refs  # random, not an account name
    with demo() as session:
        assert session.scalar(select(func.count()).select_from(SecretariatRequest)) == 0


def test_each_chat_as_run_is_a_conversation_of_its_own(
    demo: sessionmaker[Session], os_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chat(tmp_path, capsys, ["メルマガを止めてください"], "--as", TANAKA)[0] == 0
    assert chat(tmp_path, capsys, ["こんにちは"], "--as", TANAKA)[0] == 0

    found = conversations(demo)
    assert len({c.user_ref for c in found}) == 2
    assert all(re.fullmatch(r"as:[0-9a-f]{16}", c.user_ref) for c in found)  # not the member's address
    assert [c.assumed_by for c in found] == [f"operator:{os_account}"] * 2


# --- a preferences row created on the way is audited -----------------------------------------------------------


@pytest.fixture
def assistant(demo: sessionmaker[Session], database_url: str, jsug_index: FaqIndex,
              smtp_server: SmtpServer) -> Iterator[Assistant]:
    settings = Settings(database_url=database_url, secret_key=TEST_SECRET,
                        mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_server.port))
    built = build_assistant(settings, faq=jsug_index, deliver_mail=False)
    yield built
    built.close()


def without_preferences(sessions: sessionmaker[Session], login_id: str) -> int:
    found = member_id(sessions, login_id)
    with sessions.begin() as session:
        session.execute(delete(Preferences).where(Preferences.member_id == found))
    return found


def test_a_preferences_row_created_implicitly_is_audited_and_shown(
    assistant: Assistant, demo: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    tanaka = without_preferences(demo, "demo-tanaka")
    assistant.assume_identity("terminal", "as:prefs", TANAKA, operator="operator:suzuki")

    assistant.handle("terminal", "as:prefs", text="メルマガを止めてください")  # the FAQ answer and the offer
    replies = assistant.handle("terminal", "as:prefs", action="start:newsletter_optout")
    assert message("identity_verified") in [reply.text for reply in replies]

    [created] = audit(demo, "preferences_created")
    assert (created.actor, created.channel) == (f"operator:suzuki for member:{tanaka}", "terminal")
    assert (created.entity, created.entity_id, created.before) == ("preferences", tanaka, None)
    assert created.after == {"newsletter": True, "postal_dm": True, "interest_committees": [], "regional_forums": []}

    assert main(["members", "show", TANAKA, "--json"]) == 0
    [account] = json.loads(capsys.readouterr().out)
    assert account["audit"][0]["action"] == "preferences_created"
    assert account["preferences"]["newsletter"] is True


def test_a_verified_member_creating_their_preferences_row_is_audited_as_themselves(
    assistant: Assistant, demo: sessionmaker[Session], smtp_server: SmtpServer
) -> None:
    tanaka = without_preferences(demo, "demo-tanaka")
    user = "web-prefs-1"

    def say(**turn: str) -> list[str]:
        replies = assistant.handle("web", user, **turn)
        assistant.mailer.deliver_pending()
        return [reply.text for reply in replies]

    assert say(action="start:newsletter_optout") == [message("identity_intro")]
    say(text=TANAKA)
    assert message("identity_verified") in say(text=smtp_server.inbox.code_for(TANAKA))

    [created] = audit(demo, "preferences_created")
    assert (created.actor, created.entity, created.entity_id) == (f"member:{tanaka}", "preferences", tanaka)
