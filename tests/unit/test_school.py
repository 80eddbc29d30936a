"""The school attendance feed: DfE codes, figures, bad lines, change detection, the folder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.open_cases import open_case_list
from producers.open_cases import OpenCaseStore, pupil_keys
from producers.school import (
    CODES,
    REFORM,
    IngestReport,
    LineError,
    Meaning,
    PushedStore,
    SchoolFeed,
    SchoolProfile,
    attendance_update,
    figures,
    group_pupils,
    ingest,
    parse_export,
    watch,
)
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ContractError, TransportError
from sgx.keys.pseudonym import Pseudonymiser
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "attendance"
HEADER = "upn,nhs_number,date,session,mark\n"
UPN = make_upn(11)
NHS = make_nhs_number(11)
PSEUDONYMS = Pseudonymiser(bytes(range(32)))
PROFILE = SchoolProfile(
    agency_id="school-hillside",
    school_urn="100001",
    school_name="Hillside Primary School",
    author_name="Ruth Okafor",
)
# The pupils of tests/fixtures/attendance/*.csv
OPEN_PUPILS = [(make_nhs_number(11), make_upn(11)), (make_nhs_number(33), make_upn(33))]
NOT_OPEN_UPN = make_upn(22)


def export(marks: list[str], *, start: date = date(2026, 11, 2), upn: str = UPN) -> str:
    """A one-pupil export: two sessions a day from ``start``, one mark each, in order."""
    rows = [HEADER]
    for i, mark in enumerate(marks):
        day = start + timedelta(days=i // 2)
        rows.append(f"{upn},{NHS},{day.isoformat()},{'AM' if i % 2 == 0 else 'PM'},{mark}\n")
    return "".join(rows)


def pupil_figures(marks: list[str]) -> Any:
    parsed = parse_export(export(marks))
    assert parsed.errors == []
    [pupil] = group_pupils(parsed)
    return figures(pupil.marks, pupil.unreadable)


def checked_record(marks: list[str]) -> dict[str, Any]:
    """The attendance update for ``marks``, accepted by the contract (its rules included)."""
    parsed = parse_export(export(marks))
    [pupil] = group_pupils(parsed)
    record = attendance_update(
        PROFILE,
        pupil,
        figures(pupil.marks),
        notification_id=uuid.uuid4(),
        authored_at=datetime.now(UTC),
    )
    default_contract().check(c.ATTENDANCE_UPDATE, record)
    return record


# --- the code table and the figures --------------------------------------------------


def test_every_code_in_the_table_has_a_meaning_and_unexplained_is_only_n_and_o() -> None:
    assert {code for code, meaning in CODES.items() if meaning.unexplained} == {"N", "O"}
    assert all(isinstance(code.meaning, Meaning) for code in CODES.values())


@pytest.mark.parametrize(
    ("missed", "possible", "persistent"),
    [(1, 10, True), (1, 11, False), (2, 20, True), (2, 21, False), (0, 10, False)],
)
def test_persistent_absence_is_at_least_ten_percent(
    missed: int, possible: int, persistent: bool
) -> None:
    f = pupil_figures(["O"] * missed + ["/"] * (possible - missed))
    assert (f.possible, f.missed, f.persistent) == (possible, missed, persistent)
    assert (
        checked_record(["O"] * missed + ["/"] * (possible - missed))["attendance"][
            "persistent_absence"
        ]
        is persistent
    )


@pytest.mark.parametrize(
    ("missed", "possible", "severe"),
    [(5, 10, True), (5, 11, False), (6, 11, True), (10, 20, True), (9, 19, False)],
)
def test_severe_absence_is_at_least_half(missed: int, possible: int, severe: bool) -> None:
    marks = ["I"] * missed + ["\\"] * (possible - missed)
    f = pupil_figures(marks)
    assert (f.missed, f.severe) == (missed, severe)
    assert checked_record(marks)["attendance"]["severe_absence"] is severe


@pytest.mark.parametrize("code", ["D", "X", "Q", "Y1", "Y4", "Y7", "Z", "#"])
def test_codes_not_counted_are_not_possible_sessions(code: str) -> None:
    f = pupil_figures([code, code, "/", "O"])
    assert (f.possible, f.missed, f.not_counted) == (2, 1, 2)
    assert f.severe  # 1 of 2 possible: the not-counted sessions do not dilute the rate


def test_everything_not_counted_gives_no_flags() -> None:
    f = pupil_figures(["#", "#", "X", "Y2"])
    assert (f.possible, f.missed, f.persistent, f.severe) == (0, 0, False, False)
    checked_record(["#", "#", "X", "Y2"])


def test_present_approved_activity_and_late_before_close_are_not_absence() -> None:
    f = pupil_figures(["/", "\\", "L", "K", "V", "P", "W", "B"])
    assert (f.possible, f.missed, f.unexplained) == (8, 0, 0)


def test_authorised_unauthorised_and_unexplained_split() -> None:
    f = pupil_figures(["C", "C1", "C2", "M", "J1", "S", "T", "I", "E", "R", "G", "U", "N", "O"])
    assert (f.authorised, f.unauthorised, f.unexplained, f.missed) == (10, 4, 2, 14)
    record = checked_record(["I", "O", "N", "U", "/", "/"])
    assert record["attendance"]["sessions_missed"] == 4
    assert record["attendance"]["unexplained_absences"] == 2
    assert "1 authorised and 3 unauthorised" in record["assessment"]["facts"]


def test_codes_follow_the_2024_reform_date() -> None:
    before = REFORM - timedelta(days=7)
    old = parse_export(export(["H", "J"], start=before))
    assert old.errors == []
    assert figures(old.marks).authorised == 1  # H was an authorised holiday before the reform
    after = parse_export(export(["H", "K"], start=REFORM))
    assert [(e.line, e.column) for e in after.errors] == [(2, "mark")]
    assert "withdrawn on 2024-08-19" in after.errors[0].problem
    early = parse_export(export(["K", "C1"], start=before))
    assert [e.line for e in early.errors] == [2, 3]
    assert "exists only from 2024-08-19" in early.errors[0].problem


# --- bad lines ------------------------------------------------------------------------


def test_bad_rows_are_reported_by_line_and_the_rest_still_count() -> None:
    parsed = parse_export((FIXTURES / "bad_rows.csv").read_text())
    pupils = group_pupils(parsed)
    assert [(e.line, e.column) for e in parsed.errors] == [
        (5, "mark"),
        (11, "date"),
        (17, "upn"),
        (23, "session"),
        (29, "session"),
        (35, "session"),
        (41, "mark"),
        (47, "nhs_number"),
    ]
    problems = [e.problem for e in parsed.errors]
    assert "'Q9' is not a DfE attendance code" in problems[0]
    assert "'31/11/2026' is not a date" in problems[1]
    assert problems[2] == "check letter is A but should be Q"
    assert "missing" in problems[3]
    assert "second mark for this session (line 2)" in problems[5]
    assert [len(p.marks) for p in pupils] == [20, 20, 20]  # every good row still counts
    assert [p.unreadable for p in pupils] == [6, 0, 1]
    assert "6 register entries for this pupil could not be read" in checked_facts(pupils[0])


def checked_facts(pupil: Any) -> str:
    f = figures(pupil.marks, pupil.unreadable)
    record = attendance_update(
        PROFILE, pupil, f, notification_id=uuid.uuid4(), authored_at=datetime.now(UTC)
    )
    default_contract().check(c.ATTENDANCE_UPDATE, record)
    return str(record["assessment"]["facts"])


def test_no_line_error_names_an_identifier() -> None:
    parsed = parse_export((FIXTURES / "bad_rows.csv").read_text())
    group_pupils(parsed)
    text = "\n".join(str(e) for e in parsed.errors)
    for upn in (make_upn(11), make_upn(33), "A999000000011"):
        assert upn not in text
    assert make_nhs_number(33) not in text


def test_missing_required_column_makes_the_file_unreadable() -> None:
    parsed = parse_export("upn,date,mark\nQ999000000011,2026-11-02,/\n")
    assert not parsed.readable
    assert [str(e) for e in parsed.errors] == ["line 1: header: missing column(s) session"]
    empty = parse_export("")
    assert not empty.readable
    assert empty.errors[0].problem == "the file is empty"


def test_columns_in_any_order_extra_columns_blank_lines_and_uk_dates() -> None:
    text = (
        "Mark,Session,Given_Name,UPN,Date\n/,am,Amira,q999000000011,02/11/2026\n"
        "\n,,,,\nO,PM,x,Q999000000011,2026-11-02\n"
    )
    parsed = parse_export(text)
    assert parsed.errors == []
    assert parsed.rows == 2
    assert [(m.line, m.day, m.session, m.code) for m in parsed.marks] == [
        (2, date(2026, 11, 2), "AM", "/"),
        (5, date(2026, 11, 2), "PM", "O"),
    ]


@pytest.mark.parametrize("text", ["2026-02-30", "31/11/2026", "20261102", "2026-W45-1", "2/11/26"])
def test_dates_are_iso_or_uk_calendar_dates(text: str) -> None:
    parsed = parse_export(f"{HEADER}{UPN},,{text},AM,/\n")
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "date")]
    assert "is not a date" in parsed.errors[0].problem


# --- ingest: open cases, change detection, hand-off ------------------------------------


class Recorder:
    """A submit callable that keeps what it was given (the broker path is in the e2e test)."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.fail_with: Exception | None = None

    async def __call__(self, name: str, record: Mapping[str, Any]) -> uuid.UUID:
        assert name == c.ATTENDANCE_UPDATE
        if self.fail_with is not None:
            raise self.fail_with
        contract = default_contract()
        contract.check(name, record)
        decoded = contract.decode_as(name, contract.encode(name, record))
        assert decoded["child"] == record["child"]  # every field present, residence_la too
        self.records.append(record)
        return uuid.UUID(str(record["notification_id"]))


