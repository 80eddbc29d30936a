"""The school attendance feed: a school MIS attendance export in, attendance updates out.

**The export** is a CSV file with a header row (UTF-8, a byte-order mark is allowed;
column order is free, unknown columns such as names are ignored and never read), one row
per pupil per registration session::

    upn          required  Unique Pupil Number (13 characters, check letter first)
    nhs_number   optional  10 digits, modulus-11 check; empty if the school does not hold it
    date         required  the session's date: 2026-11-02 or 02/11/2026
    session      required  AM or PM
    mark         required  the DfE attendance code entered in the register (see CODES)

**Figures** per pupil over the dates the export holds for them: *possible* sessions are
every session whose code counts as possible (all but the "not counted" codes); *missed*
is every authorised or unauthorised absence; *unexplained* is code N (reason not yet
established) or O (other or unknown circumstances); *persistent* absence is missed ≥ 10%
of possible and *severe* ≥ 50% (DfE thresholds; none when nothing was possible). The
schema's ``AttendanceFigures`` has no authorised/unauthorised split, so that split goes
into the facts text rather than into a changed schema (which would break the pinned
golden bytes of ``AttendanceUpdate``).

**Bad rows** are reported by line number and skipped; every other row still counts, and
a pupil whose rows were partly unreadable is pushed with the number of unreadable rows
stated in the facts. Only pupils on the local authority's open-case list (received
through the exchange, see :mod:`producers.open_cases`) are pushed, and only when their
figures changed since the last push (:class:`PushedStore`, keyed by child pseudonym).
A push is recorded as pending with its notification id *before* it is submitted, so a
crash between the two re-submits the same id (absorbed downstream) rather than a new one.

Messages and logs name line numbers, columns and codes only, never an identifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import functools
import hashlib
import json
import logging
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from producers.feeds import Submit
from producers.open_cases import OpenCases, OpenCaseStore
from sgx.domain.identifiers import check_nhs_number, check_upn
from sgx.errors import ContractError, ExchangeError
from sgx.keys.pseudonym import Pseudonymiser
from sgx.store.database import Database
from sgx.store.db import UtcDateTime, store_errors, write_transaction
from sgx.wire import contract as c
from sgx.wire.ids import new_id

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- DfE codes
#
# Source: The School Attendance (Pupil Registration) (England) Regulations 2024
# (SI 2024/208), regulation 10 and its tables, and DfE "Working together to improve
# school attendance" (statutory guidance, August 2024), both in force from 19 August 2024.
# Codes withdrawn then (H agreed holiday, J interview as an approved activity, Y
# exceptional circumstances) are accepted only for sessions before that date; codes
# introduced then are accepted only from it.


class Meaning(enum.Enum):
    """How a code counts in the attendance statistics."""

    PRESENT = "present"
    APPROVED_ACTIVITY = "attending a place other than the school (counts as present)"
    AUTHORISED = "authorised absence"
    UNAUTHORISED = "unauthorised absence"
    NOT_COUNTED = "not a possible session"


REFORM = date(2024, 8, 19)


@dataclass(frozen=True, slots=True)
class Code:
    meaning: Meaning
    description: str
    unexplained: bool = False
    valid_from: date | None = None
    withdrawn: date | None = None


def _code(meaning: Meaning, description: str, **kw: Any) -> Code:
    return Code(meaning, description, **kw)


_P, _A, _AU, _U, _X = (
    Meaning.PRESENT,
    Meaning.APPROVED_ACTIVITY,
    Meaning.AUTHORISED,
    Meaning.UNAUTHORISED,
    Meaning.NOT_COUNTED,
)
_NEW = {"valid_from": REFORM}
_OLD = {"withdrawn": REFORM}

CODES: dict[str, Code] = {
    "/": _code(_P, "present (morning)"),
    "\\": _code(_P, "present (afternoon)"),
    "L": _code(_P, "late, arrived before the register closed"),
    "K": _code(_A, "education provision arranged by the local authority", **_NEW),
    "V": _code(_A, "educational visit or trip"),
    "P": _code(_A, "approved sporting activity"),
    "W": _code(_A, "work experience"),
    "B": _code(_A, "any other approved educational activity"),
    "J": _code(_A, "interview, as an approved activity", **_OLD),
    "C1": _code(_AU, "leave: regulated performance or employment abroad", **_NEW),
    "M": _code(_AU, "leave: medical or dental appointment"),
    "J1": _code(_AU, "leave: interview", **_NEW),
    "S": _code(_AU, "leave: study leave"),
    "C2": _code(_AU, "leave: part-time timetable", **_NEW),
    "C": _code(_AU, "leave: exceptional circumstances"),
    "T": _code(_AU, "parent travelling for occupational purposes"),
    "H": _code(_AU, "agreed family holiday", **_OLD),
    "I": _code(_AU, "illness"),
    "E": _code(_AU, "suspended or excluded, no alternative provision"),
    "R": _code(_AU, "religious observance"),
    "G": _code(_U, "holiday not granted by the school"),
    "N": _code(_U, "reason for absence not yet established", unexplained=True),
    "O": _code(_U, "absent in other or unknown circumstances", unexplained=True),
    "U": _code(_U, "arrived after the register closed"),
    "D": _code(_X, "dual registered: attending another school"),
    "X": _code(_X, "non-compulsory school age, not required to attend"),
    "Q": _code(_X, "unable to attend: lack of access arrangements", **_NEW),
    **{
        f"Y{n}": _code(_X, f"unable to attend: exceptional circumstance {n}", **_NEW)
        for n in range(1, 8)
    },
    "Y": _code(_X, "unable to attend: exceptional circumstances", **_OLD),
    "Z": _code(_X, "prospective pupil not on the admission register"),
    "#": _code(_X, "planned whole-school closure"),
}


def code_problem(mark: str, day: date) -> str | None:
    """Why ``mark`` cannot be a register entry for ``day``; None if it can."""
    code = CODES.get(mark)
    if code is None:
        return f"{mark!r} is not a DfE attendance code"
    if code.withdrawn is not None and day >= code.withdrawn:
        return f"{mark!r} ({code.description}) was withdrawn on {code.withdrawn.isoformat()}"
    if code.valid_from is not None and day < code.valid_from:
        return f"{mark!r} ({code.description}) exists only from {code.valid_from.isoformat()}"
    return None


# --------------------------------------------------------------------------- the export

REQUIRED_COLUMNS = ("upn", "date", "session", "mark")
OPTIONAL_COLUMNS = ("nhs_number",)
SESSIONS = ("AM", "PM")


@dataclass(frozen=True, slots=True)
class LineError:
    """One bad line of an export: which line, which column, what is wrong (no values)."""

    line: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Mark:
    """One good register entry."""

    line: int
    upn: str
    nhs_number: str | None
    day: date
    session: str
    code: str


class _BadRow(Exception):
    def __init__(self, column: str, problem: str) -> None:
        self.column, self.problem = column, problem


@dataclass(slots=True)
class Export:
    """A parsed export: the good marks and the bad lines."""

    marks: list[Mark] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    unreadable: Counter[str] = field(default_factory=Counter)  # bad rows per valid UPN
    readable: bool = True  # False: no header or a required column missing; no row was read
    rows: int = 0  # data rows (blank lines not counted)


def parse_export(text: str) -> Export:
    """Parse an export's text; every bad row becomes a LineError and the rest still count."""
    export = Export()
    reader = csv.reader(text.splitlines(keepends=True))
    header = _header(next(reader, None))
    if isinstance(header, LineError):
        export.errors.append(header)
        export.readable = False
        return export
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        export.rows += 1
        upn = ""
        try:
            upn = _upn(row, header)
            export.marks.append(_mark(reader.line_num, upn, row, header))
        except _BadRow as bad:
            export.errors.append(LineError(reader.line_num, bad.column, bad.problem))
            if upn:
                export.unreadable[upn] += 1
    return export


