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
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust, revoke_key, rotate_key
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import (
    DIRECTORY_FILE,
    PRIVATE_DIR,
    PSEUDONYM_KEY_FILE,
    Party,
    PartySpec,
    TrustDirectory,
    key_file_stem,
    read_directory,
)

SCHOOL, POLICE, LA, GATEWAY = "school-hillside", "police-north", "la-northshire", "gateway"
LA_GSS = "E06000901"  # a well-formed ONS GSS code for the fictional Northshire
SPECS = [
    PartySpec(LA, "local_authority", "Northshire Council", gss_code=LA_GSS),
    PartySpec(SCHOOL, "school", "Hillside Primary", (LA,)),
    PartySpec(POLICE, "police", "North Police", (LA,)),
    PartySpec(GATEWAY, "gateway", "Exchange gateway"),
]
# A partnership of two LAs: a school in one, a force serving both, a national body.
OTHER_LA, OTHER_GSS, OTHER_SCHOOL, NATIONAL = (
    "la-southvale", "E06000902", "school-brookside", "nhs-national",
)  # fmt: skip
PARTNERSHIP = [
    *SPECS,
    PartySpec(OTHER_LA, "local_authority", "Southvale Council", gss_code=OTHER_GSS),
    PartySpec(OTHER_SCHOOL, "school", "Brookside Primary", (OTHER_LA,)),
    PartySpec(NATIONAL, "health", "A national NHS service", serves_any=True),
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
    assert (school.kind, school.name, school.serves) == ("school", "Hillside Primary", [LA])
    assert (school.gss_code, school.serves_any) == (None, False)
    la = trust.party(LA)
    assert (la.gss_code, la.serves) == (LA_GSS, [])
    gateway = trust.party(GATEWAY)
    assert (gateway.gss_code, gateway.serves, gateway.serves_any) == (None, [], False)
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
    with pytest.raises(ConfigError, match=r"parties\[0\]\.serves\[0\].*'la-nowhere'.*not a local"):
        init_trust(tmp_path, [PartySpec(SCHOOL, "school", "Hillside", ("la-nowhere",))])
    with pytest.raises(ConfigError, match="id"):
        init_trust(tmp_path / "b", [PartySpec("Bad Id!", "school", "Hillside")])
    with pytest.raises(ConfigError, match=r"parties\[0\]\.gss_code.*add \"gss_code\""):
        init_trust(tmp_path / "c", [PartySpec(LA, "local_authority", "Northshire Council")])
    with pytest.raises(ConfigError, match="gss_code"):
        init_trust(tmp_path / "d", [PartySpec(LA, "local_authority", "N", gss_code="Camden")])
    assert not (tmp_path / "c" / DIRECTORY_FILE).exists()


def test_init_trust_refuses_a_gss_code_given_twice(tmp_path: Path) -> None:
    twice = [*SPECS, PartySpec(OTHER_LA, "local_authority", "Southvale Council", gss_code=LA_GSS)]
    with pytest.raises(ConfigError, match=rf"parties\[4\]\.gss_code.*{LA_GSS}.*{LA}"):
        init_trust(tmp_path, twice)
    assert not (tmp_path / DIRECTORY_FILE).exists()


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
        ("serves", [LA, POLICE], r"parties\[2\]\.serves\[1\].*not a local authority"),
        ("serves", ["la-nowhere"], r"parties\[2\]\.serves\[0\].*not a local authority"),
        ("serves_any", True, r"parties\[2\]\.serves.*either 'serves' or 'serves_any'"),
        ("gss_code", "E06000777", r"parties\[2\]\.gss_code.*only a local authority"),
        ("gss_code", "Northshire", r"parties\[2\]\.gss_code"),
        ("local_authority", LA, r"parties\[2\].*not also 'local_authority'"),
    ],
)
def test_bad_party_fields_are_named(trust_dir: Path, field: str, value: Any, message: str) -> None:
    def change(data: Any) -> None:
        data["parties"][2][field] = value

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=f"{DIRECTORY_FILE}.*{message}"):
        TrustDirectory.load(trust_dir)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("serves", [LA], r"parties\[3\]\.serves.*must be empty for the gateway"),
        ("serves_any", True, r"parties\[3\]\.serves.*must be empty for the gateway"),
        ("gss_code", "E06000777", r"parties\[3\]\.gss_code.*null for the gateway"),
    ],
)
def test_gateway_must_not_belong_to_an_authority(
    trust_dir: Path, field: str, value: Any, message: str
) -> None:
    def change(data: Any) -> None:
        data["parties"][3][field] = value

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=f"{DIRECTORY_FILE}.*{message}"):
        TrustDirectory.load(trust_dir)


