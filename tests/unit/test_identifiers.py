"""NHS number, UPN and GSS code checks, against worked examples and plain reference rules."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from sgx.domain.identifiers import (
    UPN_LETTERS,
    check_gss_code,
    check_nhs_number,
    check_upn,
    make_nhs_number,
    make_upn,
    nhs_check_digit,
    upn_check_letter,
    valid_gss_code,
    valid_nhs_number,
    valid_upn,
)
from sgx.errors import ContractError


def _reference_nhs_check(first_nine: str) -> int | None:
    """The published rule, written as plainly as possible."""
    total = 0
    for position, char in enumerate(first_nine):
        total += int(char) * (10 - position)
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


_FULLWIDTH = "".join(chr(0xFF10 + int(digit)) for digit in "9434765919")  # not ASCII digits


def _problem(call: Callable[..., None], *args: object) -> ContractError:
    with pytest.raises(ContractError) as info:
        call(*args)
    return info.value


# --- NHS number ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "9434765919",  # the NHS Data Dictionary's worked example (sum 299, remainder 2 -> 9)
        "4010231130",  # sum 88, remainder 0 -> 11 -> check digit 0
        "9990000018",
    ],
)
def test_valid_nhs_numbers_pass(value: str) -> None:
    check_nhs_number(value)
    assert valid_nhs_number(value)


def test_wrong_nhs_check_digit_says_what_it_should_be() -> None:
    error = _problem(check_nhs_number, "9434765918", "child.nhs_number")
    assert error.path == "child.nhs_number"
    assert error.problem == "check digit is 8 but should be 9"


def test_nhs_number_whose_check_would_be_10_is_invalid() -> None:
    # 4,0,1,0,2,3,1,0,5 weighted 10..2 sum to 89; 89 % 11 = 1; 11 - 1 = 10: never valid.
    for last in "0123456789":
        error = _problem(check_nhs_number, f"401023105{last}")
        assert "check 10" in error.problem
        assert error.path == "nhs_number"


@pytest.mark.parametrize(
    "value",
    ["943476591", "94347659190", "", "943 476 5919", "94347659a9", _FULLWIDTH],
)
def test_nhs_number_must_be_ten_ascii_digits(value: str) -> None:
    error = _problem(check_nhs_number, value, "x")
    assert error.problem.startswith("must be 10 digits")
    assert not valid_nhs_number(value)


def test_nhs_number_must_be_a_string() -> None:
    error = _problem(check_nhs_number, 9434765919)
    assert error.problem == "must be a string of 10 digits, got int"


def test_nhs_check_digit_agrees_with_the_reference_rule() -> None:
    rng = random.Random(11)
    for _ in range(5000):
        body = f"{rng.randrange(10**9):09d}"
        assert nhs_check_digit(body) == _reference_nhs_check(body), body


def test_made_nhs_numbers_are_valid_distinct_and_in_the_test_range() -> None:
    made = [make_nhs_number(seed) for seed in range(20_000)]
    assert len(set(made)) == len(made)
    assert all(valid_nhs_number(value) and value.startswith("999") for value in made)
    assert make_nhs_number(7) == make_nhs_number(7)


# --- UPN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "B801200005001",  # python-stdnum's documented example
        # The school census rule 1510 worked example (digits 2,7,1,6,4,9 at positions
        # 2,4,9,10,12,13 sum to 266, remainder 13 -> P; the published text slips to Q).
        "P207000016049",
        # Temporary UPNs: the letter in position 13 takes its value in the check alphabet.
        "M80120000500A",  # A = 0: sum 80, remainder 11 -> M
        "A80120000500J",  # J = 8 (I is skipped): 80 + 13 x 8 = 184, remainder 0 -> A
        "Y80120000500Z",  # Z = 22 (I, O, S skipped): 80 + 13 x 22 = 366, remainder 21 -> Y
    ],
)
def test_valid_upns_pass(value: str) -> None:
    check_upn(value)
    assert valid_upn(value)


def test_wrong_upn_check_letter_says_what_it_should_be() -> None:
    error = _problem(check_upn, "A801200005001", "child.upn")
    assert error.path == "child.upn"
    assert error.problem == "check letter is A but should be B"


def test_temporary_upn_letter_is_valued_in_the_check_alphabet_not_a_to_z() -> None:
    # Valued A=0..Z=25 (ignoring the skipped letters), Z would give 405 % 23 = 14 -> Q.
    error = _problem(check_upn, "Q80120000500Z")
    assert error.problem == "check letter is Q but should be Y"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("B80120000500", "must be 13 characters (got 12)"),
        ("B8012000050011", "must be 13 characters (got 14)"),
        ("b801200005001", "character 1 must be a check letter"),
        ("I801200005001", "character 1 must be a check letter"),
        ("8801200005001", "character 1 must be a check letter"),
        ("B8012000A5001", "characters 2-12 must be digits"),
        ("B80120000500O", "character 13 must be a digit or, for a temporary UPN, a letter"),
        ("B80120000500s", "character 13 must be a digit or, for a temporary UPN, a letter"),
    ],
)
def test_malformed_upns_are_refused(value: str, problem: str) -> None:
    error = _problem(check_upn, value)
    assert error.problem.startswith(problem)
    assert not valid_upn(value)


def test_upn_must_be_a_string() -> None:
    error = _problem(check_upn, None)
    assert error.problem == "must be a string of 13 characters, got NoneType"


def test_every_check_letter_is_reachable_and_none_is_i_o_or_s() -> None:
    letters = {upn_check_letter(f"80120000{n:04d}") for n in range(200)}
    assert letters == set(UPN_LETTERS)
    assert not letters & set("IOS")


def test_made_upns_are_valid_and_distinct() -> None:
    permanent = [make_upn(seed) for seed in range(5000)]
    temporary = [make_upn(seed, temporary=True) for seed in range(5000)]
    assert len(set(permanent)) == len(set(temporary)) == 5000
    assert all(valid_upn(value) for value in permanent + temporary)
    assert all(value[-1].isdigit() for value in permanent)
    assert all(value[-1] in UPN_LETTERS for value in temporary)


# --- GSS code ------------------------------------------------------------------------

_GSS_FORM = "must be an ONS GSS code: a letter E, W, S or N and 8 digits, e.g. E09000007"


@pytest.mark.parametrize(
    "value",
    [
        "E09000007",  # Camden (London borough)
        "E09000019",  # Islington
        "E06000001",  # Hartlepool (unitary)
        "E08000025",  # Birmingham (metropolitan district)
        "E10000014",  # Hampshire (county)
        "W06000015",  # Cardiff
        "S12000036",  # City of Edinburgh
        "N09000003",  # Belfast
    ],
)
def test_valid_gss_codes_pass(value: str) -> None:
    check_gss_code(value, "child.residence_la")
    assert valid_gss_code(value)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("E0900007", "(got 8 characters)"),
        ("E090000070", "(got 10 characters)"),
        ("", "(got 0 characters)"),
        ("camden", "(got 6 characters)"),
        ("E09 00007", "(characters 2-9 are not all digits)"),
        ("X09000007", "(character 1 is not E, W, S or N)"),
        ("e09000007", "(character 1 is not E, W, S or N)"),
        ("EE9000007", "(characters 2-9 are not all digits)"),
        ("E0900000A", "(characters 2-9 are not all digits)"),
        ("E" + "".join(chr(0xFF10 + d) for d in (0, 9, 0, 0, 0, 0, 0, 7)), "not all digits"),
    ],
)
def test_malformed_gss_codes_say_the_expected_form(value: str, detail: str) -> None:
    error = _problem(check_gss_code, value, "child.residence_la")
    assert error.path == "child.residence_la"
    assert error.problem.startswith(_GSS_FORM)
    assert detail in error.problem
    assert not valid_gss_code(value)


def test_gss_code_problem_never_echoes_the_value() -> None:
    error = _problem(check_gss_code, "Camden Town")
    assert "Camden" not in error.problem
    assert error.path == "gss_code"


def test_gss_code_must_be_a_string() -> None:
    error = _problem(check_gss_code, 9000007, "child.residence_la")
    assert error.problem == f"{_GSS_FORM}, got int"


def test_gss_code_trailing_newline_is_refused() -> None:
    assert not valid_gss_code("E09000007\n")


def _reference_gss(value: str) -> bool:
    """The form, written as plainly as possible: E, W, S or N then 8 ASCII digits."""
    return (
        len(value) == 9
        and value[0] in ("E", "W", "S", "N")
        and all(char in "0123456789" for char in value[1:])
    )


def test_every_generated_gss_code_passes() -> None:
    rng = random.Random(9)
    for _ in range(5000):
        code = rng.choice("EWSN") + f"{rng.randrange(10**8):08d}"
        assert valid_gss_code(code), code


def test_a_wrong_letter_or_length_fails() -> None:
    rng = random.Random(10)
    wrong_letters = [chr(c) for c in range(32, 127) if chr(c) not in "EWSN"]
    for _ in range(2000):
        digits = f"{rng.randrange(10**8):08d}"
        assert not valid_gss_code(rng.choice(wrong_letters) + digits)
        letter = rng.choice("EWSN")
        length = rng.choice([n for n in range(0, 16) if n != 8])
        assert not valid_gss_code(letter + (digits * 2)[:length])


def test_gss_check_agrees_with_the_reference_on_near_misses() -> None:
    rng = random.Random(12)
    alphabet = "EWSNXewsn0123456789 -"
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.choice((8, 9, 9, 9, 10))))
        assert valid_gss_code(value) == _reference_gss(value), value