def _header(row: list[str] | None) -> dict[str, int] | LineError:
    if row is None:
        return LineError(1, "header", "the file is empty")
    names = [cell.strip().lower() for cell in row]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        return LineError(1, "header", f"missing column(s) {', '.join(missing)}")
    wanted = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    return {name: names.index(name) for name in wanted if name in names}


def _cell(row: list[str], header: Mapping[str, int], column: str) -> str:
    index = header.get(column)
    if index is None:
        return ""
    if index >= len(row):
        raise _BadRow(column, f"missing: the row has {len(row)} value(s)")
    return row[index].strip()


def _upn(row: list[str], header: Mapping[str, int]) -> str:
    """The row's UPN, checked (check letter included)."""
    upn = _cell(row, header, "upn").upper()
    if not upn:
        raise _BadRow("upn", "is empty")
    try:
        check_upn(upn)
    except ContractError as exc:
        raise _BadRow(exc.path, exc.problem) from None
    return upn


def _mark(line: int, upn: str, row: list[str], header: Mapping[str, int]) -> Mark:
    nhs = "".join(_cell(row, header, "nhs_number").split()) or None
    if nhs is not None:
        try:
            check_nhs_number(nhs)
        except ContractError as exc:
            raise _BadRow(exc.path, exc.problem) from None
    day = _date(_cell(row, header, "date"))
    session = _cell(row, header, "session").upper()
    if session not in SESSIONS:
        raise _BadRow("session", f"must be AM or PM, got {session!r}")
    mark = _cell(row, header, "mark").upper()
    if not mark:
        raise _BadRow("mark", "is empty")
    problem = code_problem(mark, day)
    if problem is not None:
        raise _BadRow("mark", problem)
    return Mark(line, upn, nhs, day, session, mark)


