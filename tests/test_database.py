"""The membership database: one set of migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import Engine, inspect

from bot.cli import main


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"companies", "members", "preferences", "channel_identities", "password_reset_tokens",
            "one_time_codes", "conversations", "messages", "secretariat_requests", "request_events",
            "feedback", "audit_log", "outbox"} <= tables


def test_db_upgrade_command_migrates_the_configured_database(empty_database_url: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0  # a second run is a no-op
    assert "up to date" in capsys.readouterr().out


def test_db_upgrade_with_a_bad_url_says_so_without_a_traceback(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", "not a url")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL" in err and "Traceback" not in err


def test_db_upgrade_with_an_unreachable_server_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "database" in err and "Traceback" not in err


def test_mail_deliver_command_sends_the_outbox(engine, database_url: str, monkeypatch, capsys) -> None:
    from bot.mail import Mailer
    from bot.settings import MailSettings
    from bot.storage.db import session_factory
    from bot.storage.members import mark_demo_database

    sessions = session_factory(engine)
    with sessions.begin() as session:
        mark_demo_database(session)  # without SMTP, mails are only shown (and marked logged) on the demo database
        Mailer(MailSettings(), sessions).queue(session, "yamada@example.com", "件名", "本文")
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["mail", "deliver"]) == 0
    assert "logged 1" in capsys.readouterr().out
    assert main(["mail", "deliver"]) == 0
    assert "logged 0" in capsys.readouterr().out


def test_answer_feedback_is_stored(engine, jsug_index) -> None:
    from sqlalchemy import select

    from bot.app import build_assistant
    from bot.settings import Settings
    from bot.storage.db import session_factory
    from bot.storage.models import Feedback
    from tests.conftest import TEST_SECRET

    assistant = build_assistant(Settings(database_url=engine.url.render_as_string(hide_password=False),
                                         secret_key=TEST_SECRET), faq=jsug_index, deliver_mail=False)
    [reply] = assistant.handle("web", "visitor-1", action="feedback:password-reset:up")
    assert "ありがとうございます" in reply.text
    [stale] = assistant.handle("web", "visitor-1", action="feedback:no-such-faq:up")
    assert stale.text != reply.text
    with session_factory(engine)() as session:
        stored = session.scalars(select(Feedback)).all()
        assert [(f.faq_id, f.helpful) for f in stored] == [("password-reset", True)]
    assistant.close()


def test_requests_list_and_show_let_the_secretariat_read_a_request(engine, database_url, jsug_index,
                                                                    monkeypatch, capsys) -> None:
    from bot.app import build_assistant
    from bot.settings import Settings
    from tests.conftest import TEST_SECRET

    assistant = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                                deliver_mail=False)
    assistant.handle("web", "visitor-7", text="<b>今日の天気は？</b>")
    assistant.handle("web", "visitor-7", action="start:secretariat_request")
    assistant.handle("web", "visitor-7", action="confirm")
    assistant.close()
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["requests", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["kind"], row["status"], row["channel"], row["user_ref"]) == ("inquiry", "open", "web", "visitor-7")
    assert main(["requests", "show", str(row["id"])]) == 0
    shown = capsys.readouterr().out
    assert "<b>今日の天気は？</b>" in shown and "--- transcript" in shown and "open" in shown
    assert main(["requests", "list", "--status", "done"]) == 0
    assert "no done requests" in capsys.readouterr().out
    assert main(["requests", "show", "999"]) == 2
    assert "no request #999" in capsys.readouterr().err