@pytest.fixture
async def feed(tmp_path: Path) -> Any:
    async with (
        await OpenCaseStore.open(None, tmp_path / "open-cases.db", owner="school-test") as cases,
        await PushedStore.open(None, tmp_path / "attendance.db", owner="school-test") as pushed,
    ):
        yield SchoolFeed(PROFILE, PSEUDONYMS, cases, pushed)


async def publish_open_list(feed: SchoolFeed, pupils: Sequence[tuple[str | None, str]]) -> None:
    keys = [k for nhs, upn in pupils for k in pupil_keys(PSEUDONYMS, nhs, upn)]
    record = open_case_list(PROFILE.agency_id, keys, datetime.now(UTC))
    await feed.open_cases.replace(record["school_id"], record["issued_at"], record["child_keys"])


async def test_only_open_pupils_are_pushed_and_only_when_changed(feed: SchoolFeed) -> None:
    submit = Recorder()
    await publish_open_list(feed, OPEN_PUPILS)
    first = await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    assert (first.rows, first.pupils, len(first.pushed)) == (60, 3, 2)
    assert (first.skipped_not_open, first.unchanged, first.errors) == (1, 0, [])
    assert {r["child"]["upn"] for r in submit.records} == {make_upn(11), make_upn(33)}
    assert NOT_OPEN_UPN not in {r["child"]["upn"] for r in submit.records}
    severe = next(r for r in submit.records if r["child"]["upn"] == make_upn(33))
    assert severe["attendance"]["severe_absence"]
    assert severe["urgency"] == "PRIORITY"

    again = await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    assert (again.pushed, again.unchanged, again.skipped_not_open) == ([], 2, 1)
    assert len(submit.records) == 2

    bad = await ingest(FIXTURES / "bad_rows.csv", feed=feed, submit=submit)
    assert [e.line for e in bad.errors] == [5, 11, 17, 23, 29, 35, 41, 47]
    assert len(bad.pushed) == 2  # the good rows still go (the unreadable counts changed)


