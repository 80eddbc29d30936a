"""child.residence_la: an ONS GSS code, refused when malformed at the producer and the gateway.

The producer's side is Contract.check and Contract.encode; the gateway's is Contract.decode,
which applies the same rules to what arrives (here a record encoded without the check, as a
sender that skips validation would write it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from safeguard import samples
from sgx.domain.identifiers import make_nhs_number
from sgx.errors import ContractError
from sgx.wire.contract import (
    ATTENDANCE_UPDATE,
    HEALTH_UPDATE,
    POLICE_NOTIFICATION,
    Contract,
    default_contract,
)

PATH = "child.residence_la"
BAD_CODES = ["E0900007", "X09000007", "camden", "e09000007", "E090000071", "", "E09 00007"]

Builder = Callable[..., dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    ATTENDANCE_UPDATE: samples.attendance_update,
    HEALTH_UPDATE: samples.health_update,
    POLICE_NOTIFICATION: samples.police_notification,
}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return default_contract()


def _health_update(residence_la: Any) -> dict[str, Any]:
    return samples.health_update(samples.child(make_nhs_number(42), residence=residence_la))


@pytest.mark.parametrize("code", ["E09000007", "E09000019", "E10000014", "W06000015"])
def test_a_good_code_passes_check_and_survives_the_wire(contract: Contract, code: str) -> None:
    record = _health_update(code)
    contract.check(HEALTH_UPDATE, record)
    name, decoded = contract.decode(contract.encode(HEALTH_UPDATE, record))
    assert name == HEALTH_UPDATE
    assert decoded["child"]["residence_la"] == code


def test_residence_is_optional(contract: Contract) -> None:
    stated_none = _health_update(None)
    contract.check(HEALTH_UPDATE, stated_none)
    left_out = samples.health_update(samples.child(make_nhs_number(43)))
    del left_out["child"]["residence_la"]  # as a sender on the schema before the field
    _, decoded = contract.decode(contract.encode(HEALTH_UPDATE, left_out))
    assert decoded["child"]["residence_la"] is None


@pytest.mark.parametrize("code", BAD_CODES)
def test_a_bad_code_is_refused_by_check_naming_the_field(contract: Contract, code: str) -> None:
    with pytest.raises(ContractError) as info:
        contract.check(HEALTH_UPDATE, _health_update(code))
    error = info.value
    assert error.path == PATH
    assert error.schema == HEALTH_UPDATE
    assert "must be an ONS GSS code" in error.problem
    assert "E09000007" in error.problem  # the example of the expected form


@pytest.mark.parametrize("code", BAD_CODES)
def test_a_bad_code_is_refused_by_encode(contract: Contract, code: str) -> None:
    with pytest.raises(ContractError) as info:
        contract.encode(HEALTH_UPDATE, _health_update(code))
    assert info.value.path == PATH


@pytest.mark.parametrize("code", ["E0900007", "X09000007", "camden"])
def test_a_bad_code_that_reaches_the_gateway_is_refused_on_decode(
    contract: Contract, code: str
) -> None:
    unchecked = contract.encode(HEALTH_UPDATE, _health_update(code), check=False)
    with pytest.raises(ContractError) as info:
        contract.decode(unchecked)
    assert info.value.path == PATH
    with pytest.raises(ContractError) as info:
        contract.decode_as(HEALTH_UPDATE, unchecked)
    assert info.value.path == PATH


def test_the_problem_does_not_repeat_the_value(contract: Contract) -> None:
    with pytest.raises(ContractError) as info:
        contract.check(HEALTH_UPDATE, _health_update("Islington"))
    assert "Islington" not in str(info.value)


def test_a_code_that_is_not_a_string_is_a_structure_error(contract: Contract) -> None:
    with pytest.raises(ContractError) as info:
        contract.check(HEALTH_UPDATE, _health_update(9000007))
    assert info.value.path == PATH


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_notification_type_checks_the_residence(contract: Contract, name: str) -> None:
    child = samples.child(make_nhs_number(44), residence="E09000019")
    contract.check(name, BUILDERS[name](child))
    child["residence_la"] = "E0900019"
    with pytest.raises(ContractError) as info:
        contract.check(name, BUILDERS[name](child))
    assert info.value.path == PATH
    assert info.value.schema == name
