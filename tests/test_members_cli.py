"""``jsug-bot db seed-demo``, ``members import CSV`` and ``members show EMAIL``, as the secretariat runs them."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from bot.cli import main
from bot.storage.members import DEMO_SHARED_EMAIL
from bot.storage.models import AuditLog, Company, Member, Preferences, SecretariatRequest

HEADER = ["company", "membership_class", "name", "email", "login_id", "is_representative", "newsletter", "postal_dm"]
ALPHA = "株式会社アルファ"
BETA = "ベータ株式会社"
BASE_ROWS = [
    [ALPHA, "法人会員", "青木 一郎", "aoki@example.com", "t-aoki", "true", "true", "false"],
    [ALPHA, "法人会員", "石井 花子", "ishii@example.com", "t-ishii", "false", "false", "true"],
    [BETA, "賛助会員", "上田 誠", "ueda@example.com", "t-ueda", "true", "true", "true"],
]


@pytest.fixture
def db(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A migrated database that the command reads from DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    return engine


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] = HEADER, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Company, Member, Preferences, AuditLog)}


def member(engine: Engine, login_id: str) -> Member:
    with Session(engine, expire_on_commit=False) as session:
        found = session.scalars(select(Member).where(Member.login_id == login_id)).one()
        _ = (found.company, found.preferences)  # load both before the session closes
        return found


def audit(engine: Engine, entity: str, entity_id: int) -> list[AuditLog]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.entity == entity, AuditLog.entity_id == entity_id)
                                    .order_by(AuditLog.id)))


# --- seed-demo ---------------------------------------------------------------------------------------------------


def test_seed_demo_twice_is_idempotent(db: Engine, capsys) -> None:
    code, out, _ = run(capsys, "db", "seed-demo")
    assert code == 0 and DEMO_SHARED_EMAIL in out
    first = counts(db)
    assert first["companies"] == 3 and first["members"] == 7 and first["preferences"] == 7
    assert first["audit_log"] == 3 + 7

    assert run(capsys, "db", "seed-demo")[0] == 0
    assert counts(db) == first  # nothing duplicated, nothing re-audited

    with Session(db) as session:
        companies = session.scalars(select(Company)).all()
        assert {company.membership_class for company in companies} == {"法人会員", "賛助会員"}
        assert any(company.billing_contact_email for company in companies)
        for company in companies:
            assert sum(m.is_representative for m in company.members) == 1, company.name
        shared = session.scalars(select(Member).where(Member.email == DEMO_SHARED_EMAIL)).all()
        assert len(shared) == 2 and sorted(m.is_representative for m in shared) == [False, True]
        choices = {(p.newsletter, p.postal_dm) for p in session.scalars(select(Preferences))}
        assert choices >= {(True, True), (False, False)}
        assert set(session.scalars(select(AuditLog.actor))) == {"seed-demo"}
        assert all(m.login_id.startswith("demo-") and m.email.endswith("@example.com")
                   for m in session.scalars(select(Member)))


# --- import ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_import_creates_companies_members_preferences_and_audit(db: Engine, tmp_path, capsys, bom: bool) -> None:
    rows = [
        [ALPHA, "法人会員", "青木 一郎", "Aoki@Example.com", "t-aoki", "TRUE", "はい", "0", "ignored"],
        [ALPHA, "法人会員", "石井 花子", "ishii@example.com", "t-ishii", "no", "いいえ", "Yes", "ignored"],
        [BETA, "賛助会員", "上田 誠", "ueda@example.com", "t-ueda", "1", "false", "true", "ignored"],
    ]
    path = write_csv(tmp_path / "members.csv", rows, header=HEADER + ["memo"], bom=bom)

    code, out, err = run(capsys, "members", "import", str(path))
    assert code == 0, err
    assert "2 created" in out and "3 created, 0 updated, 0 unchanged" in out
    assert counts(db) == {"companies": 2, "members": 3, "preferences": 3, "audit_log": 5}

    aoki = member(db, "t-aoki")
    assert (aoki.name, aoki.email, aoki.is_representative) == ("青木 一郎", "aoki@example.com", True)
    assert (aoki.company.name, aoki.company.membership_class) == (ALPHA, "法人会員")
    assert (aoki.preferences.newsletter, aoki.preferences.postal_dm) == (True, False)
    ishii = member(db, "t-ishii")
    assert (ishii.is_representative, ishii.preferences.newsletter, ishii.preferences.postal_dm) == (False, False, True)
    assert member(db, "t-ueda").company.membership_class == "賛助会員"

    [entry] = audit(db, "member", aoki.id)
    assert (entry.actor, entry.channel, entry.action, entry.before) == ("secretariat", "cli", "create", None)
    assert entry.after["company"] == ALPHA and entry.after["postal_dm"] is False
    [company_entry] = audit(db, "company", aoki.company.id)
    assert company_entry.action == "create" and company_entry.after["membership_class"] == "法人会員"


def test_reimport_updates_by_login_id_and_records_before_and_after(db: Engine, tmp_path, capsys) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    aoki_id = member(db, "t-aoki").id
    changed = [
        [ALPHA, "法人会員", "青木 一郎", "aoki@example.com", "t-aoki", "true", "false", "false"],  # newsletter off
        [BETA, "法人会員", "石井 花子", "hanako.ishii@example.com", "t-ishii", "false", "false", "true"],  # moved
        [BETA, "法人会員", "上田 誠", "ueda@example.com", "t-ueda", "true", "true", "true"],  # class changed
        ["ガンマ合同会社", "法人会員", "遠藤 健", "endo@example.com", "t-endo", "true", "true", "true"],
    ]
    code, out, err = run(capsys, "members", "import", str(write_csv(tmp_path / "v2.csv", changed)))
    assert code == 0, err
    assert "1 created, 1 updated" in out  # companies: ガンマ created, ベータ's class updated
    assert "1 created, 2 updated, 1 unchanged" in out
    assert counts(db)["members"] == 4

    aoki = member(db, "t-aoki")
    assert aoki.id == aoki_id and aoki.preferences.newsletter is False
    update = audit(db, "member", aoki.id)[-1]
    assert (update.action, update.before, update.after) == ("update", {"newsletter": True}, {"newsletter": False})

    ishii = member(db, "t-ishii")
    assert (ishii.company.name, ishii.email) == (BETA, "hanako.ishii@example.com")
    update = audit(db, "member", ishii.id)[-1]
    assert update.before == {"email": "ishii@example.com", "company": ALPHA}
    assert update.after == {"email": "hanako.ishii@example.com", "company": BETA}

    beta = member(db, "t-ueda").company
    assert beta.membership_class == "法人会員"
    [update] = [entry for entry in audit(db, "company", beta.id) if entry.action == "update"]
    assert (update.before, update.after) == ({"membership_class": "賛助会員"}, {"membership_class": "法人会員"})

    assert run(capsys, "members", "import", str(tmp_path / "v2.csv"))[1].count("0 created") == 2  # idempotent


BAD_FILES = {
    "missing value": ([[ALPHA, "法人会員", "新井 一", "", "t-arai", "false", "true", "true"]], 3, "'email' is empty"),
    "bad e-mail": ([[ALPHA, "法人会員", "新井 一", "arai@", "t-arai", "false", "true", "true"]], 3, "not an e-mail"),
    "unknown class": ([[ALPHA, "一般会員", "新井 一", "arai@example.com", "t-arai", "false", "true", "true"]], 3,
                      "'一般会員' is not"),
    "bad boolean": ([[ALPHA, "法人会員", "新井 一", "arai@example.com", "t-arai", "false", "maybe", "true"]], 3,
                    "'maybe' is not true/false"),
    "duplicate login": ([[ALPHA, "法人会員", "新井 一", "arai@example.com", "t-ishii", "false", "true", "true"]], 3,
                        "already appears on line 2"),
    "second representative in the file": (
        [[BETA, "賛助会員", "新井 一", "arai@example.com", "t-arai", "true", "true", "true"]], 4,
        "2 representatives (line 3 ('t-arai'), line 4 ('t-ueda'))"),
    "second representative in the database": (
        [[ALPHA, "法人会員", "新井 一", "arai@example.com", "t-arai", "true", "true", "true"]], 3,
        "existing account 't-aoki'"),
    "field too long": ([[ALPHA, "法人会員", "新井 一", "arai@example.com", "x" * 101, "false", "true", "true"]], 3,
                       "at most 100"),
    "line break in a name": ([[ALPHA, "法人会員", "新井\n一", "arai@example.com", "t-arai", "false", "true", "true"]],
                             3, "line break"),
    "blank row before the bad one": ([[], [ALPHA, "法人会員", "新井 一", "arai@example.com", "t-arai", "false", "",
                                           "true"]], 4, "'newsletter' is empty"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_a_bad_row_names_file_and_line_and_writes_nothing(db: Engine, tmp_path, capsys, case: str) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    before = counts(db)
    bad_rows, line, problem = BAD_FILES[case]
    # Line 2 is valid and would move t-ishii to a new company: it must not be applied either.
    good = ["新会社株式会社", "法人会員", "石井 花子", "ishii@example.com", "t-ishii", "false", "false", "false"]
    path = write_csv(tmp_path / "bad.csv", [good, *bad_rows, BASE_ROWS[2]])

    code, out, err = run(capsys, "members", "import", str(path))
    assert code == 2 and out == ""
    assert str(path) in err and f"line {line}:" in err and problem in err, err
    assert "nothing was imported" in err
    assert counts(db) == before
    assert member(db, "t-ishii").company.name == ALPHA


def test_file_level_problems_are_reported_with_the_file(db: Engine, tmp_path, capsys) -> None:
    no_email = write_csv(tmp_path / "no_email.csv", [], header=[c for c in HEADER if c != "email"])
    code, _, err = run(capsys, "members", "import", str(no_email))
    assert code == 2 and f"{no_email}: line 1:" in err and "email" in err

    shift_jis = tmp_path / "excel.csv"
    shift_jis.write_bytes((",".join(HEADER) + "\r\n" + ",".join(BASE_ROWS[0]) + "\r\n").encode("cp932"))
    code, _, err = run(capsys, "members", "import", str(shift_jis))
    assert code == 2 and str(shift_jis) in err and "line 2:" in err and "CSV UTF-8" in err

    missing = tmp_path / "nowhere" / "members.csv"
    code, _, err = run(capsys, "members", "import", str(missing))
    assert code == 2 and str(missing) in err and "no such file" in err
    assert counts(db)["audit_log"] == 0


def test_hostile_values_are_stored_verbatim(db: Engine, tmp_path, capsys) -> None:
    drop = "'; DROP TABLE members; --"
    script = "<script>alert(1)</script>"
    login = "x'); DELETE FROM companies; --"
    rows = [[drop, "法人会員", script, "o'brien@example.com", login, "true", "true", "true"]]
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "hostile.csv", rows)))[0] == 0

    assert {"members", "companies"} <= set(inspect(db).get_table_names())
    stored = member(db, login)
    assert (stored.name, stored.company.name, stored.email) == (script, drop, "o'brien@example.com")

    code, out, _ = run(capsys, "members", "show", "O'Brien@example.com", "--json")
    [account] = json.loads(out)
    assert (account["name"], account["company"]["name"], account["login_id"]) == (script, drop, login)
    code, out, _ = run(capsys, "members", "show", "o'brien@example.com")
    assert code == 0 and script in out and drop in out


# --- show --------------------------------------------------------------------------------------------------------


def test_show_lists_both_accounts_of_a_shared_address(db: Engine, capsys) -> None:
    assert run(capsys, "db", "seed-demo")[0] == 0
    rep = member(db, "demo-yamada-rep")
    with Session(db) as session, session.begin():
        for status, key in (("open", "a"), ("done", "b")):
            session.add(SecretariatRequest(kind="representative_change", status=status, member_id=rep.id,
                                           company_id=rep.company_id, channel="web", user_ref="u1",
                                           idempotency_key=f"test-{key}"))

    code, out, err = run(capsys, "members", "show", DEMO_SHARED_EMAIL.upper(), "--json")
    assert code == 0, err
    accounts = json.loads(out)
    assert [a["login_id"] for a in accounts] == ["demo-yamada", "demo-yamada-rep"]
    personal, representative = accounts
    assert personal["is_representative"] is False and representative["is_representative"] is True
    assert representative["company"].items() >= {"name": "株式会社サンプル製作所", "membership_class": "法人会員",
                                                  "status": "active"}.items()
    assert set(personal["preferences"]) == {"newsletter", "postal_dm", "interest_committees", "regional_forums"}
    assert personal["preferences"]["interest_committees"]
    assert [r["status"] for r in representative["open_requests"]] == ["open"]
    assert representative["open_requests"][0]["kind"] == "representative_change"
    datetime.fromisoformat(representative["open_requests"][0]["created_at"])
    [entry] = personal["audit"]
    assert (entry["actor"], entry["action"], entry["after"]["login_id"]) == ("seed-demo", "create", "demo-yamada")
    assert datetime.fromisoformat(entry["created_at"]).tzinfo is not None

    code, out, _ = run(capsys, "members", "show", DEMO_SHARED_EMAIL)
    assert code == 0
    assert "2 件のアカウント" in out and "demo-yamada-rep" in out and "株式会社サンプル製作所" in out
    assert "企業代表者" in out and "メールマガジン" in out and "representative_change" in out and "seed-demo" in out


def test_show_puts_the_newest_change_first(db: Engine, tmp_path, capsys) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    renamed = [["株式会社アルファ", "法人会員", "青木 一朗", "aoki@example.com", "t-aoki", "true", "true", "false"]]
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v2.csv", renamed)))[0] == 0
    [account] = json.loads(run(capsys, "members", "show", "aoki@example.com", "--json")[1])
    assert [entry["action"] for entry in account["audit"]] == ["update", "create"]
    assert account["audit"][0]["after"] == {"name": "青木 一朗"}


def test_show_an_unknown_address(db: Engine, capsys) -> None:
    code, out, _ = run(capsys, "members", "show", "nobody@example.com")
    assert code == 0 and "no account" in out and "アカウントはありません" in out
    code, out, _ = run(capsys, "members", "show", "nobody@example.com", "--json")
    assert code == 0 and json.loads(out) == []


# --- an unusable database ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["db", "seed-demo"], ["members", "show", "a@example.com"],
                                  ["members", "import", "members.csv"]], ids=["seed-demo", "show", "import"])
def test_a_database_not_migrated_says_to_run_db_upgrade(empty_database_url: str, monkeypatch, capsys, argv) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url)  # an empty database: no schema yet
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "jsug-bot db upgrade" in err


def test_show_keeps_the_audit_trail_to_the_newest_fifty(db: Engine, tmp_path, capsys) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    aoki = member(db, "t-aoki")
    with Session(db) as session, session.begin():
        for number in range(60):
            session.add(AuditLog(actor=f"test-{number}", channel="web", action="update", entity="preferences",
                                 entity_id=aoki.id, before={"newsletter": True}, after={"newsletter": False}))
    [account] = json.loads(run(capsys, "members", "show", "aoki@example.com", "--json")[1])
    assert len(account["audit"]) == 50
    assert account["audit"][0]["actor"] == "test-59"  # preferences changed elsewhere count as the member's history


def test_show_escapes_separators_and_invisible_characters_stored_before_the_import_refused_them(
    db: Engine, tmp_path, capsys
) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    with Session(db) as session, session.begin():
        found = session.scalars(select(Member).where(Member.login_id == "t-aoki")).one()
        found.name = "青木\u2028[1] 偽の行\u202e一郎\x85"

    code, out, _ = run(capsys, "members", "show", "aoki@example.com")

    assert code == 0
    assert out.splitlines() == out.split("\n")[:-1]  # no line break but the command's own
    assert "青木\\u2028[1] 偽の行\\u202e一郎\\x85" in out