async def test_a_pupil_open_by_upn_alone_is_pushed(feed: SchoolFeed) -> None:
    submit = Recorder()
    await publish_open_list(feed, [(None, make_upn(11))])
    report = await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    assert [r["child"]["upn"] for r in submit.records] == [make_upn(11)]
    assert report.skipped_not_open == 2


async def test_no_open_case_list_pushes_nothing_and_says_so(feed: SchoolFeed) -> None:
    report = await ingest(FIXTURES / "clean.csv", feed=feed, submit=Recorder())
    assert report.pushed == []
    assert report.skipped_not_open == 3
    assert "no open-case list has reached this school yet" in "\n".join(report.lines())


async def test_an_interrupted_push_is_resent_with_the_same_notification_id(
    feed: SchoolFeed,
) -> None:
    submit = Recorder()
    await publish_open_list(feed, OPEN_PUPILS[:1])
    submit.fail_with = TransportError("broker down")
    with pytest.raises(TransportError):
        await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    pending = await feed.pushed.last("school-hillside", PSEUDONYMS.child_key(NHS, UPN) or b"")
    assert pending is not None
    assert not pending.submitted
    submit.fail_with = None
    report = await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    assert report.pushed == [pending.notification_id]


async def test_a_refused_record_is_reported_against_the_pupils_first_line(
    feed: SchoolFeed,
) -> None:
    submit = Recorder()
    await publish_open_list(feed, OPEN_PUPILS)
    submit.fail_with = ContractError("author.name", "must not be empty", schema="x")
    report = await ingest(FIXTURES / "clean.csv", feed=feed, submit=submit)
    assert [(e.line, e.column) for e in report.errors] == [(2, "pupil"), (42, "pupil")]
    assert "not pushed" in report.errors[0].problem
    assert report.pushed == []


