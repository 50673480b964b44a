"""The member import against hostile or sloppy spreadsheets, and address look-ups by the folded index.

Refused (the whole file, with the line): a cell that a spreadsheet would run as a formula if the list
were exported (``=``, ``+``, ``-``, ``@``, also after blanks, tabs, line breaks or in full-width form),
a zero-width or other invisible character, a malformed CSV (an unterminated quote). Login ids match
after NFKC and case folding (a re-import in capitals or full-width updates the same member, and a
file naming one login twice that way is refused); addresses are stored NFKC-folded in lower case and
looked up through ``ix_members_email_folded`` on ``lower(email)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from bot.identity import members_by_email
from bot.storage.members import show_member
from bot.storage.models import Company, Member
from tests.test_members_cli import ALPHA, BASE_ROWS, HEADER, counts, member, run, write_csv

ROW = [ALPHA, "法人会員", "新井 一", "arai@example.com", "t-arai", "false", "true", "true"]
LISTS = HEADER + ["interest_committees"]


@pytest.fixture
def db(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return engine


def row(**cells: str) -> list[str]:
    values = dict(zip(HEADER, ROW, strict=True))
    values.update(cells)
    return [values[name] for name in HEADER]


def refused(db: Engine, capsys: pytest.CaptureFixture[str], path: Path, line: int, *words: str) -> str:
    before = counts(db)
    code, out, err = run(capsys, "members", "import", str(path))
    assert code == 2 and out == "", err
    assert f"line {line}:" in err and "nothing was imported" in err, err
    assert all(word in err for word in words), err
    assert counts(db) == before
    return err


# --- formulas (CSV injection) ------------------------------------------------------------------------------------


FORMULAS = {
    "name =": ("name", "=HYPERLINK(\"https://evil.example\",\"クリック\")"),
    "company +": ("company", "+81-3-1234-5678"),
    "name -": ("name", "-2+3"),
    "name @": ("name", "@SUM(A1:A9)"),
    "after spaces": ("name", "   =1+1"),
    "after a tab": ("name", "\t=1+1"),
    "after a carriage return": ("company", "\r@SUM(1+1)*cmd|' /C calc'!A0"),
    "full-width =": ("name", "＝1+1"),
    "login id": ("login_id", "=t-arai"),
    "e-mail": ("email", "-arai@example.com"),
    "billing contact": ("billing_contact_name", "=cmd|' /C calc'!A0"),
}


@pytest.mark.parametrize("case", FORMULAS, ids=list(FORMULAS))
def test_a_cell_that_would_run_as_a_formula_is_refused(db: Engine, tmp_path: Path, capsys, case: str) -> None:
    column, value = FORMULAS[case]
    header = HEADER + ["billing_contact_name"]
    cells = row() + [""]
    cells[header.index(column)] = value
    path = write_csv(tmp_path / "formula.csv", [BASE_ROWS[0], cells], header=header)

    err = refused(db, capsys, path, 3, f"column '{column}'", "formula")
    assert "line 2:" not in err  # the good row is not blamed


def test_a_list_item_that_would_run_as_a_formula_is_refused(db: Engine, tmp_path: Path, capsys) -> None:
    path = write_csv(tmp_path / "lists.csv", [row() + ["財務会計部会;=cmd|' /C calc'!A0"]], header=LISTS)

    refused(db, capsys, path, 2, "interest_committees", "formula")


def test_a_minus_or_at_inside_a_value_is_fine(db: Engine, tmp_path: Path, capsys) -> None:
    path = write_csv(tmp_path / "fine.csv", [row(name="新井-一 @東京", company="アルファ+ベータ株式会社")])

    assert run(capsys, "members", "import", str(path))[0] == 0
    assert member(db, "t-arai").name == "新井-一 @東京"


# --- invisible characters ----------------------------------------------------------------------------------------


INVISIBLE = {"ZWSP": "\u200b", "ZWNJ": "\u200c", "ZWJ": "\u200d", "WJ": "\u2060", "BOM": "\ufeff", "RLO": "\u202e"}


@pytest.mark.parametrize("column", ["name", "company", "login_id", "email"])
@pytest.mark.parametrize("char", list(INVISIBLE.values()), ids=list(INVISIBLE))
def test_a_zero_width_or_invisible_character_is_refused(db: Engine, tmp_path: Path, capsys, column: str,
                                                         char: str) -> None:
    value = dict(zip(HEADER, ROW, strict=True))[column]
    path = write_csv(tmp_path / "invisible.csv", [row(**{column: value[:3] + char + value[3:]})])

    refused(db, capsys, path, 2, f"column '{column}'", f"U+{ord(char):04X}", "invisible")


# --- folding login ids and addresses -----------------------------------------------------------------------------


def test_a_reimport_in_capitals_or_full_width_updates_the_same_member(db: Engine, tmp_path: Path, capsys) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0
    aoki, ishii = member(db, "t-aoki"), member(db, "t-ishii")
    again = [
        [ALPHA, "法人会員", "青木 一朗", "ＡＯＫＩ@ｅｘａｍｐｌｅ.ｃｏｍ", "T-AOKI", "true", "true", "false"],
        [ALPHA, "法人会員", "石井 花子", "Ishii@Example.COM", "ｔ－ｉｓｈｉｉ", "false", "false", "true"],
    ]

    code, out, err = run(capsys, "members", "import", str(write_csv(tmp_path / "v2.csv", again)))

    assert code == 0, err
    assert "0 created, 1 updated, 1 unchanged" in out
    assert counts(db)["members"] == 3
    renamed = member(db, "t-aoki")  # the account keeps its login id
    assert (renamed.id, renamed.name, renamed.email) == (aoki.id, "青木 一朗", "aoki@example.com")
    assert member(db, "t-ishii").id == ishii.id


def test_addresses_are_stored_nfkc_folded(db: Engine, tmp_path: Path, capsys) -> None:
    path = write_csv(tmp_path / "v1.csv", [row(email="Ａｒａｉ.Ｈａｊｉｍｅ@Ｅｘａｍｐｌｅ.ｃｏ.ｊｐ",
                                               login_id="ｔ－ａｒａｉ")])
    assert run(capsys, "members", "import", str(path))[0] == 0

    stored = member(db, "t-arai")
    assert stored.email == "arai.hajime@example.co.jp"


def test_one_login_twice_in_a_file_is_found_after_folding(db: Engine, tmp_path: Path, capsys) -> None:
    path = write_csv(tmp_path / "twice.csv", [row(), row(login_id="T-ARAI", email="other@example.com"),
                                              row(login_id="ｔ－ａｒａｉ", email="third@example.com")])

    err = refused(db, capsys, path, 3, "'T-ARAI' already appears on line 2 as 't-arai'", "case")
    assert "line 4:" in err


def test_existing_accounts_that_differ_only_in_case_are_not_guessed_between(db: Engine, tmp_path: Path,
                                                                             capsys) -> None:
    with Session(db) as session, session.begin():
        company = Company(name=ALPHA)
        session.add_all([Member(company=company, name="旧 一", email="old1@example.com", login_id="t-Case"),
                         Member(company=company, name="旧 二", email="old2@example.com", login_id="t-case")])

    path = write_csv(tmp_path / "case.csv", [row(login_id="T-CASE")])
    refused(db, capsys, path, 2, "matches 2 existing accounts", "'t-Case'", "'t-case'")


def test_show_finds_an_address_typed_in_full_width(db: Engine, tmp_path: Path, capsys) -> None:
    assert run(capsys, "members", "import", str(write_csv(tmp_path / "v1.csv", BASE_ROWS)))[0] == 0

    code, out, _ = run(capsys, "members", "show", "ＡＯＫＩ@ｅｘａｍｐｌｅ.ｃｏｍ", "--json")

    assert code == 0
    assert [account["login_id"] for account in json.loads(out)] == ["t-aoki"]


# --- malformed CSV -----------------------------------------------------------------------------------------------


def test_an_unterminated_quote_is_named_with_its_line(db: Engine, tmp_path: Path, capsys) -> None:
    path = tmp_path / "quote.csv"
    good = ",".join(BASE_ROWS[0])
    path.write_text(",".join(HEADER) + "\n" + good + "\n" + '株式会社アルファ,法人会員,"青木 二郎,aoki2@example.com,t-aoki2,'
                    'false,true,true\n' + ",".join(BASE_ROWS[2]) + "\n", encoding="utf-8")

    err = refused(db, capsys, path, 3, "malformed CSV", "unterminated", "never closed")
    assert "line break" not in err  # not mistaken for a cell with a line break


def test_an_unterminated_quote_after_a_multi_line_cell_gives_the_row_and_the_files_line(
    db: Engine, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(",".join(HEADER) + "\n" + '"株式会社\nアルファ",法人会員,青木,a@example.com,t-a,true,true,true\n'
                    + '"ベータ,賛助会員,上田,u@example.com,t-u,true,true,true\n', encoding="utf-8")

    refused(db, capsys, path, 3, "line 4 of the file", "unterminated")


def test_text_after_a_closing_quote_is_malformed_csv(db: Engine, tmp_path: Path, capsys) -> None:
    path = tmp_path / "stray.csv"
    path.write_text(",".join(HEADER) + "\n" + '"株式会社アルファ"x,法人会員,青木,a@example.com,t-a,true,true,true\n',
                    encoding="utf-8")

    refused(db, capsys, path, 2, "malformed CSV")


# --- address look-ups use the index on lower(email) ----------------------------------------------------------


@pytest.fixture
def many_members(db: Engine) -> Engine:
    """Enough members that a sequential scan would be the planner's choice without a usable index."""
    with Session(db) as session, session.begin():
        company = Company(name=ALPHA)
        session.add(company)
        session.flush()
        session.execute(insert(Member), [
            {"company_id": company.id, "name": f"会員 {number}", "email": f"member{number}@example.com",
             "login_id": f"m-{number}", "is_representative": False, "status": "active"}
            for number in range(3000)
        ])
        session.add(Member(company_id=company.id, name="青木 一郎", email="aoki@example.com", login_id="t-aoki"))
    with db.begin() as connection:
        connection.execute(text("ANALYZE"))
    return db


def query_plans(engine: Engine, lookup: Callable[[Session], object]) -> list[str]:
    """The plans of the statements ``lookup`` runs against ``members`` by address, as the database makes them."""
    captured: list[tuple[str, Any]] = []

    def keep(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "lower(members.email)" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with Session(engine) as session:
            assert lookup(session)  # the address was found
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert captured, "no look-up by lower(members.email) was run"
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as connection:
        return [" | ".join(str(line[-1]) for line in connection.exec_driver_sql(explain + statement, parameters))
                for statement, parameters in captured]


@pytest.mark.parametrize("lookup", [
    pytest.param(lambda session: show_member(session, "ＡＯＫＩ@Example.com"), id="members-show"),
    pytest.param(lambda session: members_by_email(session, "Aoki@Example.com"), id="identity"),
])
def test_address_look_ups_use_the_folded_address_index(many_members: Engine,
                                                        lookup: Callable[[Session], object]) -> None:
    for plan in query_plans(many_members, lookup):
        assert "ix_members_email_folded" in plan, plan
        assert "Seq Scan on members" not in plan and "SCAN members" not in plan, plan
