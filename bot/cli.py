"""The ``jsug-bot`` command: each sub-command parses its arguments and calls one function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ConfigurationError
from bot.faq.calibration import CALIBRATION_FILE, SEMANTIC_CALIBRATION_FILE, CalibrationError
from bot.faq.corpus import FAQ_FILE, LINKS_FILE, CorpusError, load_faq_yaml, load_links, read_text
from bot.faq.evaluate import evaluate, load_cases
from bot.faq.index import open_index
from bot.faq.matcher import match
from bot.faq.page_import import dump_yaml, merge, parse_page
from bot.faq.validate import validate
from bot.settings import Settings
from bot.storage.db import DatabaseError
from bot.storage.members import MemberImportError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


class CommandError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def _json_default(value: object) -> str:
    """Datetimes as ISO 8601 (the member commands return them as objects)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None, default=_json_default))


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.channels.terminal import render_result

    index = open_index(settings, args.faq)
    result = match(index, args.text)
    if args.json:
        _print_json(result.as_dict())
    else:
        print(render_result(index, result))
        if args.explain:
            print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """A conversation at the terminal. Each run is a conversation of its own (a fresh random user
    reference), so two runs never share a flow or a verified identity, whoever runs them.

    ``--as EMAIL`` lets an operator act for a member without a one-time code. The operator is the
    OS account of this process (``LOGNAME``/``USER`` are the caller's to set, so they are not asked),
    recorded on the conversation (``assumed_by``) and in every audit entry as acting on the member's
    behalf. Without ``--trust-identity`` it is honoured only on the demo database ``db seed-demo``
    made (``is_demo_database``), not on any SQLite file.
    """
    import logging
    import os
    import secrets

    from bot.app import build_assistant
    from bot.channels.terminal import run_chat, run_script
    from bot.identity import parse_email
    from bot.storage.members import is_demo_database

    operator: str | None = None
    if args.as_email:
        if parse_email(args.as_email) is None:
            raise CommandError(f"--as {args.as_email!r} is not an e-mail address")
        try:
            import pwd
        except ImportError:
            raise CommandError("--as needs a POSIX system: the operator is named by the OS account") from None
        try:
            account = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry (some containers): name it by number
            account = f"uid-{os.getuid()}"
        operator = "operator:" + ("".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                                          for c in account)[:50] or f"uid-{os.getuid()}")
        if not args.trust_identity:
            try:
                with _member_database(settings) as sessions, sessions() as session:
                    demo = is_demo_database(session)
            except SQLAlchemyError as exc:
                raise CommandError(f"--as without --trust-identity: cannot tell whether "
                                   f"{_safe_url(settings.database_url)} is the demo database "
                                   f"({type(exc).__name__})") from None
            if not demo:
                raise CommandError("--as is honoured only on the demo database (made by `jsug-bot db seed-demo`) "
                                   "or with --trust-identity")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot.mail").setLevel(logging.INFO)
    if args.script:
        try:
            lines = args.script.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{args.script}: cannot read the script ({exc})") from None
    assistant = build_assistant(settings, faq=open_index(settings, args.faq) if args.faq else None)
    try:
        user_ref = f"{'as' if operator else 'local'}:{secrets.token_hex(8)}"
        if args.as_email and operator:
            assistant.assume_identity("terminal", user_ref, args.as_email, operator=operator)
        if args.script:
            run_script(assistant, user_ref, lines, args.json, sys.stdout)
        else:
            run_chat(assistant, user_ref)
    finally:
        assistant.close()
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    index = open_index(settings, args.faq)
    cases = load_cases(args.file, {entry.id for entry in index.corpus.entries})
    report = evaluate(index, cases, curve=args.curve)
    if args.json:
        _print_json(report)
        return 0
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    for key, value in metrics.items():
        print(f"{key:38} {value}")
    by_category = report.get("by_category")
    if isinstance(by_category, dict):
        shown = ("queries", "in_scope_answered_correctly", "top1_accuracy", "in_scope_bare_fallback",
                 "wrong_answers", "out_of_scope_fallback")
        print("\nby category: " + " | ".join(shown))
        for name, figures in by_category.items():
            print(f"  {name:14} " + " | ".join(str(figures.get(key)) for key in shown))
    curve = report.get("curve")
    if isinstance(curve, list):
        print("\nanswer_threshold | answered_correctly | wrong_answers | out_of_scope_unanswered")
        for row in curve:
            print(f"  {row['answer_threshold']:<14} | {row['answered_correctly']} | {row['wrong_answers']} | "
                  f"{row['out_of_scope_unanswered']}")
    return 0


