"""Child identifiers, the NHS number and the DfE Unique Pupil Number (UPN), and the ONS
GSS code of the local authority a child lives in.

**NHS number** (the consistent child identifier, Children Act 2004 s.16LC): 10 digits.
The tenth is a modulus-11 check digit: multiply the first nine digits by the weights
10, 9, ..., 2, sum, and take ``11 - (sum % 11)``; a result of 11 means a check digit of 0
and a result of 10 means the nine digits can never form a valid NHS number.

**UPN** (DfE Unique Pupil Number, Common Basic Data Set / UK Government Data Standards
Catalogue "UniquePupilNumber" v2.0): 13 characters, ``Annnnnnnnnnnn`` or, for a temporary
UPN, ``AnnnnnnnnnnnA``. Character 1 is a check letter; characters 2-4 are the LA number,
5-8 the establishment number, 9-10 the year of issue, 11-13 a serial number whose last
character is a letter in a temporary UPN. The check letter: multiply characters 2..13 by
the weights 2..13 (the weight is the character's position), sum, take the sum modulo 23
and map 0..22 to ``ABCDEFGHJKLMNPQRTUVWXYZ`` (I, O and S are never used). A letter in
position 13 takes its value in that same alphabet (A=0, B=1, ..., H=7, J=8, ..., Z=22).
(School census rule 1510.) The LA number is not checked against the list of LA codes.

**GSS code** (ONS Government Statistical Service code, as in the ONS Register of
Geographic Codes): 9 characters, a country letter (``E`` England, ``W`` Wales, ``S``
Scotland, ``N`` Northern Ireland) then 8 digits: a 2-digit entity code and a 6-digit
instance, e.g. ``E09000007`` (Camden; E09 is a London borough). England's children's
social care authorities are E06 (unitary), E08 (metropolitan district), E09 (London
borough) and E10 (county). Only the form is checked, not the entity code nor that the code
is in the register: the gateway routes a well-formed code of an LA outside the partnership
to the sender's default LA(s).

The ``check_*`` functions raise :class:`sgx.errors.ContractError` naming ``path`` and the
problem; the ``valid_*`` functions give the same answer as a bool. The ``make_*``
functions build synthetic, valid identifiers for tests and the demo: NHS numbers in the
999 test range and UPNs with LA number 999 (not a real LA).
"""

from __future__ import annotations

import re

from sgx.errors import ContractError

NHS_NUMBER_LENGTH = 10
UPN_LENGTH = 13
GSS_CODE_LENGTH = 9
GSS_COUNTRY_LETTERS = "EWSN"
UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"

# The weighted sum is taken over ASCII codes; subtract what the codes of "0" add (48 x 54).
_NHS_ASCII_BIAS = 48 * sum(range(2, 11))
_UPN_VALUES = {letter: index for index, letter in enumerate(UPN_LETTERS)}
_UPN_VALUES.update({str(digit): digit for digit in range(10)})
_UPN_BY_CODE = tuple(_UPN_VALUES.get(chr(code), 0) for code in range(128))
_UPN_FORM = re.compile(r"[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]")
_NHS_TEST_PREFIX = 999_000_000
_NHS_TEST_BODIES = 500_000
_UPN_TEST_PREFIX = "999"
_GSS_FORM = re.compile(r"[EWSN][0-9]{8}")
_GSS_EXPECTED = "must be an ONS GSS code: a letter E, W, S or N and 8 digits, e.g. E09000007"


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def nhs_check_digit(first_nine: str) -> int | None:
    """The modulus-11 check digit for nine ASCII digits, or None when it would be 10."""
    d = first_nine.encode("ascii")
    total = (
        10 * d[0]
        + 9 * d[1]
        + 8 * d[2]
        + 7 * d[3]
        + 6 * d[4]
        + 5 * d[5]
        + 4 * d[6]
        + 3 * d[7]
        + 2 * d[8]
        - _NHS_ASCII_BIAS
    )
    check = 11 - total % 11
    if check == 10:
        return None
    return 0 if check == 11 else check


def check_nhs_number(value: str, path: str = "nhs_number") -> None:
    """Raise ContractError at ``path`` unless ``value`` is a valid NHS number."""
    if not isinstance(value, str):
        raise ContractError(path, f"must be a string of 10 digits, got {type(value).__name__}")
    if len(value) != NHS_NUMBER_LENGTH or not _is_digits(value):
        raise ContractError(path, f"must be 10 digits (got {len(value)} characters)")
    expected = nhs_check_digit(value[:9])
    if expected is None:
        raise ContractError(path, "is not a valid NHS number: its first nine digits give check 10")
    actual = ord(value[9]) - 48
    if actual != expected:
        raise ContractError(path, f"check digit is {actual} but should be {expected}")


