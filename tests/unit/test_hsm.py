"""Signing keys in a PKCS#11 token, against a real SoftHSM2 token (sgx.keys.hsm).

The module's tokens live in a temporary SoftHSM2 token directory (SOFTHSM2_CONF points at
it for the whole module: a PKCS#11 library reads its configuration once, when loaded).
Without SoftHSM2 the tests fail, never skip: install the Debian package softhsm2
(scripts/ensure-tools.sh does).

``sgx-test`` is logged in by the first signer and stays logged in (an ``Identity`` never
closes its signers); ``sgx-spare`` is never logged in, so a wrong PIN there reaches the
token itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from safeguard.cli import main
from safeguard.parties import DEMO_PARTIES, HEALTH, SCHOOL
from sgx.errors import ConfigError
from sgx.keys.hsm import TokenConfig, TokenKeyReference, TokenSigner, generate_signing_key
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust, rotate_key_into_token
from sgx.keys.trust import PRIVATE_DIR, SIGNING_REFERENCE_SUFFIX, TrustDirectory, key_file_stem
from sgx.wire.envelope import Opener, Purpose, Sealer, peek

MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2
TOKEN, SPARE = "sgx-test", "sgx-spare"
# Distinctive PINs, so "the message does not contain the PIN" cannot pass or fail by a
# coincidence with a slot number or a temporary path.
PIN, SO_PIN, WRONG_PIN = "7301-user-pin", "5678-so-pin", "9462-wrong-pin"
GATEWAY = "gateway"
PIN_ENV = "SGX_TEST_TOKEN_PIN"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    tool: str


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    tool = shutil.which("softhsm2-util")
    if tool is None or not Path(MODULE).exists():
        pytest.fail(
            f"SoftHSM2 is missing (softhsm2-util on PATH, {MODULE}): install the Debian package"
            " softhsm2 (apt-get install softhsm2, or scripts/ensure-tools.sh)",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in (TOKEN, SPARE):
        init = [tool, "--init-token", "--free", "--label", label]
        subprocess.run(
            [*init, "--pin", PIN, "--so-pin", SO_PIN], env=env, check=True, capture_output=True
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        yield SoftHsm(conf, tool)


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.pin"
    path.write_text(PIN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def token(softhsm: SoftHsm, pin_file: Path) -> TokenConfig:
    return TokenConfig(module=MODULE, token=TOKEN, pin_file=pin_file)


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    path = tmp_path / "trust"
    init_trust(path, DEMO_PARTIES)
    return path


def label(name: str) -> str:
    """A key label no other test uses (the token lives as long as the module)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def assert_names(exc: pytest.ExceptionInfo[ConfigError], *parts: str) -> str:
    message = str(exc.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    for pin in (PIN, WRONG_PIN):
        assert pin not in message
    return message


# --------------------------------------------------------------------------- the token


def test_a_key_generated_in_the_token_signs_what_cryptography_verifies(
    token: TokenConfig,
) -> None:
    key = label("basic")
    public = generate_signing_key(token, key)
    assert len(public) == 32
    with TokenSigner(token, key) as signer:
        assert signer.public_bytes_raw() == public
        for data in (b"", b"a notification about a child", bytes(range(256)) * 40):
            signature = signer.sign(data)
            assert len(signature) == 64
            Ed25519PublicKey.from_public_bytes(public).verify(signature, data)


def test_a_label_in_use_is_not_generated_again(token: TokenConfig) -> None:
    key = label("twice")
    generate_signing_key(token, key)
    with pytest.raises(ConfigError) as exc:
        generate_signing_key(token, key)
    assert_names(exc, MODULE, TOKEN, key, "already has an object with this label")


ATTRIBUTES = """
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import PKCS11Error
module, token, key, pin = sys.argv[1:]
session = pkcs11.lib(module).get_token(token_label=token).open(user_pin=pin)
private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, label=key)
out = {a.name: bool(private[a]) for a in (
    Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE, Attribute.TOKEN, Attribute.PRIVATE, Attribute.SIGN)}
try:
    private[Attribute.VALUE]
    out["VALUE"] = "read"
except PKCS11Error as exc:
    out["VALUE"] = type(exc).__name__
print(json.dumps(out))
"""


def test_the_private_key_cannot_leave_the_token(softhsm: SoftHsm, token: TokenConfig) -> None:
    """Another program that logs in with the PIN may use the key, not read it."""
    key = label("sealed")
    generate_signing_key(token, key)
    shown = subprocess.run(
        [sys.executable, "-c", ATTRIBUTES, MODULE, TOKEN, key, PIN],
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm.conf)},
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(shown.stdout) == {
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
        "TOKEN": True,
        "PRIVATE": True,
        "SIGN": True,
        "VALUE": "AttributeSensitive",
    }


async def test_signing_from_the_event_loop_and_from_threads_at_once(token: TokenConfig) -> None:
    key = label("busy")
    public = Ed25519PublicKey.from_public_bytes(generate_signing_key(token, key))
    with TokenSigner(token, key) as signer:
        messages = [f"message {i}".encode() for i in range(24)]
        threaded = asyncio.gather(*(asyncio.to_thread(signer.sign, m) for m in messages))
        inline = [signer.sign(m) for m in messages]
        for message, a, b in zip(messages, await threaded, inline, strict=True):
            public.verify(a, message)
            public.verify(b, message)