_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_UK_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")


@functools.lru_cache(maxsize=4096)  # an export repeats each date once per pupil and session
def _date(text: str) -> date:
    if not text:
        raise _BadRow("date", "is empty")
    iso, uk = _ISO_DATE.fullmatch(text), _UK_DATE.fullmatch(text)
    try:
        if iso is not None:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        if uk is not None:
            return date(int(uk[3]), int(uk[2]), int(uk[1]))
    except ValueError:
        pass
    raise _BadRow("date", f"{text!r} is not a date (use YYYY-MM-DD or DD/MM/YYYY)")


# --------------------------------------------------------------------------- per pupil


@dataclass(slots=True)
class Pupil:
    """A pupil's good marks from one export."""

    upn: str
    nhs_number: str | None
    first_line: int
    marks: list[Mark] = field(default_factory=list)
    unreadable: int = 0  # rows of this pupil that were bad (their UPN was readable)


def group_pupils(export: Export) -> list[Pupil]:
    """Marks by pupil; a second mark for one session or a conflicting NHS number is an error.

    Conflicts are added to ``export.errors`` (kept in line order) and counted as unreadable.
    """
    pupils: dict[str, Pupil] = {}
    sessions: dict[tuple[str, date, str], int] = {}
    for mark in export.marks:
        pupil = pupils.setdefault(mark.upn, Pupil(mark.upn, mark.nhs_number, mark.line))
        problem = _conflict(pupil, mark, sessions)
        if problem is not None:
            export.errors.append(problem)
            export.unreadable[mark.upn] += 1
            continue
        pupil.nhs_number = pupil.nhs_number or mark.nhs_number
        pupil.marks.append(mark)
    for pupil in pupils.values():
        pupil.unreadable = export.unreadable[pupil.upn]
    export.errors.sort(key=lambda e: e.line)
    return sorted(pupils.values(), key=lambda p: p.first_line)


def _conflict(
    pupil: Pupil, mark: Mark, sessions: dict[tuple[str, date, str], int]
) -> LineError | None:
    if mark.nhs_number and pupil.nhs_number and mark.nhs_number != pupil.nhs_number:
        return LineError(
            mark.line, "nhs_number", f"differs from line {pupil.first_line} for the same upn"
        )
    earlier = sessions.setdefault((mark.upn, mark.day, mark.session), mark.line)
    if earlier != mark.line:
        return LineError(mark.line, "session", f"a second mark for this session (line {earlier})")
    return None


