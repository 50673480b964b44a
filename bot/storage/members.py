"""The secretariat's member operations: import the member list, look an address up, seed demo data.

The secretariat keeps the member list in a spreadsheet and exports it as CSV; ``import_members``
brings the database in line with it. A file is checked completely before anything is written, so a
typo on line 240 never leaves half a list behind: either the whole file is applied, in the caller's
transaction, or ``MemberImportError`` lists what to fix, with line numbers as the spreadsheet shows
them (the header is line 1). Every company and member the import creates or changes gets an audit
entry with the changed fields before and after.

Values are stored as text through bound parameters only; nothing from the file is ever interpreted.
The list may be exported and opened in a spreadsheet again, and two cells that look alike must name
one member, so a cell is refused when it starts like a formula (``=``, ``+``, ``-``, ``@``: CSV
injection) or holds a control or invisible (zero-width) character; login ids are matched, and checked
for duplicates, after NFKC and case folding (``fold_login_id``); addresses are stored NFKC-folded in
lower case (``fold_address``), the form every look-up uses, through the index on ``lower(email)``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from bot.storage.audit import record
from bot.storage.models import (
    AuditLog,
    Company,
    Member,
    MembershipClass,
    Meta,
    Preferences,
    RequestStatus,
    SecretariatRequest,
)

REQUIRED_COLUMNS = (
    "company", "membership_class", "name", "email", "login_id", "is_representative", "newsletter", "postal_dm",
)
#: Optional columns. A blank billing cell leaves the company's billing contact as it is (only one of a company's
#: rows needs to carry it); a list column, when present, is the member's full list, items separated by ``;``.
OPTIONAL_COLUMNS = ("billing_contact_name", "billing_contact_email", "interest_committees", "regional_forums")

DEMO_CSV = Path(__file__).with_name("demo_members.csv")
DEMO_KEY = "demo"
#: The demo address with two accounts (a personal one and the company representative account).
DEMO_SHARED_EMAIL = "yamada@example.com"

AUDIT_TRAIL_LIMIT = 50
#: How ``FlowContext.actor`` joins an operator and the member they act for: ``operator:NAME for member:ID``.
ON_BEHALF = " for "
OPEN_REQUEST_STATUSES = (RequestStatus.OPEN.value, RequestStatus.IN_PROGRESS.value)
MAX_PROBLEMS_SHOWN = 20
_CHUNK = 500  # keeps IN (...) lists well below SQLite's and PostgreSQL's bound-parameter limits

_TRUE = {"true", "1", "yes", "はい"}
_FALSE = {"false", "0", "no", "いいえ"}
# A practical check, not RFC 5322: the addresses the secretariat handles, with a dotted domain.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_CLASSES = {item.value for item in MembershipClass}
_T = TypeVar("_T")


class MemberImportError(Exception):
    """The member file cannot be imported; nothing of it was written.

    ``problems`` holds ``(line, problem)`` pairs, ``line`` as a spreadsheet numbers rows (header = 1),
    or None for a problem with the file as a whole.
    """

    def __init__(self, path: Path | str, problems: Sequence[tuple[int | None, str]]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        def one(line: int | None, problem: str) -> str:
            return f"line {line}: {problem}" if line is not None else problem

        if len(self.problems) == 1:
            return f"{self.path}: {one(*self.problems[0])}; nothing was imported"
        lines = [f"{self.path}: {len(self.problems)} problems, nothing was imported:"]
        lines += [f"  {one(*item)}" for item in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        return "\n".join(lines)


@dataclass
class ImportReport:
    path: Path
    companies_created: int = 0
    companies_updated: int = 0
    members_created: int = 0
    members_updated: int = 0
    members_unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path), "companies_created": self.companies_created,
            "companies_updated": self.companies_updated, "members_created": self.members_created,
            "members_updated": self.members_updated, "members_unchanged": self.members_unchanged,
        }


@dataclass(frozen=True)
class _Row:
    """One validated line of the file."""

    line: int
    company: str
    membership_class: str
    name: str
    email: str
    login_id: str
    is_representative: bool
    newsletter: bool
    postal_dm: bool
    billing_contact_name: str | None = None
    billing_contact_email: str | None = None
    interest_committees: list[str] | None = None  # None: the column is absent, leave the list as it is
    regional_forums: list[str] | None = None


@dataclass
class _Problems:
    items: list[tuple[int | None, str]] = field(default_factory=list)

    def add(self, line: int | None, problem: str) -> None:
        self.items.append((line, problem))


class _BadValue(ValueError):
    """A cell that cannot be used; the message names the column and the value."""


# --- reading and checking the file -------------------------------------------------------------------------------


def _max_length(table_column: Any) -> int:
    """The column's length from the model, so the importer never drifts from the schema."""
    return int(table_column.type.length)


