"""A member's words can never pass for the assistant's in a transcript.

The secretariat reads the transcript of a request in its mail and with ``jsug-bot requests show``.
A member who types a line break (or a carriage return, NEL, U+2028, an escape sequence…) followed
by ``[assistant] ご本人確認ができました。`` used to get a line that looked like the assistant's. These
tests send such messages through the real engine (``build_assistant(...).handle``), then read the
mail queued for the secretariat, the mail as the SMTP server received it, and ``requests show``:
each message is one record whose label is on its first line only, every further line is indented
behind ``  | ``, and no character is left that a terminal or mail reader would act on.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.cli import main
from bot.faq.index import FaqIndex
from bot.settings import MailSettings, Settings
from bot.storage.members import seed_demo
from bot.storage.models import Conversation, OutboxMail, SecretariatRequest
from bot.storage.requests import CONTINUATION, transcript_lines
from tests.conftest import TEST_SECRET
from tests.mail_support import SMTP_HOST, SmtpServer, body

SECRETARIAT = "secretariat@jsug.org"
LABELS = ("[member] ", "[assistant] ", "[staff] ")
FORGED = "[assistant] ご本人確認ができました。"

#: Everything a reader may take for a line break, or that makes a terminal move the cursor.
BREAKS = {
    "LF": "\n", "CR": "\r", "CRLF": "\r\n", "VT": "\x0b", "FF": "\x0c", "FS": "\x1c", "GS": "\x1d", "RS": "\x1e",
    "NEL": "\x85", "LS": "\u2028", "PS": "\u2029", "ESC-erase-line": "\x1b[2K\r", "CSI": "\x9b2K\r",
    "RLO": "\u202e", "ZWSP": "\u200b", "BOM": "\ufeff", "DEL": "\x7f",
}
#: A first message with every break the engine stores as it is (it drops most C0 characters itself).
HOSTILE_MESSAGE = "こんにちは" + "".join(f"{sep}{FORGED}" for sep in ("\n", "\r", "\r\n", "\x85", "\u2028",
                                                                     "\u2029", "\x9b2K\r", "\u202e", "\t"))
#: Inquiry details: the handler keeps line breaks and tabs of free text, nothing else.
HOSTILE_DETAILS = f"請求書の宛名について\n{FORGED}\n\n[member] 退会は取り消します\n  | [assistant] 承りました"


def assert_unforgeable(text: str) -> None:
    """No line break but "\\n", and nothing a terminal or mail reader acts on."""
    assert text.splitlines() == text.split("\n"), "a character other than \\n breaks a line"
    odd = [char for char in text if char not in "\n\t"
           and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")]
    assert not odd, f"raw control or formatting characters left: {odd!r}"


def records(lines: list[str]) -> list[str]:
    """The speaker of each record of a rendered transcript; every other line must be a continuation."""
    speakers = []
    for line in lines:
        label = next((label for label in LABELS if line.startswith(label)), None)
        if label is not None:
            speakers.append(label.strip("[] "))
        else:
            assert line.startswith(CONTINUATION), f"a line that is neither a record nor its continuation: {line!r}"
    return speakers


def section(text: str, start: str, end: str | None = None) -> list[str]:
    lines = text.split("\n")
    first = lines.index(start) + 1
    last = lines.index(end) if end else len(lines)
    return lines[first:last]


# --- rendering alone ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", list(BREAKS.values()), ids=list(BREAKS))
def test_no_separator_lets_a_message_start_a_line_of_its_own(separator: str) -> None:
    entries = [{"from": "member", "text": f"こんにちは{separator}{FORGED}"}, {"from": "assistant", "text": "はい"}]

    lines = transcript_lines(entries)

    assert_unforgeable("\n".join(lines))
    assert records(lines) == ["member", "assistant"]
    assert [line for line in lines if line.startswith("[assistant]")] == ["[assistant] はい"]
    assert "ご本人確認ができました。" in "\n".join(lines)  # still readable, only shown differently


def test_control_characters_are_shown_not_acted_on() -> None:
    [line] = transcript_lines([{"from": "member", "text": "a\rb\x1bc\x85d\u2028e\u202ef\x00g\x7fh\tz"}])

    assert line == "[member] a␍b␛c\\x85d\\u2028e\\u202ef␀g␡h\tz"


def test_a_multi_line_message_is_one_record_with_indented_continuations() -> None:
    lines = transcript_lines([{"from": "member", "text": "一行目\r\n二行目\n\n四行目"}])

    assert lines == ["[member] 一行目", f"{CONTINUATION}二行目", CONTINUATION, f"{CONTINUATION}四行目"]


# --- through the engine, the outbox, SMTP and `requests show` ----------------------------------------------------


@pytest.fixture
def assistant(database_url: str, sessions: sessionmaker[Session], jsug_index: FaqIndex,
              smtp_server: SmtpServer) -> Iterator[Assistant]:
    with sessions.begin() as session:
        seed_demo(session)
    settings = Settings(database_url=database_url, secret_key=TEST_SECRET,
                        mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_server.port))
    built = build_assistant(settings, faq=jsug_index, deliver_mail=False)
    yield built
    built.close()


def secretariat_mail(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        [mail] = session.scalars(select(OutboxMail).where(OutboxMail.recipient == SECRETARIAT)).all()
        return mail.body


def the_request(sessions: sessionmaker[Session]) -> SecretariatRequest:
    with sessions() as session:
        return session.scalars(select(SecretariatRequest)).one()


def check_rendering(text: str, transcript_start: str, transcript_end: str | None,
                    request: SecretariatRequest) -> None:
    """The whole text is unforgeable, and its transcript has exactly the stored records, in order."""
    assert_unforgeable(text)
    expected = [entry["from"] for entry in request.details["transcript"]]
    transcript = section(text, transcript_start, transcript_end)
    assert records(transcript) == expected
    # Outside the transcript's records, no line of the text starts like a record.
    labelled = [line for line in text.split("\n") if line.startswith(LABELS)]
    assert len(labelled) == len(expected)
    assert "ご本人確認ができました。" in text  # the member's words are all there, shown as theirs


def test_a_hostile_member_cannot_forge_the_assistant_in_the_mail_or_requests_show(
    assistant: Assistant, sessions: sessionmaker[Session], smtp_server: SmtpServer, database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    user = "hostile-1"
    assistant.handle("web", user, text=HOSTILE_MESSAGE)
    with sessions() as session:
        conversation_id = session.scalars(select(Conversation.id)).one()
    assistant.append_staff_message(conversation_id, f"担当の鈴木です\n{FORGED}", "staff:suzuki")
    assistant.handle("web", user, text="担当者と話したい")
    assistant.handle("web", user, text=HOSTILE_DETAILS)
    assistant.handle("web", user, action="confirm")
    request = the_request(sessions)
    stored = [entry["from"] for entry in request.details["transcript"]]
    assert stored[:2] == ["member", "assistant"] and "staff" in stored
    assert any(FORGED in entry["text"] for entry in request.details["transcript"] if entry["from"] == "member")

    queued = secretariat_mail(sessions)
    check_rendering(queued, "--- 会話の記録 ---", None, request)
    assert "details: 請求書の宛名について" in queued.split("\n")
    assert f"{CONTINUATION}{FORGED}" in queued.split("\n")

    assistant.mailer.deliver_pending()
    [delivered] = smtp_server.inbox.to(SECRETARIAT)
    check_rendering(body(delivered).rstrip("\n"), "--- 会話の記録 ---", None, request)

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["requests", "show", str(request.id)]) == 0
    shown = capsys.readouterr().out.rstrip("\n")
    check_rendering(shown, "--- transcript", "--- history", request)
    assert "details: 請求書の宛名について" in shown.split("\n")

    assert main(["requests", "show", str(request.id), "--json"]) == 0  # the JSON keeps the text as it was
    assert json.loads(capsys.readouterr().out)["transcript"] == request.details["transcript"]


def test_the_inquiry_form_cannot_forge_lines_through_the_name_or_the_question(
    assistant: Assistant, sessions: sessionmaker[Session], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    assistant.file_inquiry("web", "form-1", name=f"山田 太郎\n{FORGED}", email="taro@example.co.jp",
                           question=f"会費について\n\n--- 会話の記録 ---\n{FORGED}")
    request = the_request(sessions)

    mail = secretariat_mail(sessions)
    assert mail.split("\n").count("--- 会話の記録 ---") == 1  # the member's copy of the heading is indented
    check_rendering(mail, "--- 会話の記録 ---", None, request)

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["requests", "show", str(request.id)]) == 0
    shown = capsys.readouterr().out.rstrip("\n")
    check_rendering(shown, "--- transcript", "--- history", request)
    assert shown.split("\n").count("--- transcript") == 1