def valid_nhs_number(value: str) -> bool:
    """True if ``value`` is a valid NHS number."""
    try:
        check_nhs_number(value)
    except ContractError:
        return False
    return True


def upn_check_letter(last_twelve: str) -> str:
    """The check letter for UPN characters 2..13 (already known to be well formed)."""
    v = _UPN_BY_CODE
    c = last_twelve.encode("ascii")
    total = (
        2 * v[c[0]]
        + 3 * v[c[1]]
        + 4 * v[c[2]]
        + 5 * v[c[3]]
        + 6 * v[c[4]]
        + 7 * v[c[5]]
        + 8 * v[c[6]]
        + 9 * v[c[7]]
        + 10 * v[c[8]]
        + 11 * v[c[9]]
        + 12 * v[c[10]]
        + 13 * v[c[11]]
    )
    return UPN_LETTERS[total % 23]


def _upn_shape_problem(value: str) -> str:
    if len(value) != UPN_LENGTH:
        return f"must be 13 characters (got {len(value)})"
    if value[0] not in _UPN_VALUES or value[0].isdigit():
        return f"character 1 must be a check letter from {UPN_LETTERS}"
    if not _is_digits(value[1:12]):
        return "characters 2-12 must be digits"
    if value[12] not in _UPN_VALUES:
        return f"character 13 must be a digit or, for a temporary UPN, a letter from {UPN_LETTERS}"
    return "is not a UPN"


def check_upn(value: str, path: str = "upn") -> None:
    """Raise ContractError at ``path`` unless ``value`` is a valid (permanent or temporary) UPN."""
    if not isinstance(value, str):
        raise ContractError(path, f"must be a string of 13 characters, got {type(value).__name__}")
    if _UPN_FORM.fullmatch(value) is None:
        raise ContractError(path, _upn_shape_problem(value))
    expected = upn_check_letter(value[1:])
    if value[0] != expected:
        raise ContractError(path, f"check letter is {value[0]} but should be {expected}")


def valid_upn(value: str) -> bool:
    """True if ``value`` is a valid UPN."""
    try:
        check_upn(value)
    except ContractError:
        return False
    return True


def _gss_shape_problem(value: str) -> str:
    if len(value) != GSS_CODE_LENGTH:
        return f"{_GSS_EXPECTED} (got {len(value)} characters)"
    if value[0] not in GSS_COUNTRY_LETTERS:
        return f"{_GSS_EXPECTED} (character 1 is not E, W, S or N)"
    return f"{_GSS_EXPECTED} (characters 2-9 are not all digits)"


def check_gss_code(value: str, path: str = "gss_code") -> None:
    """Raise ContractError at ``path`` unless ``value`` is in the form of an ONS GSS code."""
    if not isinstance(value, str):
        raise ContractError(path, f"{_GSS_EXPECTED}, got {type(value).__name__}")
    if _GSS_FORM.fullmatch(value) is None:
        raise ContractError(path, _gss_shape_problem(value))


def valid_gss_code(value: str) -> bool:
    """True if ``value`` is in the form of an ONS GSS code."""
    try:
        check_gss_code(value)
    except ContractError:
        return False
    return True


def make_nhs_number(seed: int) -> str:
    """A valid NHS number in the 999 test range; distinct for seeds 0..499 999.

    Seed ``s`` uses the nine digits ``999000000 + 2s``, or ``+ 2s + 1`` when those give
    check 10 (two consecutive bodies can never both give 10).
    """
    base = _NHS_TEST_PREFIX + 2 * (seed % _NHS_TEST_BODIES)
    for body in (str(base), str(base + 1)):
        check = nhs_check_digit(body)
        if check is not None:
            return f"{body}{check}"
    raise AssertionError("unreachable: two consecutive NHS bodies cannot both give check 10")


def make_upn(seed: int, *, temporary: bool = False) -> str:
    """A valid UPN with LA number 999; distinct for seeds 0..999 999 999.

    A temporary UPN ends in a letter (``seed % 23`` in the UPN alphabet).
    """
    if temporary:
        serial = f"{seed // 23 % 10**8:08d}{UPN_LETTERS[seed % 23]}"
    else:
        serial = f"{seed % 10**9:09d}"
    rest = f"{_UPN_TEST_PREFIX}{serial}"
    return f"{upn_check_letter(rest)}{rest}"