def test_signers_of_one_token_share_its_login(token: TokenConfig) -> None:
    """A party's two token keys (or two parties') in one process: PKCS#11 allows one login
    per token, and closing one signer must not log the other out."""
    first, second = label("first"), label("second")
    generate_signing_key(token, first)
    generate_signing_key(token, second)
    one = TokenSigner(token, first)
    with TokenSigner(token, second) as two:
        one.close()
        one.close()
        Ed25519PublicKey.from_public_bytes(two.public_bytes_raw()).verify(two.sign(b"x"), b"x")
    with pytest.raises(ConfigError, match="the signer is closed"):
        one.sign(b"x")


# --------------------------------------------------------------------------- a party's key


def test_a_party_key_rotated_into_the_token_seals_envelopes_that_open(
    trust_dir: Path, token: TokenConfig, pin_file: Path
) -> None:
    kid = rotate_key_into_token(trust_dir, SCHOOL, token)
    folder = trust_dir / PRIVATE_DIR / SCHOOL
    stem = key_file_stem(kid)
    reference = folder / f"{stem}{SIGNING_REFERENCE_SUFFIX}"
    assert not (folder / f"{stem}.signing.pem").exists()
    assert stat.S_IMODE((folder / f"{stem}.box.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(reference.stat().st_mode) == 0o600
    assert json.loads(reference.read_text()) == {
        "version": 1,
        "module": MODULE,
        "token": TOKEN,
        "key": kid,
        "pin_file": str(pin_file),
    }
    assert PIN not in reference.read_text()

    trust = TrustDirectory.load(trust_dir)
    school = Identity.load(trust_dir, SCHOOL, directory=trust)
    assert school.signing_kid == kid
    assert len(school.keys) == 2  # the PEM key of init_trust loads beside the token's
    plaintext = b"attendance: absent three days running"
    value = Sealer(school, trust, GATEWAY).seal(Purpose.NOTIFICATION, uuid.uuid4(), plaintext)
    opened = Opener(Identity.load(trust_dir, GATEWAY, directory=trust), trust).open(value)
    assert (opened.sender.id, opened.sender_key_id, opened.plaintext) == (SCHOOL, kid, plaintext)
    claims = peek(value)
    assert claims is not None
    assert claims.sender == SCHOOL

    data = b"an audit checkpoint"
    trust.verify_key(SCHOOL, kid, datetime.now(UTC)).verify(school.sign(data), data)


def test_the_cli_rotates_a_party_key_into_the_token(
    trust_dir: Path, softhsm: SoftHsm, pin_file: Path
) -> None:
    args = ["keys", "rotate-into-token", str(trust_dir), HEALTH, "--module", MODULE]
    done = CliRunner().invoke(main, [*args, "--token", TOKEN, "--pin-file", str(pin_file)])
    assert done.exit_code == 0, done.output
    kid = done.output.strip()
    assert Identity.load(trust_dir, HEALTH).signing_kid == kid

    absent = ["--token", "sgx-absent", "--pin-file", str(pin_file)]
    missing = CliRunner().invoke(main, [*args, *absent])
    assert missing.exit_code == 1
    assert "token 'sgx-absent': cannot find the token: no token with this" in missing.output
    assert PIN not in missing.output

    neither = CliRunner().invoke(main, [*args, "--token", TOKEN])
    assert neither.exit_code == 2
    assert "give one of --pin-file and --pin-env" in neither.output
    assert len(TrustDirectory.load(trust_dir).party(HEALTH).keys) == 2


def test_a_reference_to_another_token_key_is_refused(trust_dir: Path, token: TokenConfig) -> None:
    kid = rotate_key_into_token(trust_dir, SCHOOL, token)
    other = label("other")
    generate_signing_key(token, other)
    reference = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(kid)}{SIGNING_REFERENCE_SUFFIX}"
    data = json.loads(reference.read_text())
    reference.write_text(json.dumps({**data, "key": other}))
    with pytest.raises(ConfigError) as exc:
        Identity.load(trust_dir, SCHOOL)
    assert_names(exc, str(reference), other, f"does not match signing_public of {kid}")


def test_a_pem_file_beside_a_token_reference_is_refused(
    trust_dir: Path, token: TokenConfig
) -> None:
    kid = rotate_key_into_token(trust_dir, SCHOOL, token)
    pem = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(kid)}.signing.pem"
    pem.write_bytes(b"")
    pem.chmod(0o600)
    with pytest.raises(ConfigError, match="both exist"):
        Identity.load(trust_dir, SCHOOL)


# --------------------------------------------------------------------------- errors


def test_a_wrong_pin_is_refused_by_the_token(
    softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PIN_ENV, WRONG_PIN)
    wrong = TokenConfig(module=MODULE, token=SPARE, pin_env=PIN_ENV)
    with pytest.raises(ConfigError) as exc:
        TokenSigner(wrong, "any-key")
    assert_names(exc, MODULE, SPARE, "rejected the PIN")
    with pytest.raises(ConfigError) as exc:
        generate_signing_key(wrong, "any-key")
    assert_names(exc, MODULE, SPARE, "rejected the PIN")