@pytest.mark.parametrize(
    ("field", "value"), [("serves", [LA, OTHER_LA]), ("serves", [OTHER_LA]), ("serves_any", True)]
)
def test_a_local_authority_serves_only_itself(tmp_path: Path, field: str, value: Any) -> None:
    trust_dir = tmp_path / "trust"
    init_trust(trust_dir, PARTNERSHIP)

    def change(data: Any) -> None:
        data["parties"][0][field] = value

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=rf"parties\[0\]\.serves.*only itself.*{LA}"):
        TrustDirectory.load(trust_dir)


def test_a_local_authority_without_a_gss_code_is_told_to_add_it(trust_dir: Path) -> None:
    def change(data: Any) -> None:
        del data["parties"][0]["gss_code"]

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError) as caught:
        TrustDirectory.load(trust_dir)
    message = str(caught.value)
    assert DIRECTORY_FILE in message
    assert "field 'parties[0].gss_code'" in message
    assert 'add "gss_code" to this party' in message


def test_a_gss_code_belongs_to_one_local_authority(tmp_path: Path) -> None:
    trust_dir = tmp_path / "trust"
    init_trust(trust_dir, PARTNERSHIP)

    def change(data: Any) -> None:
        data["parties"][4]["gss_code"] = LA_GSS

    edit_directory(trust_dir, change)
    with pytest.raises(ConfigError, match=rf"parties\[4\]\.gss_code.*{LA_GSS} is already {LA}"):
        TrustDirectory.load(trust_dir)


def _to_old_format(data: Any, *, keep_gss: bool) -> None:
    """Rewrite a directory as it was before partnerships: one local_authority a party."""
    for party in data["parties"]:
        serves = party.pop("serves")
        assert party.pop("serves_any") is False
        gss = party.pop("gss_code")
        if party["kind"] == "local_authority":
            party["local_authority"] = party["id"]
            if keep_gss:
                party["gss_code"] = gss
        else:
            party["local_authority"] = serves[0] if serves else None


def test_an_old_directory_with_local_authority_still_loads(trust_dir: Path) -> None:
    edit_directory(trust_dir, lambda data: _to_old_format(data, keep_gss=True))
    assert "local_authority" in (trust_dir / DIRECTORY_FILE).read_text()
    trust = TrustDirectory.load(trust_dir)
    assert trust.party(SCHOOL).serves == [LA]
    assert trust.party(POLICE).serves == [LA]
    assert trust.party(GATEWAY).serves == []
    assert trust.party(LA).serves == [LA]
    assert trust.served(SCHOOL) == trust.served(LA) == (LA,)
    assert trust.authority(LA_GSS) == trust.party(LA)
    # Rewriting it (as a key rotation does) writes the new form, which loads the same.
    rotate_key(trust_dir, SCHOOL)
    data = json.loads((trust_dir / DIRECTORY_FILE).read_text())
    assert all("local_authority" not in party for party in data["parties"])
    assert TrustDirectory.load(trust_dir).party(SCHOOL).serves == [LA]


def test_an_old_directory_without_gss_codes_names_what_to_add(trust_dir: Path) -> None:
    edit_directory(trust_dir, lambda data: _to_old_format(data, keep_gss=False))
    with pytest.raises(ConfigError, match=r"parties\[0\]\.gss_code.*ONS GSS code.*add"):
        TrustDirectory.load(trust_dir)


# --------------------------------------------------------------------------- partnership


@pytest.fixture
def partnership(tmp_path: Path) -> TrustDirectory:
    init_trust(tmp_path / "trust", PARTNERSHIP)
    return TrustDirectory.load(tmp_path / "trust")


def test_authority_finds_a_local_authority_by_its_gss_code(partnership: TrustDirectory) -> None:
    assert partnership.authority(LA_GSS) == partnership.party(LA)
    assert partnership.authority(OTHER_GSS) == partnership.party(OTHER_LA)
    assert partnership.authority("E09000007") is None  # well-formed, not in this directory