def cmd_faq_validate(args: argparse.Namespace, settings: Settings) -> int:
    source = args.path or settings.faq_dir
    corpus = validate(source, settings.faq_dir)
    print(f"{corpus.source}: {len(corpus.entries)} entries, {len(corpus.links)} links: OK")
    return 0


def cmd_faq_import(args: argparse.Namespace, settings: Settings) -> int:
    faq_path = settings.faq_dir / FAQ_FILE
    output = args.output or faq_path
    try:
        page = read_text(args.page)
    except CorpusError as exc:
        raise CommandError(f"{args.page}: cannot read the page: {exc.problem}") from None
    existing = load_faq_yaml(faq_path) if faq_path.exists() else []
    links_path = settings.faq_dir / LINKS_FILE
    links = load_links(links_path) if links_path.exists() else {}
    report = merge(parse_page(page, args.page), existing, links)
    try:
        output.write_text(dump_yaml(report.entries), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{output}: cannot write the corpus ({exc})") from None
    print(f"{output}: {len(report.entries)} entries written")
    print(f"  kept (id and alternates unchanged): {len(report.kept)}")
    for label, ids in (("added, to complete", report.added), ("no longer on the page, dropped", report.removed)):
        if ids:
            print(f"  {label}: {', '.join(ids)}")
    for item in report.unlinked:
        print(f"  link word left plain, link it by hand: {item}")
    return 0


def cmd_faq_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.faq.train import calibrate

    sets = [(Path(corpus), Path(questions)) for corpus, questions in args.set]
    lexical, semantic = calibrate(settings, sets)
    lexical.save(args.output)
    print(f"{args.output}: calibration fitted on {', '.join(lexical.trained_on)}")
    if semantic is None:
        print("the semantic model did not load here: its calibration was not refitted", file=sys.stderr)
        return 0
    semantic.save(args.semantic_output)
    print(f"{args.semantic_output}: the semantic calibration, fitted on the same sets")
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.db import make_engine, upgrade

    upgrade(make_engine(settings.database_url))
    print(f"database is up to date: {_safe_url(settings.database_url)}")
    return 0


@contextmanager
def _member_database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the migrated database of DATABASE_URL; the engine is closed afterwards."""
    from bot.storage.db import ensure_migrated, make_engine, session_factory

    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
        yield session_factory(engine)
    finally:
        engine.dispose()


def cmd_db_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.db import transaction
    from bot.storage.members import DEMO_CSV, DEMO_SHARED_EMAIL, seed_demo

    with _member_database(settings) as sessions, transaction(sessions) as session:
        marked = seed_demo(session)
    print(f"demo data is in place ({DEMO_CSV.name}): {_safe_url(settings.database_url)}")
    if not marked:
        print("  the database holds other members: not marked as the demo database "
              "(chat --as needs --trust-identity, mail needs SMTP)")
    print(f"  try: jsug-bot members show {DEMO_SHARED_EMAIL}   (one address, two accounts)")
    return 0


def cmd_members_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.db import transaction
    from bot.storage.members import import_members

    with _member_database(settings) as sessions, transaction(sessions) as session:
        report = import_members(session, args.csv)
    print(f"{args.csv}: imported")
    print(f"  companies: {report.companies_created} created, {report.companies_updated} updated")
    print(f"  members:   {report.members_created} created, {report.members_updated} updated, "
          f"{report.members_unchanged} unchanged")
    return 0


def cmd_members_show(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.members import render_accounts, show_member

    with _member_database(settings) as sessions, sessions() as session:
        accounts = show_member(session, args.email)
    if args.json:
        _print_json(accounts)
    else:
        print(render_accounts(args.email, accounts))
    return 0


def cmd_requests_list(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.requests import list_requests

    with _member_database(settings) as sessions, sessions() as session:
        rows = list_requests(session, None if args.status == "all" else args.status)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no requests" if args.status == "all" else f"no {args.status} requests")
    for row in rows:
        who = f"{row['member']['name']} <{row['member']['email']}> {row['member']['company']}" if row["member"] else "(本人確認なし)"
        print(f"#{row['id']:<5} {row['status']:<11} {row['created_at'][:16]}  {row['kind_label']:<16} {who}  [{row['channel']}]")
    return 0


def cmd_requests_show(args: argparse.Namespace, settings: Settings) -> int:
    from bot.storage.requests import render_request, show_request

    with _member_database(settings) as sessions, sessions() as session:
        request = show_request(session, args.id)
    if request is None:
        raise CommandError(f"no request #{args.id}")
    if args.json:
        _print_json(request)
        return 0
    print(render_request(request))
    return 0


def cmd_mail_deliver(args: argparse.Namespace, settings: Settings) -> int:
    """Send what waits in the outbox; with --every, keep doing it (a worker process) through
    database outages. No SMTP host outside the demo database: exit 2, nothing sent or marked."""
    import logging

    from bot.mail import DeliveryReport, Mailer
    from bot.mail_worker import deliver_every

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot.mail").setLevel(logging.INFO)

    def say(report: DeliveryReport) -> None:
        print(f"sent {len(report.sent)}, logged {len(report.logged)}, failed {len(report.failed)}, "
              f"expired {len(report.expired)}", flush=True)

    with _member_database(settings) as sessions:
        mailer = Mailer.for_settings(settings, sessions)
        if not args.every:
            say(mailer.deliver_pending())
            return 0
        deliver_every(mailer, args.every, say)
    return 0


def cmd_mail_list(args: argparse.Namespace, settings: Settings) -> int:
    """The outbox for the secretariat: masked recipients, attempts, errors; never a body or a secret."""
    from bot.mail import list_outbox

    with _member_database(settings) as sessions, sessions() as session:
        rows = list_outbox(session, args.status)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no mails" if args.status == "all" else f"no {args.status} mails")
    for row in rows:
        print(f"#{row['id']:<5} {row['status']:<8} {row['created_at'][:16]}  attempts {row['attempts']:<3} "
              f"{row['recipient']}  {row['subject']}")
        if row["next_attempt_at"]:
            print(f"       next attempt: {row['next_attempt_at'][:19]}")
        if row["last_error"]:
            print(f"       last error: {row['last_error']}")
    return 0


def cmd_mail_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Make mails due now, attempts reset (audited): the named ones, every failed one, or every
    pending one waiting out its backoff (e.g. once the SMTP server is fixed)."""
    from bot.clock import utc
    from bot.mail import requeue
    from bot.storage.db import transaction
    from bot.storage.models import utcnow

    with _member_database(settings) as sessions, transaction(sessions) as session:
        report = requeue(session, args.ids, failed=args.failed, actor=f"operator:{_os_account()}",
                         now=utc(utcnow()))
    print(f"requeued {len(report.requeued)} mail(s)" + (f": {', '.join(map(str, report.requeued))}"
                                                          if report.requeued else ""))
    for mail_id, reason in sorted(report.skipped.items()):
        print(f"mail {mail_id} not requeued: {reason}", file=sys.stderr)
    return 1 if args.ids and report.skipped else 0  # a named mail left alone is worth a non-zero status


def _os_account() -> str:
    """The operating-system account running the command (not $USER, which anyone can set)."""
    import os

    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # no pwd module (Windows), or a uid without a passwd entry
        import getpass

        return getpass.getuser()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The web server: chat API, widget, demo page and password-reset page (see README)."""
    import logging

    from bot.channels.web.server import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    serve(settings, args.host, args.port, args.workers)
    return 0


def cmd_slack(args: argparse.Namespace, settings: Settings) -> int:
    """The Slack app over Socket Mode, for a workspace that cannot reach a public URL (see README)."""
    import logging

    from bot.channels.slack.socket_mode import run_socket_mode

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    run_socket_mode(settings)
    return 0


def _safe_url(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jsug-bot", description="JSUG member assistant")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer one question")
    ask.add_argument("text")
    ask.add_argument("--json", action="store_true", help="print the decision and its explanation as JSON")
    ask.add_argument("--explain", action="store_true", help="show candidates, scores and matched terms")
    ask.add_argument("--faq", type=Path, help="corpus folder, faq.yaml or .jsonl (default: faq_data/)")
    ask.set_defaults(run=cmd_ask)

    chat = sub.add_parser("chat", help="chat with the assistant in the terminal (needs the database)")
    chat.add_argument("--faq", type=Path)
    chat.add_argument("--as", dest="as_email", metavar="EMAIL",
                      help="act for this member, recorded as your OS account on their behalf (demo database only)")
    chat.add_argument("--trust-identity", action="store_true",
                      help="OPERATOR FLAG: honour --as on any other database (no one-time code)")
    chat.add_argument("--script", type=Path, help="a file: one message a line, !ACTION presses a button")
    chat.add_argument("--json", action="store_true", help="with --script: one JSON object per turn")
    chat.set_defaults(run=cmd_chat)

    srv = sub.add_parser("serve", help="run the web server (chat API, widget, demo page, password reset)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    srv.set_defaults(run=cmd_serve)

    sub.add_parser("slack", help="run the Slack app over Socket Mode (SLACK_BOT_TOKEN, SLACK_APP_TOKEN)").set_defaults(
        run=cmd_slack)

    ev = sub.add_parser("eval", help="measure the matcher on a JSON Lines file of questions")
    ev.add_argument("file", type=Path)
    ev.add_argument("--faq", type=Path)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--curve", action="store_true", help="also the trade-off over answer thresholds")
    ev.set_defaults(run=cmd_eval)

    faq = sub.add_parser("faq", help="manage the FAQ corpus").add_subparsers(dest="faq_command", required=True)
    imp = faq.add_parser("import", help="refresh faq.yaml from the FAQ page's text")
    imp.add_argument("page", type=Path)
    imp.add_argument("--output", type=Path, help="write here instead of faq_data/faq.yaml")
    imp.set_defaults(run=cmd_faq_import)
    val = faq.add_parser("validate", help="check the corpus")
    val.add_argument("path", type=Path, nargs="?", help="corpus folder or file (default: faq_data/)")
    val.set_defaults(run=cmd_faq_validate)
    db = sub.add_parser("db", help="the membership database (DATABASE_URL)").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="create or migrate the schema").set_defaults(run=cmd_db_upgrade)
    db.add_parser("seed-demo", help="add the demo companies and members (safe to run again)").set_defaults(
        run=cmd_db_seed_demo
    )

    members = sub.add_parser("members", help="the secretariat's member list").add_subparsers(
        dest="members_command", required=True
    )
    mimp = members.add_parser("import", help="create or update members from the secretariat's CSV (by login_id)")
    mimp.add_argument("csv", type=Path, help="UTF-8 CSV with company, membership_class, name, email, login_id, "
                      "is_representative, newsletter, postal_dm")
    mimp.set_defaults(run=cmd_members_import)
    show = members.add_parser("show", help="the accounts of an e-mail address, with preferences and history")
    show.add_argument("email")
    show.add_argument("--json", action="store_true", help="print the accounts as JSON")
    show.set_defaults(run=cmd_members_show)

    requests = sub.add_parser("requests", help="requests to the secretariat").add_subparsers(
        dest="requests_command", required=True
    )
    req_list = requests.add_parser("list", help="requests, newest first")
    req_list.add_argument("--status", default="open", choices=("open", "in_progress", "done", "cancelled", "all"))
    req_list.add_argument("--json", action="store_true")
    req_list.set_defaults(run=cmd_requests_list)
    req_show = requests.add_parser("show", help="one request with its transcript and history")
    req_show.add_argument("id", type=int)
    req_show.add_argument("--json", action="store_true")
    req_show.set_defaults(run=cmd_requests_show)

    mail = sub.add_parser("mail", help="the outbox").add_subparsers(dest="mail_command", required=True)
    deliver = mail.add_parser("deliver", help="send the mails that are due (retries back off, over a day)")
    deliver.add_argument("--every", type=float, metavar="SECONDS", help="repeat forever, as a worker")
    deliver.set_defaults(run=cmd_mail_deliver)
    mail_list = mail.add_parser("list", help="mails with masked recipients, attempts and errors (no bodies)")
    mail_list.add_argument("--status", default="failed", choices=("failed", "pending", "all"))
    mail_list.add_argument("--json", action="store_true")
    mail_list.set_defaults(run=cmd_mail_list)
    retry = mail.add_parser("retry", help="make mails due now with their attempts reset (audited)")
    retry.add_argument("ids", type=int, nargs="*", metavar="ID", help="these mails (default: see --failed)")
    retry.add_argument("--failed", action="store_true",
                       help="every failed mail (without it and without IDs: every pending mail waiting to retry)")
    retry.set_defaults(run=cmd_mail_retry)

    cal = faq.add_parser("calibrate", help="fit the score calibration on question sets")
    cal.add_argument(
        "--set", nargs=2, action="append", required=True, metavar=("CORPUS", "QUESTIONS"),
        help="a corpus and a JSON Lines question file for it; repeat for several corpora",
    )
    cal.add_argument("--output", type=Path, default=CALIBRATION_FILE)
    cal.add_argument("--semantic-output", type=Path, default=SEMANTIC_CALIBRATION_FILE)
    cal.set_defaults(run=cmd_faq_calibrate)
    return parser


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"jsug-bot: invalid settings in the environment:\n{exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, settings))
    except (CorpusError, CalibrationError, CommandError, DatabaseError, MemberImportError, ConfigurationError) as exc:
        print(f"jsug-bot: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"jsug-bot: database error ({type(exc).__name__}): {_first_line(exc)}", file=sys.stderr)
        print("jsug-bot: check DATABASE_URL and that the database is running and migrated (jsug-bot db upgrade)",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
