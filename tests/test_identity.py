"""Who a member is: one-time codes mailed through a real SMTP server, Slack links, passwords (argon2id,
the legacy scrypt hashes, the policy, signing in)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot import passwords
from bot.identity import (
    ADDRESS_PREFIX,
    CodeCheck,
    email_hash,
    issue_code,
    link_slack_user,
    members_by_email,
    parse_email,
    slack_members,
    verify_code,
)
from bot.mail import Mailer
from bot.passwords import (
    PasswordPolicyError,
    authenticate,
    check_password_policy,
    common_passwords,
    hash_password,
    needs_rehash,
    verify_password,
)
from bot.settings import Settings
from bot.storage.models import (
    AuditLog,
    ChannelIdentity,
    Member,
    OneTimeCode,
    OutboxMail,
)
from tests.conftest import TEST_SECRET
from tests.mail_support import SATO, WITHDRAWN, YAMADA, Members, SmtpServer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
CODE = re.compile(r"確認コード: (\d{6})")


@pytest.fixture
def settings(smtp_server: SmtpServer) -> Settings:
    return smtp_server.settings().model_copy(update={"secret_key": TEST_SECRET})


@pytest.fixture
def mailer(settings: Settings, sessions: sessionmaker[Session]) -> Mailer:
    return Mailer(settings.mail, sessions)


def request_code(sessions, mailer, settings, email: str, user_ref: str = "web-1", now: datetime = NOW) -> None:
    with sessions.begin() as session:
        assert issue_code(session, mailer, settings, "web", user_ref, email, now) is None


def mailed_code(mailer: Mailer, smtp_server: SmtpServer) -> str:
    """Deliver the queued mails and read the newest code out of the inbox."""
    mailer.deliver_pending()
    body = smtp_server.inbox.messages[-1].get_content()
    match = CODE.search(body)
    assert match, body
    return match.group(1)


def check(sessions, settings, code: str, user_ref: str = "web-1", now: datetime = NOW) -> CodeCheck:
    with sessions.begin() as session:
        return verify_code(session, settings, "web", user_ref, code, now)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# -- addresses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("yamada@example.com", "yamada@example.com"),
        ("  Yamada@Example.COM \n", "Yamada@Example.COM"),
        ("ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "yamada@example.com"),  # typed with a Japanese input method
        ("o'brien+jsug@mail.example.co.jp", "o'brien+jsug@mail.example.co.jp"),
        ("yamada", None),
        ("yamada@example", None),
        ("yamada@@example.com", None),
        ("yamada @example.com", None),
        ("yamada@example.com, sato@example.co.jp", None),
        ("' OR '1'='1", None),
        ("x@example.com'; DROP TABLE members; --", None),
        ("<script>alert(1)</script>@example.com", None),
        ('"><img src=x onerror=alert(1)>', None),
        ("山田@例え.jp", None),
        ("", None),
        (None, None),
        ("a" * 310 + "@example.com", None),
    ],
)
def test_parse_email(typed: str | None, expected: str | None) -> None:
    assert parse_email(typed) == expected


def test_members_by_email_is_case_insensitive_and_only_active(sessions, members: Members) -> None:
    with sessions() as session:
        assert [m.id for m in members_by_email(session, "YAMADA@example.COM")] == [
            members.yamada_personal, members.yamada_representative]
        assert [m.id for m in members_by_email(session, f" {SATO} ")] == [members.sato]
        assert members_by_email(session, WITHDRAWN) == []
        assert members_by_email(session, "nobody@example.com") == []


SECRET = TEST_SECRET.get_secret_value().encode()


def test_email_hash_ignores_case_and_blanks() -> None:
    assert email_hash(" Yamada@Example.com", SECRET) == email_hash("yamada@example.com", SECRET)
    assert email_hash("ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", SECRET) == email_hash("yamada@example.com", SECRET)
    assert len(email_hash("yamada@example.com", SECRET)) == 64


def test_email_hash_is_keyed_with_the_server_secret() -> None:
    keyed = email_hash(YAMADA, SECRET)
    assert keyed != hashlib.sha256(YAMADA.encode()).hexdigest()  # nobody can recompute it from a guess
    assert keyed != email_hash(YAMADA, b"another-secret-" + b"y" * 40)
    assert keyed == hmac.new(SECRET, f"address:{YAMADA}".encode(), hashlib.sha256).hexdigest()


# -- one-time codes ------------------------------------------------------------------------------


def test_the_mailed_code_verifies_once(sessions, mailer, settings, smtp_server, members: Members) -> None:
    request_code(sessions, mailer, settings, "Yamada@Example.com")
    code = mailed_code(mailer, smtp_server)
    [message] = smtp_server.inbox.messages  # one mail, though the address has two accounts
    assert message["To"] == YAMADA and message["Subject"] == "【JSUG】確認コードのお知らせ"
    with sessions() as session:
        stored = session.scalars(select(OneTimeCode)).one()
        assert code not in stored.code_hash and len(stored.code_hash) == 64

    assert check(sessions, settings, code) == CodeCheck(True, YAMADA, "ok")
    assert check(sessions, settings, code) == CodeCheck(False, None, "none")  # single use


def test_a_code_typed_in_full_width_digits_is_accepted(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO)
    code = mailed_code(mailer, smtp_server)
    full_width = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert check(sessions, settings, f" {full_width} ").ok


def test_the_fifth_wrong_code_locks_it_even_for_the_right_code(
    sessions, mailer, settings, smtp_server, members
) -> None:
    request_code(sessions, mailer, settings, SATO)
    code = mailed_code(mailer, smtp_server)
    wrong = other_code(code)

    reasons = [check(sessions, settings, wrong).reason for _ in range(settings.code_attempts)]

    assert reasons == ["wrong"] * (settings.code_attempts - 1) + ["too_many"]
    assert check(sessions, settings, code) == CodeCheck(False, None, "too_many")


def test_the_right_code_on_the_last_attempt_still_counts(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO)
    code = mailed_code(mailer, smtp_server)
    for _ in range(settings.code_attempts - 1):
        assert check(sessions, settings, other_code(code)).reason == "wrong"
    assert check(sessions, settings, code).ok


def test_an_expired_code_is_refused(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO)
    code = mailed_code(mailer, smtp_server)
    later = NOW + timedelta(minutes=settings.code_minutes)
    assert check(sessions, settings, code, now=later) == CodeCheck(False, None, "expired")
    assert check(sessions, settings, code, now=later - timedelta(seconds=1)).ok


def test_a_user_ref_without_a_code_gets_none(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO, user_ref="web-1")
    code = mailed_code(mailer, smtp_server)
    assert check(sessions, settings, code, user_ref="web-2") == CodeCheck(False, None, "none")
    with sessions.begin() as session:  # the same user on another channel has no code either
        assert verify_code(session, settings, "terminal", "web-1", code, NOW).reason == "none"


def test_a_new_code_replaces_the_old_one(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO)
    old = mailed_code(mailer, smtp_server)
    request_code(sessions, mailer, settings, SATO, now=NOW + timedelta(minutes=1))
    new = mailed_code(mailer, smtp_server)
    if old == new:
        pytest.skip("the two random codes happen to be equal")

    assert check(sessions, settings, old).reason == "wrong"
    assert check(sessions, settings, new).ok


def test_an_unregistered_address_gets_no_mail_and_answers_like_a_member(
    sessions, mailer, settings, smtp_server, members
) -> None:
    for email, user_ref in ((SATO, "member"), ("nobody@example.com", "stranger"), (WITHDRAWN, "withdrawn")):
        request_code(sessions, mailer, settings, email, user_ref=user_ref)
    mailer.deliver_pending()

    assert [message["To"] for message in smtp_server.inbox.messages] == [SATO]
    for user_ref in ("member", "stranger", "withdrawn"):  # guesses fare the same, registered or not
        reasons = [check(sessions, settings, "000000", user_ref=user_ref).reason for _ in range(5)]
        assert reasons == ["wrong"] * 4 + ["too_many"]
    with sessions() as session:  # the stranger's address is not kept
        stored = session.scalars(select(OneTimeCode.email).order_by(OneTimeCode.id)).all()
        assert stored == [SATO, "", ""]


def test_text_that_is_no_address_behaves_like_an_unregistered_one(sessions, mailer, settings, members) -> None:
    request_code(sessions, mailer, settings, "'; DROP TABLE members; --")
    assert check(sessions, settings, "123456").reason == "wrong"
    with sessions() as session:
        assert session.scalar(select(func.count(OutboxMail.id))) == 0
        assert len(members_by_email(session, SATO)) == 1


def test_a_stored_code_hash_cannot_be_recomputed_without_the_secret(
    sessions, mailer, settings, smtp_server, members
) -> None:
    request_code(sessions, mailer, settings, SATO)
    code = mailed_code(mailer, smtp_server)
    with sessions() as session:
        row = session.scalars(select(OneTimeCode)).one()

    # Keyed by the secret and the row: what the server computes, and only it.
    assert row.code_hash == hmac.new(SECRET, f"one-time-code:{row.id}:{code}".encode(), hashlib.sha256).hexdigest()
    # Whoever reads the table (a backup, a log of its rows) and knows the public row id but not the
    # secret tries all million codes in a second; none of their candidates matches.
    row_key = f"one-time-code:{row.id}".encode()
    found = [candidate for candidate in (f"{n:06d}" for n in range(10**6))
             if hmac.digest(row_key, candidate.encode(), "sha256").hex() == row.code_hash]
    assert found == []
    for unkeyed in (hashlib.sha256(code.encode()).hexdigest(), hashlib.sha256(f"{row.id}:{code}".encode()).hexdigest()):
        assert unkeyed != row.code_hash


def test_the_outbox_keeps_no_code_in_the_body(sessions, mailer, settings, smtp_server, members) -> None:
    request_code(sessions, mailer, settings, SATO)
    with sessions() as session:
        [pending] = session.scalars(select(OutboxMail)).all()
        assert "{{secret}}" in pending.body and not CODE.search(pending.body)
    code = mailed_code(mailer, smtp_server)
    with sessions() as session:
        [sent] = session.scalars(select(OutboxMail)).all()
    assert sent.status == "sent" and code not in sent.body and sent.secret is None


def test_each_code_request_is_audited_by_the_keyed_address_only(
    sessions, mailer, settings, smtp_server, members: Members
) -> None:
    for email, user_ref in ((SATO, "member"), ("nobody@example.com", "stranger"), (YAMADA, "yamada")):
        request_code(sessions, mailer, settings, email, user_ref=user_ref)
    codes = [match.group(1) for message in delivered_all(mailer, smtp_server)
             if (match := CODE.search(message.get_content()))]

    with sessions() as session:
        entries = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
        code_ids = session.scalars(select(OneTimeCode.id).order_by(OneTimeCode.id)).all()
    assert [(e.action, e.actor, e.entity, e.entity_id) for e in entries] == [
        ("one_time_code_requested", "web:member", "member", members.sato),
        ("one_time_code_requested", "web:stranger", "address", None),
        ("one_time_code_requested", "web:yamada", "member", members.yamada_personal),  # shown on both accounts
        ("one_time_code_requested", "web:yamada", "member", members.yamada_representative),
    ]
    assert [e.after for e in entries[:2]] == [
        {"address": email_hash(SATO, SECRET)[:ADDRESS_PREFIX], "code_id": code_ids[0], "mailed": True},
        {"address": email_hash("nobody@example.com", SECRET)[:ADDRESS_PREFIX], "code_id": code_ids[1], "mailed": False},
    ]
    written = json.dumps([e.after for e in entries])
    assert len(codes) == 2 and not any(code in written for code in codes)
    assert "@" not in written and hashlib.sha256(SATO.encode()).hexdigest()[:ADDRESS_PREFIX] not in written


def test_log_lines_name_addresses_by_their_keyed_hash_only(
    sessions, mailer, settings, smtp_server, members, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    addresses = (SATO, "nobody@example.com")
    for number, email in enumerate(addresses):
        request_code(sessions, mailer, settings, email, user_ref=f"web-{number}")
    for attempt in range(settings.codes_per_hour + 1):  # and the hourly limit's line
        request_code(sessions, mailer, settings, SATO, user_ref=f"web-limit-{attempt}")
    mailer.deliver_pending()

    logged = "\n".join(record.getMessage() for record in caplog.records  # the assistant's, not the SMTP server's
                        if record.name.startswith(("bot", "handlers")))
    for email in addresses:
        plain = hashlib.sha256(email.encode()).hexdigest()
        assert plain[:ADDRESS_PREFIX] not in logged and email not in logged
        assert email_hash(email, SECRET)[:ADDRESS_PREFIX] in logged
    assert "hourly limit reached" in logged


def delivered_all(mailer: Mailer, smtp_server: SmtpServer) -> list:
    mailer.deliver_pending()
    return smtp_server.inbox.messages


# -- Slack ---------------------------------------------------------------------------------------


def test_a_slack_user_is_linked_by_the_verified_email_of_the_profile(sessions, members: Members) -> None:
    with sessions.begin() as session:
        linked = link_slack_user(session, "U123", "YAMADA@example.com", NOW)
        assert [m.id for m in linked] == [members.yamada_personal, members.yamada_representative]
    with sessions.begin() as session:  # linking again changes nothing
        assert len(link_slack_user(session, "U123", YAMADA, NOW + timedelta(days=1))) == 2

    with sessions() as session:
        assert [m.login_id for m in slack_members(session, "U123")] == ["yamada", "beta-rep"]
        assert slack_members(session, "U999") == []
        link = session.scalars(select(ChannelIdentity)).one()
        assert (link.channel, link.external_id, link.member_id) == ("slack", "U123", members.yamada_personal)
        assert [entry.action for entry in session.scalars(select(AuditLog))] == ["slack_linked"]


def test_the_slack_link_follows_the_profile_and_goes_when_no_account_matches(sessions, members: Members) -> None:
    with sessions.begin() as session:
        link_slack_user(session, "U123", YAMADA, NOW)
    with sessions.begin() as session:
        assert [m.id for m in link_slack_user(session, "U123", SATO, NOW)] == [members.sato]
    with sessions() as session:
        assert [m.id for m in slack_members(session, "U123")] == [members.sato]

    for address in ("nobody@example.com", WITHDRAWN, None, "not an address"):
        with sessions.begin() as session:
            assert link_slack_user(session, "U123", address, NOW) == []
        with sessions() as session:
            assert slack_members(session, "U123") == []
            assert session.scalar(select(func.count(ChannelIdentity.id))) == 0
    with sessions() as session:
        actions = [entry.action for entry in session.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions == ["slack_linked", "slack_linked", "slack_unlinked"]
        assert YAMADA not in json.dumps([entry.after for entry in session.scalars(select(AuditLog))])


# -- passwords -----------------------------------------------------------------------------------

# Made by the earlier code (bot/identity.py's scrypt hash_password) from "ｃｏｒｒｅｃｔ horse 7".
LEGACY_PASSWORD = "correct horse 7"
LEGACY_HASH = "scrypt$32768$8$1$yiFF9K7dzzTyBtquAnwa8w==$1pWchkXdnxLUegm3EOH/BgYCoxY1ZhhVkmnoar7CD70="
GOOD_PASSWORD = "Ume-no-hana-2026"


def test_password_hashes_are_salted_argon2id_and_verify() -> None:
    first, second = hash_password("correct horse 7"), hash_password("correct horse 7")
    assert first != second  # a fresh salt each time
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and second.startswith("$argon2id$")
    assert "correct horse" not in first
    assert verify_password("correct horse 7", first) and verify_password("correct horse 7", second)
    assert not verify_password("correct horse 8", first)
    assert verify_password("ｃｏｒｒｅｃｔ　ｈｏｒｓｅ　７", first)  # typed in full width: the same password (NFKC)
    assert not needs_rehash(first)


def test_legacy_scrypt_hashes_still_verify_and_need_a_rehash() -> None:
    assert verify_password(LEGACY_PASSWORD, LEGACY_HASH)
    assert verify_password("ｃｏｒｒｅｃｔ horse 7", LEGACY_HASH)
    assert not verify_password("correct horse 8", LEGACY_HASH)
    assert not verify_password(LEGACY_PASSWORD, LEGACY_HASH[:-4] + "AAA=")
    assert needs_rehash(LEGACY_HASH)


def test_argon2_hashes_with_outdated_parameters_need_a_rehash() -> None:
    outdated = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(passwords._normalized("old one 2019"))
    assert verify_password("old one 2019", outdated)
    assert needs_rehash(outdated)


def _argon2(**parameters: int) -> str:
    """A real hash of "anything" whose stored parameters are then rewritten (so it is out of bounds)."""
    genuine = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("anything")
    _, variant, version, _, salt, digest = genuine.split("$")
    settings = ",".join(f"{key}={value}" for key, value in {"m": 8192, "t": 1, "p": 1, **parameters}.items())
    return f"${variant}${version}${settings}${salt}${digest}"


@pytest.mark.parametrize("stored", [
    None, "", "plain", "scrypt$1$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA", "bcrypt$16384$8$1$AAAA$AAAA",
    "scrypt$16384$8$1$!!!$AAAA", "scrypt$1048576000$8$1$AAAA$AAAA", "scrypt$16384$64$1$AAAA$AAAA",
    "scrypt$16384$8$1$AAAA$", "$argon2id$v=19$m=65536,t=3,p=4$!!!$AAAA", "$argon2id$", "$argon2id$v=19$garbage",
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$" + "A" * 43,
    _argon2(m=2**22), _argon2(t=10_000), _argon2(p=255),
    PasswordHasher(type=Type.I, time_cost=1, memory_cost=8192, parallelism=1).hash("anything"),
    "$argon2i$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43,
])
def test_a_missing_or_malformed_stored_hash_never_verifies(stored: str | None) -> None:
    assert verify_password("anything", stored) is False


def test_the_bounds_are_what_refuses_a_costly_stored_hash() -> None:
    assert verify_password("anything", _argon2())  # the same hash, with its real parameters, verifies


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("", "12文字以上128文字以内"),
        ("Ume-no-han1", "12文字以上128文字以内"),  # 11
        ("１２３４５６７８９０１", "12文字以上128文字以内"),
        ("ab1-" * 32 + "x", "12文字以上128文字以内"),  # 129
        ("sato", "12文字以上"),
        ("sato-spring-2026", "ログインID"),
        ("My-SATO-pass-2026", "ログインID"),
        ("ｓａｔｏ－ｓｐｒｉｎｇ－２０２６", "ログインID"),  # full width, folded first
        ("password1234", "よく使われる"),
        ("PassWord1234", "よく使われる"),
        ("ｐａｓｓｗｏｒｄ１２３４", "よく使われる"),
        ("123456789012", "よく使われる"),
        ("qwertyuiop12", "よく使われる"),
        ("iloveyou1234", "よく使われる"),
        ("passwordpassword", "よく使われる"),
        ("jsugjsugjsug", "よく使われる"),
        ("aaaaaaaaaaaa", "同じ文字"),
        ("a" * 128, "同じ文字"),
        ("ＺＺＺＺＺＺＺＺＺＺＺＺＺ", "同じ文字"),
    ],
)
def test_the_password_policy_refuses_with_a_japanese_reason(password: str, says: str) -> None:
    with pytest.raises(PasswordPolicyError) as refused:
        check_password_policy(password, "sato")
    assert says in str(refused.value)


@pytest.mark.parametrize("password", [
    "Ume-no-hana1",  # exactly 12
    "ab1-" * 32,  # exactly 128
    "804219736551",  # digits only, but long and not a well-known one
    "さくらが咲く春の日の朝です",
    "correct horse battery staple",
    "satoyama walk 2026"[::-1],  # "sato" reversed is fine
])
def test_the_password_policy_accepts(password: str) -> None:
    assert check_password_policy(password, "sato") is None


def test_a_login_id_is_refused_as_the_whole_password_and_contained_when_3_or_more_chars() -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy("Beta-Rep-2026-x", "beta-rep")
    with pytest.raises(PasswordPolicyError):
        check_password_policy("verylongloginid1", "VeryLongLoginId1")
    assert check_password_policy("ab-is-not-special-1", "ab") is None
    assert check_password_policy("Ume-no-hana-2026", "") is None


def test_the_bundled_list_holds_hundreds_of_long_well_known_passwords() -> None:
    listed = common_passwords()
    assert len(listed) >= 300
    assert all(entry == entry.lower() and len(entry) >= 12 for entry in listed)
    assert {"password1234", "123456789012", "qwertyuiop12", "1234567890ab", "passwordpassword",
            "iloveyou1234", "jsugjsugjsug"} <= listed


# -- signing in ----------------------------------------------------------------------------------


def set_hash(sessions, member_id: int, stored: str | None) -> None:
    with sessions.begin() as session:
        member = session.get(Member, member_id)
        assert member is not None
        member.password_hash = stored


def stored_hash(sessions, member_id: int) -> str | None:
    with sessions() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member.password_hash


def sign_in(sessions, login_id: str, password: str) -> int | None:
    with sessions.begin() as session:
        member = authenticate(session, login_id, password)
        return None if member is None else member.id


def audit_actions(sessions) -> list[str]:
    with sessions() as session:
        return [entry.action for entry in session.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_a_legacy_hash_is_replaced_by_argon2id_at_sign_in(sessions, members: Members) -> None:
    set_hash(sessions, members.sato, LEGACY_HASH)

    assert sign_in(sessions, "sato", "wrong horse 7") is None
    assert stored_hash(sessions, members.sato) == LEGACY_HASH  # a wrong password changes nothing
    assert sign_in(sessions, "sato", LEGACY_PASSWORD) == members.sato

    renewed = stored_hash(sessions, members.sato)
    assert renewed and renewed.startswith("$argon2id$") and verify_password(LEGACY_PASSWORD, renewed)
    with sessions() as session:
        [entry] = session.scalars(select(AuditLog)).all()
    assert (entry.action, entry.actor, entry.entity, entry.entity_id) == (
        "password_rehashed", f"member:{members.sato}", "member", members.sato)
    written = json.dumps([entry.before, entry.after])
    assert LEGACY_HASH not in written and renewed not in written and "$argon2" not in written
    assert LEGACY_PASSWORD not in written

    assert sign_in(sessions, "sato", LEGACY_PASSWORD) == members.sato  # once renewed, left alone
    assert stored_hash(sessions, members.sato) == renewed
    assert audit_actions(sessions) == ["password_rehashed"]


def test_an_outdated_argon2_hash_is_renewed_and_a_current_one_is_not(sessions, members: Members) -> None:
    outdated = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD_PASSWORD)
    set_hash(sessions, members.sato, outdated)
    assert sign_in(sessions, "sato", GOOD_PASSWORD) == members.sato
    renewed = stored_hash(sessions, members.sato)
    assert renewed != outdated and renewed and not needs_rehash(renewed)
    assert audit_actions(sessions) == ["password_rehashed"]

    current = hash_password(GOOD_PASSWORD)
    set_hash(sessions, members.yamada_personal, current)
    assert sign_in(sessions, "yamada", GOOD_PASSWORD) == members.yamada_personal
    assert stored_hash(sessions, members.yamada_personal) == current
    assert audit_actions(sessions) == ["password_rehashed"]


def test_sign_in_refuses_unknown_withdrawn_and_passwordless_accounts(sessions, members: Members) -> None:
    current = hash_password(GOOD_PASSWORD)
    for member_id in (members.sato, members.withdrawn):
        set_hash(sessions, member_id, current)

    assert sign_in(sessions, "sato", GOOD_PASSWORD) == members.sato
    assert sign_in(sessions, "ｓａｔｏ", GOOD_PASSWORD) == members.sato  # typed in full width
    for login_id, password in [("sato", GOOD_PASSWORD + "x"), ("SATO", GOOD_PASSWORD), ("old", GOOD_PASSWORD),
                               ("nobody", GOOD_PASSWORD), ("yamada", GOOD_PASSWORD), ("", GOOD_PASSWORD),
                               ("sato", ""), ("x" * 5000, GOOD_PASSWORD), ("' OR '1'='1", GOOD_PASSWORD)]:
        assert sign_in(sessions, login_id, password) is None, login_id
    assert audit_actions(sessions) == []


def test_an_unknown_login_id_costs_a_hash_check_too(sessions, members: Members, monkeypatch) -> None:
    set_hash(sessions, members.sato, hash_password(GOOD_PASSWORD))
    checked: list[str | None] = []
    real = passwords.verify_password

    def spy(password: str, stored: str | None) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", spy)
    for login_id in ("nobody", "old", "yamada", "sato"):  # unknown, withdrawn, no password, known
        sign_in(sessions, login_id, "some guess 123")
    assert len(checked) == 4
    assert all(stored and stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") for stored in checked)
    assert checked[0] == checked[1] == checked[2] != checked[3]  # the same dummy hash for the three


def test_codes_to_one_address_are_limited_per_hour_without_telling_the_caller(
    sessions, mailer, settings, smtp_server, members
) -> None:
    for attempt in range(settings.codes_per_hour + 2):
        request_code(sessions, mailer, settings, SATO, user_ref=f"web-{attempt}")
    mailer.deliver_pending()
    assert len(smtp_server.inbox.messages) == settings.codes_per_hour