async def test_open_case_store_keeps_the_newest_list(feed: SchoolFeed) -> None:
    now = datetime.now(UTC)
    school = PROFILE.agency_id
    assert await feed.open_cases.replace(school, now, [b"a" * 16])
    assert not await feed.open_cases.replace(school, now - timedelta(seconds=1), [b"b" * 16])
    held = await feed.open_cases.current()
    assert held.keys == {b"a" * 16}
    assert held.issued_at == now


def test_open_case_list_record_is_sorted_unique_and_checked() -> None:
    now = datetime.now(UTC)
    record = open_case_list("school-hillside", [b"b" * 16, b"a" * 16, b"b" * 16], now)
    assert record == {
        "school_id": "school-hillside",  # the list is the school's, over every LA it serves
        "issued_at": now,
        "child_keys": [b"a" * 16, b"b" * 16],
    }
    contract = default_contract()
    decoded = contract.decode_as(c.OPEN_CASE_LIST, contract.encode(c.OPEN_CASE_LIST, record))
    assert decoded["school_id"] == "school-hillside"
    assert decoded["child_keys"] == record["child_keys"]
    with pytest.raises(ContractError, match=r"child_keys\[0\]"):
        open_case_list("school-hillside", [b"short"], now)
    with pytest.raises(ContractError, match="issued_at"):
        open_case_list("school-hillside", [], datetime(2026, 1, 1))


# --- the watched folder ----------------------------------------------------------------


async def test_watch_ingests_each_file_once_and_files_it_with_a_report(
    feed: SchoolFeed, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    submit = Recorder()
    await publish_open_list(feed, OPEN_PUPILS)
    (inbox / "week1.csv").write_text((FIXTURES / "bad_rows.csv").read_text())
    (inbox / "broken.csv").write_text("no,header,here\n1,2,3\n")
    (inbox / "notes.txt").write_text("not an export")
    stop = asyncio.Event()
    task = asyncio.create_task(watch(inbox, submit, stop, feed=feed, poll_s=0.02))
    reports = [
        inbox / "failed" / "broken.csv.report.txt",
        inbox / "processed" / "week1.csv.report.txt",
    ]
    try:
        await filed(reports, timeout=10)
    finally:
        stop.set()
        await task
    assert sorted(p.name for p in inbox.iterdir()) == ["failed", "notes.txt", "processed"]
    assert (inbox / "processed" / "week1.csv").exists()
    assert (inbox / "failed" / "broken.csv").exists()
    report = (inbox / "processed" / "week1.csv.report.txt").read_text()
    assert "pushed: 2" in report
    assert "line 17: upn: check letter is A but should be Q" in report
    assert (
        "line 1: header: missing column(s)"
        in (inbox / "failed" / "broken.csv.report.txt").read_text()
    )
    assert len(submit.records) == 2


async def filed(paths: list[Path], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        for path in paths:
            while not path.exists():  # noqa: ASYNC110 - a file, not an event, is awaited
                await asyncio.sleep(0.02)


def test_report_lines_hold_counts_and_lines_only() -> None:
    pushed = uuid.UUID(int=1)
    report = IngestReport(file="x.csv", rows=3, pupils=1, pushed=[pushed], unchanged=1)
    report.errors.append(LineError(3, "mark", "is empty"))
    report.open_list_issued_at = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert list(report.lines()) == [
        "x.csv: 3 row(s), 1 pupil(s)",
        "open-case list issued 2026-11-02T08:00:00+00:00",
        "pushed: 1",
        f"  {pushed}",
        "unchanged since the last push: 1",
        "not open to social care: 0",
        "bad lines: 1",
        "  line 3: mark: is empty",
    ]
