"""The trust directory, identities, key rotation/revocation and pseudonyms."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sgx.errors import ConfigError, UnknownKey, UnknownSender
from sgx.pseudonym import Pseudonymiser
from sgx.trust import (
    DIRECTORY_FILE,
    PRIVATE_DIR,
    PSEUDONYM_KEY_FILE,
    Identity,
    PartySpec,
    TrustDirectory,
    init_trust,
    key_file_stem,
    revoke_key,
    rotate_key,
)

SCHOOL, POLICE, LA, GATEWAY = "school-hillside", "police-north", "la-northshire", "gateway"
SPECS = [
    PartySpec(LA, "local_authority", "Northshire Council", LA),
    PartySpec(SCHOOL, "school", "Hillside Primary", LA),
    PartySpec(POLICE, "police", "North Police", LA),
    PartySpec(GATEWAY, "gateway", "Exchange gateway", None),
]
KID = re.compile(r"^[a-z0-9-]+/\d{4}-\d{2}-\d{2}T\d{4}-[0-9a-f]{4}$")


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    path = tmp_path / "trust"
    init_trust(path, SPECS)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def edit_directory(trust_dir: Path, change: Any) -> None:
    path = trust_dir / DIRECTORY_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- init


def test_init_trust_writes_private_files_0600_in_dirs_0700(trust_dir: Path) -> None:
    private = trust_dir / PRIVATE_DIR
    assert mode(private) == 0o700
    assert mode(private / PSEUDONYM_KEY_FILE) == 0o600
    assert len((private / PSEUDONYM_KEY_FILE).read_bytes()) == 32
    for spec in SPECS:
        assert mode(private / spec.id) == 0o700
        files = sorted((private / spec.id).iterdir())
        assert [f.name.rsplit(".", 2)[1:] for f in files] == [["box", "pem"], ["signing", "pem"]]
        assert all(mode(f) == 0o600 for f in files)


def test_init_trust_directory_loads(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    assert [p.id for p in trust.parties()] == [s.id for s in SPECS]
    assert [p.id for p in trust.parties("school")] == [SCHOOL]
    school = trust.party(SCHOOL)
    assert (school.kind, school.name, school.local_authority) == ("school", "Hillside Primary", LA)
    assert trust.party(GATEWAY).local_authority is None
    (key,) = school.keys
    assert KID.match(key.kid)
    assert key.kid.startswith(SCHOOL + "/")
    now = datetime.now(UTC)
    assert key.not_before < now - timedelta(hours=23)
    assert now + timedelta(days=364) < key.not_after < now + timedelta(days=366)


def test_init_trust_refuses_to_overwrite(trust_dir: Path) -> None:
    with pytest.raises(ConfigError, match="exists"):
        init_trust(trust_dir, SPECS)


def test_init_trust_refuses_a_bad_party_spec(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local_authority"):
        init_trust(tmp_path, [PartySpec(SCHOOL, "school", "Hillside", "la-nowhere")])
    with pytest.raises(ConfigError, match="id"):
        init_trust(tmp_path / "b", [PartySpec("Bad Id!", "school", "Hillside", None)])


def test_directory_json_keeps_keys_base64(trust_dir: Path) -> None:
    data = json.loads((trust_dir / DIRECTORY_FILE).read_text())
    key = data["parties"][0]["keys"][0]
    assert isinstance(key["signing_public"], str)
    assert len(key["signing_public"]) == 44


# --------------------------------------------------------------------------- lookups


def test_unknown_party(trust_dir: Path) -> None:
    with pytest.raises(UnknownSender):
        TrustDirectory.load(trust_dir).party("school-nowhere")


def test_verify_key(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    identity = Identity.load(trust_dir, SCHOOL, directory=trust)
    now = datetime.now(UTC)
    public = trust.verify_key(SCHOOL, identity.signing_kid, now)
    public.verify(identity.sign(b"data"), b"data")
    key = trust.party(SCHOOL).keys[0]
    for outside in (key.not_before - timedelta(seconds=1), key.not_after + timedelta(seconds=1)):
        with pytest.raises(UnknownKey, match="not valid"):
            trust.verify_key(SCHOOL, key.kid, outside)
    with pytest.raises(UnknownKey):
        trust.verify_key(SCHOOL, trust.party(POLICE).keys[0].kid, now)
    with pytest.raises(UnknownSender):
        trust.verify_key("school-nowhere", key.kid, now)


def test_box_key_is_the_newest_valid_key(trust_dir: Path) -> None:
    old = TrustDirectory.load(trust_dir).party(GATEWAY).keys[0].kid
    new = rotate_key(trust_dir, GATEWAY)
    trust = TrustDirectory.load(trust_dir)
    now = datetime.now(UTC)
    assert trust.box_key(GATEWAY, now)[0] == new
    trust.verify_key(GATEWAY, old, now)  # the old key stays valid
    revoke_key(trust_dir, GATEWAY, new)
    assert TrustDirectory.load(trust_dir).box_key(GATEWAY, now)[0] == old
    revoke_key(trust_dir, GATEWAY, old)
    with pytest.raises(UnknownKey):
        TrustDirectory.load(trust_dir).box_key(GATEWAY, now)


def test_revoked_key_does_not_verify(trust_dir: Path) -> None:
    kid = TrustDirectory.load(trust_dir).party(POLICE).keys[0].kid
    revoke_key(trust_dir, POLICE, kid)
    with pytest.raises(UnknownKey, match="revoked"):
        TrustDirectory.load(trust_dir).verify_key(POLICE, kid, datetime.now(UTC))


def test_revoke_unknown_key(trust_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no key"):
        revoke_key(trust_dir, POLICE, f"{POLICE}/nope")
    with pytest.raises(ConfigError, match="no party"):
        rotate_key(trust_dir, "police-nowhere")


def test_rotated_kids_are_unique(trust_dir: Path) -> None:
    kids = {rotate_key(trust_dir, SCHOOL) for _ in range(5)}
    kids.add(TrustDirectory.load(trust_dir).party(SCHOOL).keys[0].kid)
    assert len(kids) == 6
    assert all(KID.match(kid) for kid in kids)


# --------------------------------------------------------------------------- identity


def test_identity_signs_with_the_newest_key(trust_dir: Path) -> None:
    first = Identity.load(trust_dir, SCHOOL)
    new = rotate_key(trust_dir, SCHOOL)
    rotated = Identity.load(trust_dir, SCHOOL)
    assert rotated.party_id == SCHOOL
    assert rotated.signing_kid == new != first.signing_kid
    assert [k.kid for k in rotated.keys] == [first.signing_kid, new]
    rotated.box_private(first.signing_kid)
    rotated.box_private(new)
    with pytest.raises(UnknownKey):
        rotated.box_private(f"{SCHOOL}/nope")
    assert "PRIVATE" not in repr(rotated)


def test_private_key_readable_by_others_is_refused(trust_dir: Path) -> None:
    kid = TrustDirectory.load(trust_dir).party(SCHOOL).keys[0].kid
    path = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(kid)}.signing.pem"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="group/other"):
        Identity.load(trust_dir, SCHOOL)


def test_private_key_not_matching_the_directory_is_refused(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    school_kid, police_kid = trust.party(SCHOOL).keys[0].kid, trust.party(POLICE).keys[0].kid
    school_pem = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(school_kid)}.signing.pem"
    police_pem = trust_dir / PRIVATE_DIR / POLICE / f"{key_file_stem(police_kid)}.signing.pem"
    school_pem.write_bytes(police_pem.read_bytes())
    with pytest.raises(ConfigError, match="does not match"):
        Identity.load(trust_dir, SCHOOL)


def test_identity_without_private_keys(trust_dir: Path) -> None:
    for path in (trust_dir / PRIVATE_DIR / SCHOOL).iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match="no private keys"):
        Identity.load(trust_dir, SCHOOL)
    with pytest.raises(ConfigError, match="no party"):
        Identity.load(trust_dir, "school-nowhere")


def test_identity_sign_with_a_named_kid(trust_dir: Path) -> None:
    identity = Identity.load(trust_dir, SCHOOL)
    with pytest.raises(UnknownKey):
        identity.sign(b"x", kid=f"{SCHOOL}/nope")
    signature = identity.sign(b"x", kid=identity.signing_kid)
    assert len(signature) == 64
    other = Identity(identity.party, {identity.signing_kid: Ed25519PrivateKey.generate()}, {})
    assert other.sign(b"x") != signature


# --------------------------------------------------------------------------- bad files


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=DIRECTORY_FILE):
        TrustDirectory.load(tmp_path)


def test_not_json(trust_dir: Path) -> None:
    (trust_dir / DIRECTORY_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match=DIRECTORY_FILE):
        TrustDirectory.load(trust_dir)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("box_public", "not base64!", r"parties\[1\]\.keys\[0\]\.box_public"),
        ("signing_public", "AAAA", r"parties\[1\]\.keys\[0\]\.signing_public.*32-byte"),
        ("not_before", "2026-01-01T00:00:00", r"parties\[1\]\.keys\[0\]\.not_before"),
        ("not_after", "2000-01-01T00:00:00Z", r"parties\[1\]\.keys\[0\]\.not_after"),
        ("kid", "la-northshire/2026", r"parties\[1\]\.keys\[0\]\.kid"),
        ("extra", 1, r"parties\[1\]\.keys\[0\]\.extra"),
    ],
)
def test_bad_key_fields_are_named(trust_dir: Path, field: str, value: Any, message: str) -> None:
    def change(data: Any) -> None:
        data["parties"][1]["keys"][0][field] = value

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=f"{DIRECTORY_FILE}.*{message}"):
        TrustDirectory.load(trust_dir)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "church", r"parties\[2\]\.kind"),
        ("id", SCHOOL, r"parties\[2\]\.id.*duplicate"),
        ("local_authority", POLICE, r"parties\[2\]\.local_authority.*not a local authority"),
    ],
)
def test_bad_party_fields_are_named(trust_dir: Path, field: str, value: Any, message: str) -> None:
    def change(data: Any) -> None:
        data["parties"][2][field] = value

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=f"{DIRECTORY_FILE}.*{message}"):
        TrustDirectory.load(trust_dir)


def test_gateway_must_not_belong_to_an_authority(trust_dir: Path) -> None:
    def change(data: Any) -> None:
        data["parties"][3]["local_authority"] = LA

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=r"parties\[3\]\.local_authority"):
        TrustDirectory.load(trust_dir)


# --------------------------------------------------------------------------- pseudonyms


def test_pseudonyms(trust_dir: Path) -> None:
    pseudonyms = Pseudonymiser.load(trust_dir)
    by_nhs = pseudonyms.child_key("943 476 5919", "A123456789012")
    assert by_nhs is not None
    assert len(by_nhs) == 16
    assert by_nhs == pseudonyms.child_key("9434765919", None)
    by_upn = pseudonyms.child_key(None, "a123456789012 ")
    assert by_upn == pseudonyms.child_key("", "A123456789012") != by_nhs
    assert pseudonyms.child_key(None, None) is None
    assert pseudonyms.child_key("  ", "") is None
    assert Pseudonymiser(bytes(32)).child_key("9434765919", None) != by_nhs
    assert "key hidden" in repr(pseudonyms)


def test_identifier_keys_pseudonymise_each_identifier_on_its_own() -> None:
    pseudonyms = Pseudonymiser(bytes(range(32)))
    nhs_key, upn_key = pseudonyms.identifier_keys("943 476 5919", "a123456789012")
    assert nhs_key == pseudonyms.child_key("9434765919", None)
    assert upn_key == pseudonyms.child_key(None, "A123456789012")
    assert pseudonyms.identifier_keys(None, "A123456789012") == (None, upn_key)
    assert pseudonyms.identifier_keys("9434765919", " ") == (nhs_key, None)


def test_pseudonym_domains_are_separate() -> None:
    pseudonyms = Pseudonymiser(bytes(range(32)))
    assert pseudonyms.child_key("1234567890", None) != pseudonyms.child_key(None, "1234567890")


def test_pseudonym_key_readable_by_others_is_refused(trust_dir: Path) -> None:
    (trust_dir / PRIVATE_DIR / PSEUDONYM_KEY_FILE).chmod(0o640)
    with pytest.raises(ConfigError, match="group/other"):
        Pseudonymiser.load(trust_dir)


def test_pseudonym_key_of_the_wrong_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        Pseudonymiser(b"short")