@dataclass(frozen=True, slots=True)
class Figures:
    """A pupil's attendance over the period their marks cover."""

    period_start: date
    period_end: date
    possible: int
    authorised: int
    unauthorised: int
    unexplained: int
    not_counted: int
    unreadable: int

    @property
    def missed(self) -> int:
        return self.authorised + self.unauthorised

    @property
    def absence_rate(self) -> float:
        return self.missed / self.possible if self.possible else 0.0

    @property
    def persistent(self) -> bool:
        """Missed at least 10% of possible sessions (integer arithmetic, as the contract)."""
        return self.possible > 0 and self.missed * 10 >= self.possible

    @property
    def severe(self) -> bool:
        """Missed at least 50% of possible sessions."""
        return self.possible > 0 and self.missed * 2 >= self.possible

    def digest(self) -> str:
        """What "changed since the last push" compares (SHA-256 of every figure)."""
        data = {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def figures(marks: Sequence[Mark], unreadable: int = 0) -> Figures:
    """Count ``marks`` by what their codes mean (see CODES)."""
    counts = dict.fromkeys(Meaning, 0)
    unexplained = 0
    for mark in marks:
        code = CODES[mark.code]
        counts[code.meaning] += 1
        unexplained += code.unexplained
    days = [mark.day for mark in marks]
    not_counted = counts[Meaning.NOT_COUNTED]
    return Figures(
        period_start=min(days),
        period_end=max(days),
        possible=len(marks) - not_counted,
        authorised=counts[Meaning.AUTHORISED],
        unauthorised=counts[Meaning.UNAUTHORISED],
        unexplained=unexplained,
        not_counted=not_counted,
        unreadable=unreadable,
    )


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class SchoolProfile:
    """Who the school is and who signs its attendance updates."""

    agency_id: str
    school_urn: str
    school_name: str
    author_name: str
    author_role: str = "Attendance Officer"
    contact: str | None = None
    legal_gateway: str = (
        "Children Act 2004 s.11; Working together to improve school attendance (DfE, 2024)"
    )
    no_consent_reason: str = "UNDUE_DELAY"


def _day(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def facts(f: Figures) -> str:
    """The figures in words, with the authorised/unauthorised split the schema lacks."""
    text = (
        f"From {_day(f.period_start)} to {_day(f.period_end)}: missed {f.missed} of "
        f"{f.possible} possible sessions ({f.absence_rate:.1%}); {f.authorised} authorised "
        f"and {f.unauthorised} unauthorised, {f.unexplained} with no reason given (codes N, O)."
    )
    if f.not_counted:
        text += f" {f.not_counted} session(s) not counted as possible (e.g. codes D, X, Y, Z, #)."
    if f.unreadable == 1:
        text += " 1 register entry for this pupil could not be read and is not counted."
    elif f.unreadable:
        text += (
            f" {f.unreadable} register entries for this pupil could not be read"
            " and are not counted."
        )
    return text


def _risk(f: Figures) -> str:
    """Derived from the DfE thresholds; not a professional judgement."""
    if f.severe:
        return "HIGH"
    if f.persistent:
        return "MEDIUM"
    return "LOW" if f.missed else "NO_CONCERN"


def attendance_update(
    profile: SchoolProfile,
    pupil: Pupil,
    f: Figures,
    *,
    notification_id: uuid.UUID,
    authored_at: datetime,
) -> dict[str, Any]:
    """The AttendanceUpdate for one pupil's figures."""
    return {
        "notification_id": notification_id,
        "authored_at": authored_at,
        "urgency": "PRIORITY" if f.severe else "ROUTINE",
        "author": {
            "name": profile.author_name,
            "role": profile.author_role,
            "agency_id": profile.agency_id,
            "agency_name": profile.school_name,
            "contact": profile.contact,
        },
        "child": {
            "nhs_number": pupil.nhs_number,
            "upn": pupil.upn,
            "identifier_absent_reason": None,
            "given_name": None,
            "family_name": None,
            "date_of_birth": None,
            "residence_la": None,  # an attendance export does not say where a pupil lives
        },
        "sharing": {
            "consent": "NOT_SOUGHT",
            "lawful_basis": "PUBLIC_TASK",
            "legal_gateway": profile.legal_gateway,
            "no_consent_reason": profile.no_consent_reason,
            "restrictions": [],
            "onward_consent": [],
        },
        "assessment": {
            "facts": facts(f),
            "professional_opinion": None,
            "risk_level": _risk(f),
            "support_offered": None,
            "agency_limitations": None,
            "child_views": None,
            "historical": False,
            "historical_relevance": None,
        },
        "attendance": {
            "school_urn": profile.school_urn,
            "school_name": profile.school_name,
            "period_start": f.period_start,
            "period_end": f.period_end,
            "sessions_possible": f.possible,
            "sessions_missed": f.missed,
            "unexplained_absences": f.unexplained,
            "persistent_absence": f.persistent,
            "severe_absence": f.severe,
        },
    }


# --------------------------------------------------------------------------- last pushed


@dataclass(frozen=True, slots=True)
class LastPush:
    digest: str
    notification_id: uuid.UUID
    submitted: bool


class PushedStore(Database):
    """The figures last pushed per (school, child pseudonym), as a digest."""

    KIND = "attendance"

    def __init__(self, engine: AsyncEngine, metadata: sa.MetaData) -> None:
        super().__init__(engine, metadata)
        self._table = sa.Table(
            "school_attendance_pushed",
            metadata,
            sa.Column("school_id", sa.String(64), primary_key=True),
            sa.Column("child_key", sa.LargeBinary(16), primary_key=True),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("notification_id", sa.String(36), nullable=False),
            sa.Column("submitted", sa.Boolean(), nullable=False),
            sa.Column("updated_at", UtcDateTime(), nullable=False),
        )

    def _where(self, school_id: str, child_key: bytes) -> sa.ColumnElement[bool]:
        t = self._table
        return sa.and_(t.c.school_id == school_id, t.c.child_key == child_key)

    async def last(self, school_id: str, child_key: bytes) -> LastPush | None:
        t = self._table
        query = sa.select(t.c.digest, t.c.notification_id, t.c.submitted)
        with store_errors("read the last attendance push"):
            async with self.engine.connect() as conn:
                row = (await conn.execute(query.where(self._where(school_id, child_key)))).first()
        if row is None:
            return None
        return LastPush(row.digest, uuid.UUID(row.notification_id), bool(row.submitted))

    async def pending(
        self, school_id: str, child_key: bytes, digest: str, notification_id: uuid.UUID
    ) -> None:
        """Record a push about to be submitted (replacing the pupil's previous one)."""
        row = {
            "school_id": school_id,
            "child_key": child_key,
            "digest": digest,
            "notification_id": str(notification_id),
            "submitted": False,
            "updated_at": datetime.now(UTC),
        }
        with store_errors("record a pending attendance push"):
            async with write_transaction(self.engine) as conn:
                await conn.execute(sa.delete(self._table).where(self._where(school_id, child_key)))
                await conn.execute(sa.insert(self._table), row)

    async def submitted(self, school_id: str, child_key: bytes) -> None:
        values = {"submitted": True, "updated_at": datetime.now(UTC)}
        with store_errors("record an attendance push"):
            async with write_transaction(self.engine) as conn:
                where = self._where(school_id, child_key)
                await conn.execute(sa.update(self._table).where(where).values(**values))


# --------------------------------------------------------------------------- ingest


@dataclass(frozen=True, slots=True)
class SchoolFeed:
    """What an ingest needs besides the file and the submit callable."""

    profile: SchoolProfile
    pseudonyms: Pseudonymiser
    open_cases: OpenCaseStore
    pushed: PushedStore


@dataclass(slots=True)
class IngestReport:
    """What one export did. Counts and line numbers only: nothing identifies a pupil."""

    file: str
    rows: int = 0
    pupils: int = 0
    pushed: list[uuid.UUID] = field(default_factory=list)
    unchanged: int = 0
    skipped_not_open: int = 0
    errors: list[LineError] = field(default_factory=list)
    readable: bool = True  # False: the file as a whole could not be read; nothing was pushed
    open_list_issued_at: datetime | None = None

    def lines(self) -> Iterator[str]:
        yield f"{self.file}: {self.rows} row(s), {self.pupils} pupil(s)"
        if self.open_list_issued_at is None:
            yield "no open-case list has reached this school yet: nothing can be pushed"
        else:
            yield f"open-case list issued {self.open_list_issued_at.isoformat(timespec='seconds')}"
        yield f"pushed: {len(self.pushed)}"
        yield from (f"  {notification_id}" for notification_id in self.pushed)
        yield f"unchanged since the last push: {self.unchanged}"
        yield f"not open to social care: {self.skipped_not_open}"
        yield f"bad lines: {len(self.errors)}"
        yield from (f"  {error}" for error in self.errors)


async def ingest(path: Path, *, feed: SchoolFeed, submit: Submit) -> IngestReport:
    """Read one export and submit an attendance update for each open pupil whose figures changed.

    A retriable error from ``submit`` (the broker or a store is down) propagates: what was
    submitted is recorded, and ingesting the same file again submits the rest.
    """
    report = IngestReport(file=path.name)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        report.readable = False
        report.errors.append(LineError(0, "file", f"cannot be read: {exc.strerror}"))
        return report
    export = await asyncio.to_thread(parse_export, text)  # CPU-bound: ~7 µs a row
    report.rows, report.readable = export.rows, export.readable
    pupils = group_pupils(export)
    report.errors, report.pupils = export.errors, len(pupils)
    cases = await feed.open_cases.current()
    report.open_list_issued_at = cases.issued_at
    for pupil in pupils:
        await _one(pupil, feed, cases, submit, report)
    return report


async def _one(
    pupil: Pupil, feed: SchoolFeed, cases: OpenCases, submit: Submit, report: IngestReport
) -> None:
    by_nhs, by_upn = feed.pseudonyms.identifier_keys(pupil.nhs_number, pupil.upn)
    if not cases.is_open(key for key in (by_nhs, by_upn) if key is not None):
        report.skipped_not_open += 1
        return
    child_key = by_nhs or by_upn  # what Pseudonymiser.child_key gives: the NHS number's first
    assert child_key is not None  # every pupil has a UPN
    f = figures(pupil.marks, pupil.unreadable)
    digest, school = f.digest(), feed.profile.agency_id
    last = await feed.pushed.last(school, child_key)
    if last is not None and last.digest == digest and last.submitted:
        report.unchanged += 1
        return
    # Same figures but never acknowledged by submit: resend under the same notification id.
    resend = last is not None and last.digest == digest
    notification_id = last.notification_id if last is not None and resend else new_id()
    await feed.pushed.pending(school, child_key, digest, notification_id)
    record = attendance_update(
        feed.profile, pupil, f, notification_id=notification_id, authored_at=datetime.now(UTC)
    )
    try:
        pushed = await submit(c.ATTENDANCE_UPDATE, record)
    except ExchangeError as exc:
        if exc.retriable:
            raise
        report.errors.append(LineError(pupil.first_line, "pupil", f"not pushed: {exc}"))
        return
    await feed.pushed.submitted(school, child_key)
    report.pushed.append(pushed)


# --------------------------------------------------------------------------- watched folder

PROCESSED = "processed"
FAILED = "failed"


async def watch(
    directory: Path,
    submit: Submit,
    stop: asyncio.Event,
    *,
    feed: SchoolFeed,
    poll_s: float = 1.0,
) -> None:
    """Ingest each new ``*.csv`` in ``directory`` once, until ``stop`` is set.

    A file is taken once its size and modification time held still for one poll (so a
    half-written export is not read). Afterwards it moves to ``processed/`` (read, even
    with bad lines) or ``failed/`` (unreadable, or refused), with ``<name>.report.txt``
    beside it. A retriable error leaves the file where it is for the next poll.
    """
    seen: dict[Path, tuple[int, int]] = {}
    while not stop.is_set():
        for path, signature in await asyncio.to_thread(_candidates, directory):
            if seen.get(path) != signature:
                seen[path] = signature
                continue
            if await _take(path, submit, feed):
                seen.pop(path, None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)


def _candidates(directory: Path) -> list[tuple[Path, tuple[int, int]]]:
    found = []
    for path in sorted(directory.glob("*.csv")):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found.append((path, (stat.st_size, stat.st_mtime_ns)))
    return found


async def _take(path: Path, submit: Submit, feed: SchoolFeed) -> bool:
    """Ingest and file away ``path``; False if it must be tried again later."""
    try:
        report = await ingest(path, feed=feed, submit=submit)
    except ExchangeError as exc:
        if exc.retriable:
            log.warning("export %s not finished, will retry: %s", path.name, type(exc).__name__)
            return False
        report = IngestReport(file=path.name, readable=False)
        report.errors.append(LineError(0, "file", f"refused: {exc}"))
    target = PROCESSED if report.readable else FAILED
    await asyncio.to_thread(_file_away, path, target, "\n".join(report.lines()) + "\n")
    pushed, bad = len(report.pushed), len(report.errors)
    log.info("export %s: %d pushed, %d bad lines", path.name, pushed, bad)
    return True


def _file_away(path: Path, target: str, report: str) -> Path:
    folder = path.parent / target
    folder.mkdir(exist_ok=True)
    destination = folder / path.name
    if destination.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        destination = folder / f"{path.stem}.{stamp}{path.suffix}"
    shutil.move(path, destination)
    destination.with_name(destination.name + ".report.txt").write_text(report, encoding="utf-8")
    return destination
