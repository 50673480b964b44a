"""The secretariat's member operations: import the member list, look an address up, seed demo data.

The secretariat keeps the member list in a spreadsheet and exports it as CSV; ``import_members``
brings the database in line with it. A file is checked completely before anything is written, so a
typo on line 240 never leaves half a list behind: either the whole file is applied, in the caller's
transaction, or ``MemberImportError`` lists what to fix, with line numbers as the spreadsheet shows
them (the header is line 1). Every company and member the import creates or changes gets an audit
entry with the changed fields before and after.

Values are stored as text through bound parameters only; nothing from the file is ever interpreted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
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


def _text(cells: dict[str, str], column: str, *, required: bool = True) -> str:
    value = cells.get(column, "").strip()
    if not value:
        if required:
            raise _BadValue(f"column '{column}' is empty (a value is required)")
        return ""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise _BadValue(f"column '{column}' contains a line break or control character: {_shown(value)}")
    limit = _LIMITS.get(column)
    if limit is not None and len(value) > limit:
        raise _BadValue(f"column '{column}' is {len(value)} characters long, at most {limit} are allowed")
    return value


def _email(cells: dict[str, str], column: str, *, required: bool = True) -> str:
    value = _text(cells, column, required=required)
    if value and not _EMAIL.fullmatch(value):
        raise _BadValue(f"column '{column}': {_shown(value)} is not an e-mail address")
    # One canonical form: addresses are compared case-insensitively everywhere in the assistant.
    return value.lower()


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
    return [item.strip() for item in value.split(";") if item.strip()]


def _parse_row(line: int, cells: dict[str, str], header: set[str]) -> _Row:
    """One row's values, checked; the first bad cell raises ``_BadValue``."""
    return _Row(
        line=line,
        company=_text(cells, "company"),
        membership_class=_membership_class(cells),
        name=_text(cells, "name"),
        email=_email(cells, "email"),
        login_id=_text(cells, "login_id"),
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
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
    except csv.Error as exc:
        raise MemberImportError(path, [(reader.line_num, f"not valid CSV ({exc})")]) from None


def _header(path: Path, records: list[list[str]]) -> list[str]:
    if not records or not any(cell.strip() for cell in records[0]):
        expected = ", ".join(REQUIRED_COLUMNS)
        raise MemberImportError(path, [(1, f"the header row is missing; expected columns: {expected}")])
    header = [cell.strip().lower() for cell in records[0]]
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
    first_line: dict[str, int] = {}
    given: dict[str, dict[str, tuple[Any, int]]] = {}
    unique: list[_Row] = []
    for row in rows:
        if row.login_id in first_line:
            earlier_line = first_line[row.login_id]
            problems.add(row.line, f"login_id {_shown(row.login_id)} already appears on line {earlier_line}")
            continue
        first_line[row.login_id] = row.line
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


def _existing_members(session: Session, login_ids: Iterable[str]) -> dict[str, Member]:
    found: dict[str, Member] = {}
    for chunk in _chunks(login_ids):
        query = (
            select(Member).where(Member.login_id.in_(chunk))
            .options(selectinload(Member.company), selectinload(Member.preferences))
        )
        found.update((member.login_id, member) for member in session.scalars(query))
    return found


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
    in_file = {row.login_id for row in rows}
    claims: dict[str, list[tuple[int | None, str]]] = {}
    for chunk in _chunks(company.id for company in companies.values()):
        query = (
            select(Member)
            .where(Member.company_id.in_(chunk), Member.is_representative.is_(True), Member.status == "active")
            .options(selectinload(Member.company))
        )
        for member in session.scalars(query):
            if member.login_id not in in_file:
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
    existing = _existing_members(session, [row.login_id for row in rows])
    companies = _existing_companies(session, {row.company for row in rows})
    _check_representatives(session, rows, companies, problems)
    if problems.items:
        raise MemberImportError(path, sorted(problems.items, key=lambda item: item[0] or 0))

    writer = _Writer(session, companies, company_fields, path, actor, channel)
    for row in rows:
        writer.member(row, writer.company(row), existing.get(row.login_id))
    return writer.report


def seed_demo(session: Session) -> None:
    """Load the demo companies and members (``demo_members.csv``) so a newcomer can try every action.

    Idempotent: the importer upserts by ``login_id``, so a second run changes nothing.
    """
    import_members(session, DEMO_CSV, actor="seed-demo", channel="cli")
    mark_demo_database(session)


def mark_demo_database(session: Session) -> None:
    """Record that this is the demo database: only here may mails be logged instead of sent, and
    ``chat --as`` act without ``--trust-identity``."""
    if session.get(Meta, DEMO_KEY) is None:
        session.add(Meta(key=DEMO_KEY, value="true"))


def is_demo_database(session: Session) -> bool:
    found = session.get(Meta, DEMO_KEY)
    return found is not None and found.value == "true"


# --- looking an address up ---------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the application stores UTC, so say so."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def show_member(session: Session, email: str) -> list[dict[str, Any]]:
    """Everything the secretariat needs on the phone about the accounts of one address (case-insensitive).

    One dict per account (one address may own a personal and a company representative account); an
    empty list when the address has none. Datetimes are timezone-aware (UTC).
    """
    address = email.strip().lower()
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
        trail = session.scalars(
            select(AuditLog)
            .where(AuditLog.entity.in_(("member", "preferences")), AuditLog.entity_id == member.id)
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
                {"created_at": _aware(entry.created_at), "actor": entry.actor, "channel": entry.channel,
                 "action": entry.action, "entity": entry.entity, "before": entry.before, "after": entry.after}
                for entry in trail
            ],
        })
    return accounts


# --- the secretariat's text summary ------------------------------------------------------------------------------


def _plain(value: object) -> str:
    """A stored value as terminal text: control characters shown escaped, never acted on by the terminal."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "".join(f"\\x{ord(char):02x}" if unicodedata.category(char) == "Cc" else char for char in text)


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
        lines += [f"      {_when(entry['created_at'])} {_plain(entry['actor'])} via {_plain(entry['channel'])} "
                  f"{_plain(entry['action'])} {_plain(entry['entity'])}: {_change(entry)}"
                  for entry in account["audit"]] or ["      なし (none)"]
    return "\n".join(lines)