_LIMITS = {
    "company": _max_length(Company.__table__.c.name),
    "name": _max_length(Member.__table__.c.name),
    "email": _max_length(Member.__table__.c.email),
    "login_id": _max_length(Member.__table__.c.login_id),
    "billing_contact_name": _max_length(Company.__table__.c.billing_contact_name),
    "billing_contact_email": _max_length(Company.__table__.c.billing_contact_email),
}


def _shown(value: str, limit: int = 60) -> str:
    """A cell as quoted in a message: shortened, so a huge cell does not flood the terminal."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def fold_login_id(login_id: str) -> str:
    """The form login ids are compared in: NFKC (full-width ＹＡＭＡＤＡ is YAMADA) and case folded.

    Folded in Python, never with SQL's ``lower()``: SQLite folds ASCII only, PostgreSQL by its locale.
    """
    return unicodedata.normalize("NFKC", login_id).casefold()


def fold_address(email: str) -> str:
    """The form addresses are stored and looked up in: NFKC, blanks trimmed, lower case.

    The import stores every address so (they are ASCII once NFKC-folded, so SQL's ``lower()`` agrees
    with Python's); a look-up compares ``lower(members.email)`` with it, which the index
    ``ix_members_email_folded`` serves."""
    return unicodedata.normalize("NFKC", email).strip().lower()


#: Zero-width and other invisible formatting characters (U+200B-U+200D, U+2060, U+FEFF, bidirectional
#: controls): two cells that look the same would name different members.
_INVISIBLE = "Cf"
#: A cell a spreadsheet would run as a formula if the list were ever exported and opened (CSV injection).
_FORMULA_START = ("=", "+", "-", "@")


def _checked(column: str, value: str) -> str:
    """A stripped, non-empty cell that holds nothing the assistant or a spreadsheet could misread.

    A cell that starts with ``=``, ``+``, ``-`` or ``@`` (also after leading blanks, tabs or line
    breaks, and in full-width form) is refused rather than neutralised: prefixing ``'`` would store
    a name the member does not have, and the secretariat can correct the spreadsheet.
    """
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise _BadValue(f"column '{column}' contains a line break or control character: {_shown(value)}")
    invisible = next((char for char in value if unicodedata.category(char) == _INVISIBLE), None)
    if invisible is not None:
        raise _BadValue(f"column '{column}' contains the invisible character U+{ord(invisible):04X} "
                        f"(zero-width or formatting): {_shown(value)}; retype the value")
    if unicodedata.normalize("NFKC", value[0]).startswith(_FORMULA_START):
        raise _BadValue(f"column '{column}': {_shown(value)} starts with {value[0]!r}, which a spreadsheet runs "
                        f"as a formula; such cells are refused, remove the leading character")
    return value


def _text(cells: dict[str, str], column: str, *, required: bool = True) -> str:
    value = cells.get(column, "").strip()
    if not value:
        if required:
            raise _BadValue(f"column '{column}' is empty (a value is required)")
        return ""
    _checked(column, value)
    _check_length(column, value)
    return value


def _check_length(column: str, value: str) -> None:
    limit = _LIMITS.get(column)
    if limit is not None and len(value) > limit:
        raise _BadValue(f"column '{column}' is {len(value)} characters long, at most {limit} are allowed")


def _email(cells: dict[str, str], column: str, *, required: bool = True) -> str:
    value = _text(cells, column, required=required)
    if not value:
        return value
    # One canonical form (``fold_address``): full-width input folded, compared case-insensitively.
    address = fold_address(value)
    if not _EMAIL.fullmatch(address):
        raise _BadValue(f"column '{column}': {_shown(value)} is not an e-mail address")
    _check_length(column, address)
    return address


def _login_id(cells: dict[str, str]) -> str:
    """The login id in NFKC form (full-width letters and digits folded; its case is kept)."""
    value = unicodedata.normalize("NFKC", _text(cells, "login_id"))
    _checked("login_id", value)
    _check_length("login_id", value)
    return value


def _boolean(cells: dict[str, str], column: str) -> bool:
    value = _text(cells, column)
    token = unicodedata.normalize("NFKC", value).lower()  # full-width ＴＲＵＥ or １ from a Japanese IME
    if token in _TRUE:
        return True
    if token in _FALSE:
        return False
    raise _BadValue(f"column '{column}': {_shown(value)} is not true/false (accepted: true/false, 1/0, yes/no, はい/いいえ)")


def _membership_class(cells: dict[str, str]) -> str:
    value = _text(cells, "membership_class")
    if value not in _CLASSES:
        raise _BadValue(f"column 'membership_class': {_shown(value)} is not {' or '.join(sorted(_CLASSES))}")
    return value


def _items(cells: dict[str, str], column: str, present: bool) -> list[str] | None:
    if not present:
        return None
    value = cells.get(column, "")
    if any(unicodedata.category(char) == "Cc" for char in value.strip()):
        raise _BadValue(f"column '{column}' contains a line break or control character: {_shown(value)}")
    return [_checked(column, item.strip()) for item in value.split(";") if item.strip()]


def _parse_row(line: int, cells: dict[str, str], header: set[str]) -> _Row:
    """One row's values, checked; the first bad cell raises ``_BadValue``."""
    return _Row(
        line=line,
        company=_text(cells, "company"),
        membership_class=_membership_class(cells),
        name=_text(cells, "name"),
        email=_email(cells, "email"),
        login_id=_login_id(cells),
        is_representative=_boolean(cells, "is_representative"),
        newsletter=_boolean(cells, "newsletter"),
        postal_dm=_boolean(cells, "postal_dm"),
        billing_contact_name=_text(cells, "billing_contact_name", required=False) or None,
        billing_contact_email=_email(cells, "billing_contact_email", required=False) or None,
        interest_committees=_items(cells, "interest_committees", "interest_committees" in header),
        regional_forums=_items(cells, "regional_forums", "regional_forums" in header),
    )


def _read_records(path: Path) -> list[list[str]]:
    """The file's records; UTF-8 with or without a byte order mark (Excel's "CSV UTF-8" writes one)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MemberImportError(path, [(None, "no such file")]) from None
    except IsADirectoryError:
        raise MemberImportError(path, [(None, "is a directory, not a CSV file")]) from None
    except OSError as exc:
        raise MemberImportError(path, [(None, f"cannot read the file ({exc.strerror or exc})")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MemberImportError(
            path, [(line, "the file is not UTF-8 text; save it from the spreadsheet as 'CSV UTF-8'")]
        ) from None
    # strict: a quote in the wrong place is an error, not silently glued into a cell; without it an
    # unterminated quote swallows the rest of the file into one cell and is reported as a line break.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[list[str]] = []
    while True:
        first_line = reader.line_num + 1  # the file's line on which the next record starts
        try:
            record = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            row = len(records) + 1  # as the spreadsheet numbers rows
            where = "" if row == first_line else f" (line {first_line} of the file)"
            if "unexpected end of data" in str(exc):
                problem = (f"malformed CSV: a quoted cell that starts on this row{where} is never closed "
                           f"(an unterminated \" quote), so the rest of the file cannot be read")
            else:
                problem = f"malformed CSV{where}: {exc}"
            raise MemberImportError(path, [(row, problem)]) from None
        records.append(record)


def _header(path: Path, records: list[list[str]]) -> list[str]:
    if not records or not any(cell.strip() for cell in records[0]):
        expected = ", ".join(REQUIRED_COLUMNS)
        raise MemberImportError(path, [(1, f"the header row is missing; expected columns: {expected}")])
    header = [cell.strip().lstrip("\ufeff").lower() for cell in records[0]]  # a second BOM (files joined)
    known = set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    duplicates = sorted(name for name, count in Counter(header).items() if name in known and count > 1)
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    problems: list[tuple[int | None, str]] = []
    if missing:
        problems.append((1, f"the header lacks the column(s) {', '.join(missing)}"))
    if duplicates:
        problems.append((1, f"the header names the column(s) {', '.join(duplicates)} more than once"))
    if problems:
        raise MemberImportError(path, problems)
    return header


def _rows(path: Path, problems: _Problems) -> list[_Row]:
    records = _read_records(path)
    header = _header(path, records)
    known = set(header) & set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    rows: list[_Row] = []
    for line, values in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in values):
            continue  # a blank spreadsheet row
        if any(cell.strip() for cell in values[len(header):]):
            problems.add(line, f"the row has {len(values)} values but the header only {len(header)} columns")
            continue
        cells = {name: value for name, value in zip(header, values, strict=False) if name in known}
        try:
            rows.append(_parse_row(line, cells, known))
        except _BadValue as exc:
            problems.add(line, str(exc))
    return rows


_COMPANY_COLUMNS = ("membership_class", "billing_contact_name", "billing_contact_email")


def _check_within_file(rows: list[_Row], problems: _Problems) -> tuple[list[_Row], dict[str, dict[str, Any]]]:
    """Duplicate logins, and a company described two ways.

    Returns the rows without duplicate logins, and per company the values its rows give (a blank
    billing cell gives none), so a company is written once with everything the file says about it.
    """
    first_line: dict[str, tuple[int, str]] = {}
    given: dict[str, dict[str, tuple[Any, int]]] = {}
    unique: list[_Row] = []
    for row in rows:
        key = fold_login_id(row.login_id)
        if key in first_line:
            earlier_line, earlier = first_line[key]
            spelt = "" if earlier == row.login_id else (f" as {_shown(earlier)} (login ids are compared ignoring "
                                                          f"case and full-width/half-width forms)")
            problems.add(row.line, f"login_id {_shown(row.login_id)} already appears on line {earlier_line}{spelt}")
            continue
        first_line[key] = (row.line, row.login_id)
        unique.append(row)
        company = given.setdefault(row.company, {})
        for column in _COMPANY_COLUMNS:
            value = getattr(row, column)
            if value is None:
                continue
            earlier, line = company.setdefault(column, (value, row.line))
            if earlier != value:
                problems.add(row.line, f"company {_shown(row.company)} has {column} {_shown(value)} here "
                                       f"but {_shown(earlier)} on line {line}")
    fields = {name: {column: value for column, (value, _) in columns.items()} for name, columns in given.items()}
    return unique, fields


# --- comparing with the database ---------------------------------------------------------------------------------


def _chunks(values: Iterable[_T]) -> Iterable[list[_T]]:
    items = list(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _existing_members(session: Session, rows: list[_Row], problems: _Problems) -> dict[str, Member]:
    """The existing accounts the rows name, by folded login id (``fold_login_id``).

    Every login id is read and folded here rather than compared with SQL's ``lower()``, which folds
    ASCII only on SQLite: an import is rare and the ids are short. Two accounts whose ids fold alike
    (made before ids were folded) cannot be told apart, so a row naming them is a problem.
    """
    wanted = {fold_login_id(row.login_id) for row in rows}
    matches: dict[str, list[tuple[int, str]]] = {}
    for member_id, login_id in session.execute(select(Member.id, Member.login_id)):
        key = fold_login_id(login_id)
        if key in wanted:
            matches.setdefault(key, []).append((member_id, login_id))
    for row in rows:
        found = matches.get(fold_login_id(row.login_id), [])
        if len(found) > 1:
            names = ", ".join(_shown(login_id) for _, login_id in sorted(found))
            problems.add(row.line, f"login_id {_shown(row.login_id)} matches {len(found)} existing accounts ({names}) "
                                   f"that differ only in case or width; rename all but one first")
    ids = {found[0][0]: key for key, found in matches.items() if len(found) == 1}
    members: dict[str, Member] = {}
    for chunk in _chunks(ids):
        query = (
            select(Member).where(Member.id.in_(chunk))
            .options(selectinload(Member.company), selectinload(Member.preferences))
        )
        members.update((ids[member.id], member) for member in session.scalars(query))
    return members


def _existing_companies(session: Session, names: Iterable[str]) -> dict[str, Company]:
    found: dict[str, Company] = {}
    for chunk in _chunks(names):
        query = select(Company).where(Company.name.in_(chunk))
        found.update((company.name, company) for company in session.scalars(query))
    return found


def _check_representatives(
    session: Session, rows: list[_Row], companies: dict[str, Company], problems: _Problems
) -> None:
    """One representative per company (代表者は1社につき1名), counting the accounts the file does not mention."""
    in_file = {fold_login_id(row.login_id) for row in rows}
    claims: dict[str, list[tuple[int | None, str]]] = {}
    for chunk in _chunks(company.id for company in companies.values()):
        query = (
            select(Member)
            .where(Member.company_id.in_(chunk), Member.is_representative.is_(True), Member.status == "active")
            .options(selectinload(Member.company))
        )
        for member in session.scalars(query):
            if fold_login_id(member.login_id) not in in_file:
                claims.setdefault(member.company.name, []).append((None, member.login_id))
    for row in rows:
        if row.is_representative:
            claims.setdefault(row.company, []).append((row.line, row.login_id))
    for company, holders in claims.items():
        lines = [line for line, _ in holders if line is not None]
        if len(holders) > 1 and lines:
            who = ", ".join(
                f"line {line} ({_shown(login)})" if line is not None else f"existing account {_shown(login)}"
                for line, login in holders
            )
            problems.add(max(lines), f"company {_shown(company)} would have {len(holders)} representatives "
                                     f"({who}); a company has one representative, mark the others false")


# --- writing -----------------------------------------------------------------------------------------------------

_PREFERENCE_FIELDS = ("newsletter", "postal_dm", "interest_committees", "regional_forums")


def _member_state(member: Member) -> dict[str, Any]:
    """The fields the import manages, as JSON-ready values for comparison and the audit log."""
    state: dict[str, Any] = {
        "name": member.name, "email": member.email, "login_id": member.login_id, "company": member.company.name,
        "is_representative": member.is_representative,
    }
    preferences = member.preferences
    if preferences is not None:
        state["newsletter"], state["postal_dm"] = preferences.newsletter, preferences.postal_dm
        state["interest_committees"] = list(preferences.interest_committees or [])
        state["regional_forums"] = list(preferences.regional_forums or [])
    return state


def _wanted_state(row: _Row) -> dict[str, Any]:
    state: dict[str, Any] = {
        "name": row.name, "email": row.email, "login_id": row.login_id, "company": row.company,
        "is_representative": row.is_representative, "newsletter": row.newsletter, "postal_dm": row.postal_dm,
    }
    if row.interest_committees is not None:
        state["interest_committees"] = row.interest_committees
    if row.regional_forums is not None:
        state["regional_forums"] = row.regional_forums
    return state


class _Writer:
    """Applies checked rows in the caller's session, auditing each change and counting it."""

    def __init__(self, session: Session, companies: dict[str, Company], company_fields: dict[str, dict[str, Any]],
                 path: Path, actor: str, channel: str):
        self.session, self.companies, self.actor, self.channel = session, companies, actor, channel
        self.company_fields = company_fields
        self.report = ImportReport(path)

    def _audit(self, action: str, entity: str, entity_id: int, before: dict[str, Any] | None,
               after: dict[str, Any]) -> None:
        record(self.session, actor=self.actor, channel=self.channel, action=action, entity=entity,
               entity_id=entity_id, before=before, after=after)

    def company(self, row: _Row) -> Company:
        wanted = self.company_fields[row.company]
        company = self.companies.get(row.company)
        if company is None:
            company = Company(name=row.company, status="active", **wanted)
            self.session.add(company)
            self.session.flush()
            self.companies[row.company] = company
            self.report.companies_created += 1
            after = {"name": company.name, "status": company.status, **wanted}
            self._audit("create", "company", company.id, None, after)
            return company
        changed = {name: value for name, value in wanted.items() if getattr(company, name) != value}
        if changed:
            before = {name: getattr(company, name) for name in changed}
            for name, value in changed.items():
                setattr(company, name, value)
            self.report.companies_updated += 1  # once: the first row applies all the file says of the company
            self._audit("update", "company", company.id, before, changed)
        return company

    def member(self, row: _Row, company: Company, existing: Member | None) -> None:
        if existing is None:
            member = Member(company=company, name=row.name, email=row.email, login_id=row.login_id,
                            is_representative=row.is_representative, status="active")
            member.preferences = Preferences(
                newsletter=row.newsletter, postal_dm=row.postal_dm,
                interest_committees=row.interest_committees or [], regional_forums=row.regional_forums or [],
            )
            self.session.add(member)
            self.session.flush()
            self.report.members_created += 1
            self._audit("create", "member", member.id, None, _member_state(member))
            return
        current = _member_state(existing)
        changed = {name: value for name, value in _wanted_state(row).items() if current.get(name) != value}
        if not changed:
            self.report.members_unchanged += 1
            return
        existing.name, existing.email, existing.is_representative = row.name, row.email, row.is_representative
        existing.company = company
        if existing.preferences is None:
            existing.preferences = Preferences(interest_committees=[], regional_forums=[])
        preferences = existing.preferences
        preferences.newsletter, preferences.postal_dm = row.newsletter, row.postal_dm
        if row.interest_committees is not None:
            preferences.interest_committees = row.interest_committees
        if row.regional_forums is not None:
            preferences.regional_forums = row.regional_forums
        self.session.flush()
        self.report.members_updated += 1
        self._audit("update", "member", existing.id, {name: current.get(name) for name in changed}, changed)


def import_members(
    session: Session, csv_path: Path | str, actor: str = "secretariat", channel: str = "cli"
) -> ImportReport:
    """Create or update companies and members from the secretariat's CSV, matched by ``login_id``.

    Everything is checked before the first write, so on ``MemberImportError`` the session is untouched.
    The caller owns the transaction (``bot.storage.db.transaction``): the changes and their audit entries
    are committed together, or not at all.
    """
    path = Path(csv_path)
    problems = _Problems()
    rows, company_fields = _check_within_file(_rows(path, problems), problems)
    existing = _existing_members(session, rows, problems)
    companies = _existing_companies(session, {row.company for row in rows})
    _check_representatives(session, rows, companies, problems)
    if problems.items:
        raise MemberImportError(path, sorted(problems.items, key=lambda item: item[0] or 0))

    writer = _Writer(session, companies, company_fields, path, actor, channel)
    for row in rows:
        member = existing.get(fold_login_id(row.login_id))
        if member is not None:
            # The account keeps its login id: a spreadsheet that capitalised it (Excel does) is no change.
            row = replace(row, login_id=member.login_id)
        writer.member(row, writer.company(row), member)
    return writer.report


def seed_demo(session: Session) -> bool:
    """Load the demo companies and members (``demo_members.csv``) so a newcomer can try every action.

    Idempotent: the importer upserts by ``login_id``, so a second run changes nothing. Returns whether
    the database is now the demo database: one that already holds real members is not made one.
    """
    import_members(session, DEMO_CSV, actor="seed-demo", channel="cli")
    if not _holds_only_demo_members(session):
        return False
    mark_demo_database(session)
    return True


def mark_demo_database(session: Session) -> None:
    """Record that this is the demo database: only here may mails be logged instead of sent, and
    ``chat --as`` act without ``--trust-identity``."""
    if session.get(Meta, DEMO_KEY) is None:
        session.add(Meta(key=DEMO_KEY, value="true"))


def is_demo_database(session: Session) -> bool:
    """True on the database ``db seed-demo`` made, as long as it holds the demo members only.

    Being the demo lets mails be logged instead of sent and ``chat --as`` act without
    ``--trust-identity``; once a real member list is imported, neither may happen to real members.
    """
    found = session.get(Meta, DEMO_KEY)
    return found is not None and found.value == "true" and _holds_only_demo_members(session)


@cache
def _demo_login_ids() -> frozenset[str]:
    with DEMO_CSV.open(encoding="utf-8-sig", newline="") as handle:
        return frozenset(row["login_id"] for row in csv.DictReader(handle))


def _holds_only_demo_members(session: Session) -> bool:
    """No member outside ``demo_members.csv`` (stops at the first one: cheap on a real list too)."""
    other = select(Member.id).where(Member.login_id.not_in(sorted(_demo_login_ids()))).limit(1)
    return session.scalar(other) is None


# --- looking an address up ---------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the application stores UTC, so say so."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def show_member(session: Session, email: str) -> list[dict[str, Any]]:
    """Everything the secretariat needs on the phone about the accounts of one address (case-insensitive).

    One dict per account (one address may own a personal and a company representative account); an
    empty list when the address has none. Datetimes are timezone-aware (UTC).
    """
    address = fold_address(email)
    if not address:
        return []
    members = session.scalars(
        select(Member).where(func.lower(Member.email) == address)
        .options(selectinload(Member.company), selectinload(Member.preferences))
        .order_by(Member.is_representative, Member.login_id)
    ).all()
    accounts = []
    for member in members:
        requests = session.scalars(
            select(SecretariatRequest)
            .where(SecretariatRequest.member_id == member.id, SecretariatRequest.status.in_(OPEN_REQUEST_STATUSES))
            .order_by(SecretariatRequest.created_at, SecretariatRequest.id)
        ).all()
        # The member's history: changes to the account and its preferences, and whatever an operator
        # did on the member's behalf (``operator:NAME for member:ID``, e.g. verifying at the terminal).
        on_behalf = f"{ON_BEHALF}member:{member.id}"
        trail = session.scalars(
            select(AuditLog)
            .where(or_(and_(AuditLog.entity.in_(("member", "preferences")), AuditLog.entity_id == member.id),
                       AuditLog.actor.endswith(on_behalf, autoescape=True)))
            .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
            .limit(AUDIT_TRAIL_LIMIT)
        ).all()
        company = member.company
        preferences = member.preferences
        accounts.append({
            "login_id": member.login_id,
            "name": member.name,
            "email": member.email,
            "status": member.status,
            "is_representative": member.is_representative,
            "company": {
                "name": company.name,
                "membership_class": company.membership_class,
                "status": company.status,
                "billing_contact_name": company.billing_contact_name,
                "billing_contact_email": company.billing_contact_email,
            },
            "preferences": None if preferences is None else {
                "newsletter": preferences.newsletter,
                "postal_dm": preferences.postal_dm,
                "interest_committees": list(preferences.interest_committees or []),
                "regional_forums": list(preferences.regional_forums or []),
            },
            "open_requests": [
                {"id": item.id, "kind": item.kind, "status": item.status, "created_at": _aware(item.created_at)}
                for item in requests
            ],
            "audit": [
                {"created_at": _aware(entry.created_at), "actor": entry.actor, **_acted(entry.actor, member),
                 "channel": entry.channel, "action": entry.action, "entity": entry.entity, "before": entry.before,
                 "after": entry.after}
                for entry in trail
            ],
        })
    return accounts


def _acted(actor: str, member: Member) -> dict[str, str | None]:
    """Who acted and for whom: ``operator:suzuki for member:7`` is suzuki acting on member 7's behalf
    (``on_behalf_of``: the login id when it is this member); any other actor acted as itself."""
    operator, separator, whom = actor.rpartition(ON_BEHALF)
    if not separator or not operator.startswith("operator:"):
        return {"acted_by": actor, "on_behalf_of": None}
    return {"acted_by": operator, "on_behalf_of": member.login_id if whom == f"member:{member.id}" else whom}


# --- the secretariat's text summary ------------------------------------------------------------------------------


def _plain(value: object) -> str:
    """A stored value as terminal text: control, separator and invisible formatting characters shown
    escaped (``\\x1b``, ``\\u2028``), never acted on by the terminal (values stored before the import
    refused them may still hold some)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "".join(_escaped(char) if unicodedata.category(char) in _UNPRINTED else char for char in text)


_UNPRINTED = ("Cc", "Cf", "Zl", "Zp")


def _escaped(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _when(moment: datetime) -> str:
    return _aware(moment).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _yes_no(value: bool) -> str:
    return "希望する (yes)" if value else "希望しない (no)"


def _listing(values: list[str]) -> str:
    return ", ".join(_plain(value) for value in values) if values else "なし (none)"


def _change(entry: dict[str, Any]) -> str:
    after = entry["after"] or {}
    before = entry["before"] or {}
    if not before:
        return ", ".join(f"{name}={_plain(value)}" for name, value in after.items())
    return ", ".join(f"{name}: {_plain(before.get(name))} → {_plain(value)}" for name, value in after.items())


def _who(entry: dict[str, Any]) -> str:
    """The actor of an audit entry; an operator's entry says on whose behalf they acted."""
    whom = entry.get("on_behalf_of")
    if not whom:
        return _plain(entry["actor"])
    return f"{_plain(entry['acted_by'])} ({_plain(whom)} の代理 / on behalf of {_plain(whom)})"


def render_accounts(email: str, accounts: list[dict[str, Any]]) -> str:
    """``show_member``'s result as the secretariat reads it during a phone call (Japanese and English)."""
    if not accounts:
        return f"{_plain(email)}: 登録されたアカウントはありません / no account with this address"
    lines = [f"{_plain(email)}: {len(accounts)} 件のアカウント / {len(accounts)} account(s)"]
    for number, account in enumerate(accounts, start=1):
        company = account["company"]
        role = "企業代表者 / company representative" if account["is_representative"] else "一般 / member"
        lines += ["", f"[{number}] {_plain(account['login_id'])} — {_plain(account['name'])} ({role})",
                  f"    会社 / company: {_plain(company['name'])} "
                  f"({_plain(company['membership_class'])}, {_plain(company['status'])})"]
        if company["billing_contact_name"] or company["billing_contact_email"]:
            lines.append(f"    請求書送付先 / billing contact: {_plain(company['billing_contact_name'] or '')} "
                         f"<{_plain(company['billing_contact_email'] or '')}>")
        lines.append(f"    アカウント状態 / status: {_plain(account['status'])}")
        preferences = account["preferences"]
        if preferences is None:
            lines.append("    配信設定 / preferences: 未登録 (none recorded)")
        else:
            lines += [f"    メールマガジン / newsletter: {_yes_no(preferences['newsletter'])}",
                      f"    郵送DM / postal DM: {_yes_no(preferences['postal_dm'])}",
                      f"    興味がある部会 / committees: {_listing(preferences['interest_committees'])}",
                      f"    地域フォーラム / regional forums: {_listing(preferences['regional_forums'])}"]
        requests = account["open_requests"]
        lines.append(f"    未完了の依頼 / open requests: {len(requests) if requests else 'なし (none)'}")
        lines += [f"      #{item['id']} {_plain(item['kind'])} ({_plain(item['status'])}) {_when(item['created_at'])}"
                  for item in requests]
        lines.append("    変更履歴 / audit trail (新しい順 / newest first):")
        lines += [f"      {_when(entry['created_at'])} {_who(entry)} via {_plain(entry['channel'])} "
                  f"{_plain(entry['action'])} {_plain(entry['entity'])}: {_change(entry)}"
                  for entry in account["audit"]] or ["      なし (none)"]
    return "\n".join(lines)