def test_served_is_the_las_a_party_works_with(partnership: TrustDirectory) -> None:
    assert partnership.served(LA) == (LA,)
    assert partnership.served(OTHER_LA) == (OTHER_LA,)
    assert partnership.served(SCHOOL) == (LA,)
    assert partnership.served(OTHER_SCHOOL) == (OTHER_LA,)
    assert partnership.served(GATEWAY) == ()
    with pytest.raises(UnknownSender):
        partnership.served("school-nowhere")


def test_serves_any_means_every_local_authority_in_the_directory(
    partnership: TrustDirectory,
) -> None:
    assert partnership.party(NATIONAL).serves == []
    assert partnership.served(NATIONAL) == (LA, OTHER_LA)  # sorted
    assert {p.id for p in partnership.serving(LA, "health")} == {NATIONAL}
    assert {p.id for p in partnership.serving(OTHER_LA, "health")} == {NATIONAL}


def test_local_authorities_are_every_la_sorted_and_follow_a_refresh(
    partnership: TrustDirectory, tmp_path: Path
) -> None:
    assert partnership.local_authorities() == (LA, OTHER_LA)
    specs = [*PARTNERSHIP, PartySpec("la-anew", "local_authority", "A New Council",
                                     gss_code="E06000903")]  # fmt: skip
    init_trust(tmp_path / "newer", specs)
    partnership.refresh(TrustDirectory.load(tmp_path / "newer"))
    assert partnership.local_authorities() == ("la-anew", LA, OTHER_LA)


def test_a_party_serving_several_las_is_served_sorted(tmp_path: Path) -> None:
    specs = [*PARTNERSHIP[:2], PartySpec(POLICE, "police", "North Police", (OTHER_LA, LA)),
             *PARTNERSHIP[3:]]  # fmt: skip
    init_trust(tmp_path / "trust", specs)
    trust = TrustDirectory.load(tmp_path / "trust")
    assert trust.party(POLICE).serves == [OTHER_LA, LA]
    assert trust.served(POLICE) == (LA, OTHER_LA)


def test_serving_is_the_parties_of_a_kind_serving_an_la(partnership: TrustDirectory) -> None:
    assert [p.id for p in partnership.serving(LA, "school")] == [SCHOOL]
    assert [p.id for p in partnership.serving(OTHER_LA, "school")] == [OTHER_SCHOOL]
    assert [p.id for p in partnership.serving(LA, "police")] == [POLICE]
    assert partnership.serving(OTHER_LA, "police") == []
    assert [p.id for p in partnership.serving(LA, "local_authority")] == [LA]
    assert partnership.serving(LA, "gateway") == []
    assert partnership.serving("la-nowhere", "school") == []


def test_parties_read_share_their_field_sets_and_say_the_same(
    partnership: TrustDirectory, tmp_path: Path
) -> None:
    """Loaded parties share one set of field names per model (a set each was 36 MB at
    25,000 parties), and read, dump and copy exactly as pydantic's own."""
    text = (tmp_path / "trust" / DIRECTORY_FILE).read_text()
    own = [Party.model_validate(party) for party in json.loads(text)["parties"]]
    read = read_directory(tmp_path / "trust" / DIRECTORY_FILE)
    assert read == own
    assert [p.model_dump_json() for p in read] == [p.model_dump_json() for p in own]
    assert len({id(p.model_fields_set) for p in read}) == 1
    assert len({id(k.model_fields_set) for p in read for k in p.keys}) == 1
    renamed = read[1].model_copy(update={"name": "Renamed"})
    assert renamed.name == "Renamed"
    assert read[1].name == own[1].name
    assert read[2].model_fields_set == set(Party.model_fields)


def test_serving_and_knows_follow_a_refresh(partnership: TrustDirectory, tmp_path: Path) -> None:
    """Both are indexed when the directory is read; a refresh brings the newer index."""
    assert partnership.knows(SCHOOL)
    assert not partnership.knows("school-new")
    specs = [*PARTNERSHIP, PartySpec("school-new", "school", "New School", (OTHER_LA,))]
    init_trust(tmp_path / "newer", specs)
    partnership.refresh(TrustDirectory.load(tmp_path / "newer"))
    assert partnership.knows("school-new")
    assert [p.id for p in partnership.serving(OTHER_LA, "school")] == [OTHER_SCHOOL, "school-new"]
    assert [p.id for p in partnership.serving(LA, "school")] == [SCHOOL]


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