def test_a_pin_other_than_the_one_logged_in_with_is_refused(
    token: TokenConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = label("held")
    generate_signing_key(token, key)
    monkeypatch.setenv(PIN_ENV, WRONG_PIN)
    with TokenSigner(token, key), pytest.raises(ConfigError) as exc:
        TokenSigner(TokenConfig(module=MODULE, token=TOKEN, pin_env=PIN_ENV), key)
    assert_names(exc, MODULE, TOKEN, "different PIN")


def test_a_missing_token_label(softhsm: SoftHsm, pin_file: Path) -> None:
    absent = TokenConfig(module=MODULE, token="sgx-absent", pin_file=pin_file)
    with pytest.raises(ConfigError) as exc:
        TokenSigner(absent, "any-key")
    assert_names(exc, MODULE, "token 'sgx-absent'", "no token with this label")


def test_a_missing_key_label(token: TokenConfig) -> None:
    with pytest.raises(ConfigError) as exc:
        TokenSigner(token, "no-such-key")
    assert_names(exc, MODULE, TOKEN, "key 'no-such-key'", "no such key in the token")


def test_a_missing_module(softhsm: SoftHsm, pin_file: Path) -> None:
    nowhere = TokenConfig(module="/nonexistent/libpkcs11.so", token=TOKEN, pin_file=pin_file)
    with pytest.raises(ConfigError) as exc:
        TokenSigner(nowhere, "any-key")
    assert_names(
        exc, "PKCS#11 module /nonexistent/libpkcs11.so", "cannot load the module", "No such file"
    )


def test_a_group_readable_pin_file(token: TokenConfig, pin_file: Path) -> None:
    pin_file.chmod(0o640)
    with pytest.raises(ConfigError) as exc:
        TokenSigner(token, "any-key")
    assert_names(exc, str(pin_file), "accessible by group/other (mode 0640)", "chmod 600")


def test_a_group_readable_pin_file_is_named_with_the_reference(
    trust_dir: Path, token: TokenConfig, pin_file: Path
) -> None:
    kid = rotate_key_into_token(trust_dir, SCHOOL, token)
    pin_file.chmod(0o644)
    reference = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(kid)}{SIGNING_REFERENCE_SUFFIX}"
    with pytest.raises(ConfigError) as exc:
        Identity.load(trust_dir, SCHOOL)
    message = assert_names(exc, str(reference), str(pin_file), "mode 0644")
    assert message.startswith(f"{reference}: ")


def test_an_empty_pin_file(token: TokenConfig, pin_file: Path) -> None:
    pin_file.write_text("\n")
    with pytest.raises(ConfigError) as exc:
        TokenSigner(token, "any-key")
    assert_names(exc, TOKEN, f"PIN file {pin_file} is empty")


def test_a_pin_from_the_environment_is_read_when_the_key_loads(
    trust_dir: Path, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PIN_ENV, PIN)
    config = TokenConfig(module=MODULE, token=TOKEN, pin_env=PIN_ENV)
    kid = rotate_key_into_token(trust_dir, SCHOOL, config)
    reference = trust_dir / PRIVATE_DIR / SCHOOL / f"{key_file_stem(kid)}{SIGNING_REFERENCE_SUFFIX}"
    assert json.loads(reference.read_text())["pin_env"] == PIN_ENV
    assert Identity.load(trust_dir, SCHOOL).signing_kid == kid
    monkeypatch.delenv(PIN_ENV)
    with pytest.raises(ConfigError) as exc:
        Identity.load(trust_dir, SCHOOL)
    assert_names(exc, str(reference), f"environment variable {PIN_ENV} is not set")


def test_an_unset_pin_variable(softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    config = TokenConfig(module=MODULE, token=TOKEN, pin_env=PIN_ENV)
    with pytest.raises(ConfigError) as exc:
        TokenSigner(config, "any-key")
    assert_names(exc, PIN_ENV, "is not set", TOKEN)


def test_a_token_config_has_exactly_one_pin_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'pin_file' and 'pin_env'"):
        TokenConfig(module=MODULE, token=TOKEN)
    with pytest.raises(ValidationError, match="exactly one of 'pin_file' and 'pin_env'"):
        TokenConfig(module=MODULE, token=TOKEN, pin_file=tmp_path / "pin", pin_env=PIN_ENV)


def test_a_broken_reference_file_names_its_field(tmp_path: Path) -> None:
    path = tmp_path / f"x{SIGNING_REFERENCE_SUFFIX}"
    path.write_text(json.dumps({"version": 1, "module": MODULE, "token": TOKEN, "pin_env": "P"}))
    with pytest.raises(ConfigError, match=r"x\.signing\.pkcs11: field 'key': Field required"):
        TokenKeyReference.load(path)
    path.write_text(json.dumps({"module": MODULE, "token": TOKEN, "key": "k", "pin_file": "p"}))
    assert TokenKeyReference.load(path).pin_file == tmp_path / "p"
