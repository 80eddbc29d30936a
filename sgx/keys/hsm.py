"""Ed25519 signing keys held in a PKCS#11 token (an HSM; SoftHSM2 in the tests).

A party whose security team wants its signing key in an HSM keeps, in place of
``<kid>.signing.pem``, a small reference file ``<kid>.signing.pkcs11`` (JSON) that says
which token holds the key and how to log in to it::

    {
      "version": 1,
      "module": "/usr/lib/softhsm/libsofthsm2.so",
      "token": "sgx-school-hillside",
      "key": "school-hillside/2026-11-21T0602-ab12",
      "pin_file": "/etc/sgx/token.pin"
    }

``module`` is the vendor's PKCS#11 library, ``token`` the token's label, ``key`` the
label (CKA_LABEL) of the Ed25519 key pair in it (the key id, as
:func:`sgx.keys.key_admin.rotate_key_into_token` names it), and exactly one of ``pin_file`` (a file
holding the user PIN, mode 0600, refused like any private file when group or other may
read it; a relative path is relative to the reference file) or ``pin_env`` (the name of an
environment variable holding the PIN). The file holds no secret.

:class:`TokenSigner` logs in once and keeps its session open; the exchange only ever asks
the token to sign (CKM_EDDSA), and the private key is generated in the token, sensitive and
non-extractable (:func:`generate_signing_key`): it never exists outside it. A signer refuses
a key that the token would let out (CKA_EXTRACTABLE, or not CKA_SENSITIVE).

Login state in PKCS#11 belongs to the application, not to a session: a second C_Login to a
token this process is logged in to fails, and C_Logout on one session logs out all of
them. So signers of one token (a party's old and new key, or two parties in one process)
share one logged-in session, counted, and the last one to close logs out. All calls into a
PKCS#11 library go through one process-wide lock: python-pkcs11 initialises the library
without locking callbacks, which promises the library one thread at a time. A signature
takes a fraction of a millisecond in SoftHSM2 (and a few milliseconds in network HSMs), so
asyncio code calls :meth:`TokenSigner.sign` directly, as it does a file key's ``sign``.

Every python-pkcs11 error becomes a :class:`~sgx.errors.ConfigError` naming the module,
the token and the key (never the PIN).

The X25519 box key stays a PEM file. It could move too: SoftHSM2 2.6.1 generates an X25519
key with CKM_EC_EDWARDS_KEY_PAIR_GEN on curve 1.3.101.110 (typed CKK_EC_EDWARDS, not
CKK_EC_MONTGOMERY, which python-pkcs11 0.10 does not name) and CKM_ECDH1_DERIVE on it gives
the same shared secret as ``cryptography``'s ``X25519PrivateKey.exchange`` (measured by
hand, with CKA_DERIVE set at generation). It is not done here: :mod:`sgx.keys.data_keys` runs HKDF
over the shared secret in Python, so the derived secret would have to leave the token (or
the KDF move into it), and :meth:`sgx.keys.trust.Identity.box_private` hands out an
``X25519PrivateKey`` to the envelope code, which would need a box Protocol of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import Object, Session, SignMixin
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sgx.errors import ConfigError
from sgx.keys.files import read_private_file, validation_error

# CKA_EC_PARAMS of an Ed25519 key: the DER OID 1.3.101.112 (RFC 8410), or the PKCS#11 3.0
# alternative, the DER PrintableString "edwards25519".
ED25519_OID = bytes.fromhex("06032b6570")
_ED25519_PARAMS = {ED25519_OID, b"\x13\x0c" + b"edwards25519"}
_RAW_PUBLIC_LEN = 32
_SELF_TEST = b"sgx: does this private key belong to this public key?"
_PIN_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MODEL = ConfigDict(extra="forbid", frozen=True)


class TokenConfig(BaseModel):
    """Where a token is and how to log in to it (the PIN itself is never stored here)."""

    model_config = _MODEL

    module: Annotated[str, Field(min_length=1)]
    token: Annotated[str, Field(min_length=1, max_length=32)]  # CKA_LABEL of a token: 32 bytes
    pin_file: Path | None = None
    pin_env: Annotated[str, Field(pattern=_PIN_ENV)] | None = None

    @model_validator(mode="after")
    def _one_pin_source(self) -> TokenConfig:
        if (self.pin_file is None) == (self.pin_env is None):
            raise ValueError("give exactly one of 'pin_file' and 'pin_env'")
        return self

    def where(self, key: str | None = None) -> str:
        """The token (and key) for an error message: module, token label, key label."""
        out = f"PKCS#11 module {self.module}, token {self.token!r}"
        return out + (f", key {key!r}" if key is not None else "")

    def read_pin(self) -> str:
        """The user PIN from ``pin_file`` (0600, one line) or the variable ``pin_env``."""
        where = self.where()
        if self.pin_file is not None:
            try:
                data = read_private_file(self.pin_file)
            except ConfigError as exc:
                raise ConfigError(f"{where}: cannot read the PIN: {exc}") from exc
            try:
                pin = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: PIN file {self.pin_file} is not UTF-8 text") from exc
            if not pin:
                raise ConfigError(f"{where}: PIN file {self.pin_file} is empty")
            return pin
        assert self.pin_env is not None  # the validator saw to it
        pin = os.environ.get(self.pin_env, "")
        if not pin:
            raise ConfigError(f"{where}: environment variable {self.pin_env} is not set or empty")
        return pin


class TokenKeyReference(TokenConfig):
    """The contents of a ``<kid>.signing.pkcs11`` file: a token and a key label in it."""

    version: Literal[1] = 1
    key: Annotated[str, Field(min_length=1)]

    @property
    def config(self) -> TokenConfig:
        """The token half of the reference, without the key."""
        return TokenConfig(
            module=self.module, token=self.token, pin_file=self.pin_file, pin_env=self.pin_env
        )

    @classmethod
    def load(cls, path: Path) -> TokenKeyReference:
        """Read a reference file; ConfigError naming the file and field if it is wrong.

        A relative ``pin_file`` is taken relative to the file's folder."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read token key reference {path}: {exc}") from exc
        try:
            reference = cls.model_validate_json(text)
        except ValidationError as exc:
            raise validation_error(path, exc) from exc
        if reference.pin_file is not None and not reference.pin_file.is_absolute():
            pin_file = path.parent / reference.pin_file
            reference = reference.model_copy(update={"pin_file": pin_file})
        return reference

    def dumps(self) -> str:
        """The file's JSON text (version first, the unused PIN source left out)."""
        data: dict[str, Any] = {
            "version": self.version,
            "module": self.module,
            "token": self.token,
            "key": self.key,
        }
        if self.pin_file is not None:
            data["pin_file"] = str(self.pin_file)
        else:
            data["pin_env"] = self.pin_env
        return json.dumps(data, indent=2) + "\n"


# --------------------------------------------------------------------------- sessions

_LOCK = threading.RLock()
"""Held around every call into a PKCS#11 library (see the module docstring)."""

_PIN_MAC_KEY = secrets.token_bytes(32)


@dataclass(slots=True)
class _Login:
    """One logged-in session of one token, shared by that token's signers."""

    session: Session
    pin_mac: bytes  # HMAC of the PIN under a per-process key: tells a different PIN apart
    users: int = 0


_LOGINS: dict[tuple[str, str], _Login] = {}


def _pin_mac(pin: str) -> bytes:
    return hmac.new(_PIN_MAC_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


_PROBLEMS: dict[type[p11.PKCS11Error], str] = {
    p11.PinIncorrect: "the token rejected the PIN (CKR_PIN_INCORRECT)",
    p11.PinLocked: "the user PIN is locked (too many wrong PINs); the token's officer must"
    " reset it",
    p11.PinExpired: "the user PIN has expired; set a new one",
    p11.PinInvalid: "the PIN has characters the token does not accept",
    p11.PinLenRange: "the PIN is too short or too long for this token",
    p11.UserPinNotInitialized: "the token has no user PIN yet (initialise it first)",
    p11.NoSuchToken: "no token with this label (is it initialised, and is this the module?)",
    p11.MultipleTokensReturned: "more than one token has this label",
    p11.NoSuchKey: "no such key in the token",
    p11.MultipleObjectsReturned: "more than one key in the token has this label",
    p11.MechanismInvalid: "the token does not offer Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN,"
    " CKM_EDDSA)",
    p11.TokenNotPresent: "the token is not present",
    p11.DeviceRemoved: "the token was removed",
    p11.TokenNotRecognised: "the token is not recognised",
    p11.SessionClosed: "the token session was closed",
    p11.UserNotLoggedIn: "the token session is no longer logged in",
    p11.UserAlreadyLoggedIn: "this process is logged in to the token already, under another"
    " module path",
}


def _problem(exc: p11.PKCS11Error) -> str:
    for kind in type(exc).__mro__:
        text = _PROBLEMS.get(kind)
        if text is not None:
            return text
    detail = str(exc).strip()
    if type(exc) is p11.PKCS11Error and detail:  # e.g. the module cannot be loaded
        return detail
    return type(exc).__name__ + (f": {detail}" if detail else "")


@contextlib.contextmanager
def _translated(where: str, doing: str) -> Iterator[None]:
    """Turn a python-pkcs11 error into a ConfigError: ``where: doing: what went wrong``."""
    try:
        yield
    except p11.PKCS11Error as exc:
        raise ConfigError(f"{where}: {doing}: {_problem(exc)}") from exc


def _acquire(config: TokenConfig) -> _Login:
    """The process's logged-in session of ``config``'s token (logging in if need be)."""
    pin = config.read_pin()
    where = config.where()
    module = _module(config)
    with _LOCK:
        login = _LOGINS.get((module, config.token))
        if login is None:
            with _translated(where, "cannot load the module"):
                library = pkcs11.lib(module)
            with _translated(where, "cannot find the token"):
                token = library.get_token(token_label=config.token)
            with _translated(where, "cannot log in"):
                session = token.open(user_pin=pin)
            login = _LOGINS[(module, config.token)] = _Login(session, _pin_mac(pin))
        elif not hmac.compare_digest(login.pin_mac, _pin_mac(pin)):
            raise ConfigError(
                f"{where}: cannot log in: this process is logged in to the token with a"
                " different PIN (PKCS#11 keeps one login per token and application)"
            )
        login.users += 1
        return login


def _module(config: TokenConfig) -> str:
    """The module path as the library cache and the logins know it: one spelling per file
    (loading one library twice under two names would initialise it twice)."""
    return os.path.realpath(config.module) if os.sep in config.module else config.module


def _release(config: TokenConfig, login: _Login) -> None:
    key = (_module(config), config.token)
    with _LOCK:
        login.users -= 1
        if login.users > 0 or _LOGINS.get(key) is not login:
            return
        del _LOGINS[key]
        with _translated(config.where(), "cannot log out"):
            login.session.close()


# --------------------------------------------------------------------------- keys


def _raw_public(key: Object, where: str) -> bytes:
    """The raw 32-byte Ed25519 public key of a token's public key object.

    CKA_EC_POINT is a DER OCTET STRING (04 20 ‖ 32 bytes); tokens written to PKCS#11 before
    3.0 sometimes give the 32 bytes bare, which no OCTET STRING of them can be mistaken for.
    """
    with _translated(where, "cannot read the public key"):
        params = bytes(key[Attribute.EC_PARAMS])
        point = bytes(key[Attribute.EC_POINT])
    if params not in _ED25519_PARAMS:
        raise ConfigError(f"{where}: not an Ed25519 key (CKA_EC_PARAMS {params.hex()})")
    if len(point) == 2 + _RAW_PUBLIC_LEN and point[:2] == bytes((0x04, _RAW_PUBLIC_LEN)):
        return point[2:]
    if len(point) == _RAW_PUBLIC_LEN:
        return point
    raise ConfigError(f"{where}: CKA_EC_POINT is not a 32-byte Ed25519 point ({point.hex()})")


def generate_signing_key(config: TokenConfig, key_label: str) -> bytes:
    """Generate an Ed25519 key pair in the token labelled ``key_label``; its raw public key.

    The private key is a token object, private, sensitive and non-extractable, for signing
    only; the public key is stored beside it with the same label and id (CKA_ID = the
    label's UTF-8 bytes). Refuses a label already in use, so a key is never shadowed.
    """
    where = config.where(key_label)
    login = _acquire(config)
    try:
        with _LOCK:
            # Login is per application: a new read/write session is logged in already.
            with _translated(where, "cannot open a read/write session"):
                session = login.session.token.open(rw=True)
            try:
                return _generate(session, key_label, where)
            finally:
                with _translated(where, "cannot close the session"):
                    session.close()
    finally:
        _release(config, login)


def _generate(session: Session, key_label: str, where: str) -> bytes:
    with _translated(where, "cannot search the token"):
        taken = next(session.get_objects({Attribute.LABEL: key_label}), None)
    if taken is not None:
        raise ConfigError(f"{where}: the token already has an object with this label")
    with _translated(where, "cannot generate the key pair"):
        public, _ = session.generate_keypair(
            KeyType.EC_EDWARDS,
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            store=True,
            label=key_label,
            id=key_label.encode("utf-8"),
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.EC_PARAMS: ED25519_OID},
            private_template={
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            },
        )
    return _raw_public(public, where)


class TokenSigner:
    """An Ed25519 private key in a PKCS#11 token, asked to sign; its bytes never leave it.

    Fits :class:`sgx.keys.trust.Signer` as ``Ed25519PrivateKey`` does: ``sign(data)`` returns
    the standard 64-byte signature. Thread-safe; close it (or use ``with``) to give back
    its share of the token's login.
    """

    __slots__ = ("_config", "_key_label", "_login", "_private", "_public")

    def __init__(self, config: TokenConfig, key_label: str) -> None:
        """Log in (or join this process's login), find the key pair and check it."""
        self._config = config
        self._key_label = key_label
        where = config.where(key_label)
        self._login: _Login | None = _acquire(config)
        try:
            with _LOCK:
                session = self._login.session
                with _translated(where, "cannot find the private key"):
                    private = session.get_key(
                        ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, label=key_label
                    )
                with _translated(where, "cannot find the public key"):
                    public = session.get_key(
                        ObjectClass.PUBLIC_KEY, KeyType.EC_EDWARDS, label=key_label
                    )
                self._public = _raw_public(public, where)
                with _translated(where, "cannot read the private key's attributes"):
                    sensitive = bool(private[Attribute.SENSITIVE])
                    extractable = bool(private[Attribute.EXTRACTABLE])
                if not isinstance(private, SignMixin):
                    raise ConfigError(f"{where}: the private key may not sign (CKA_SIGN)")
                if extractable or not sensitive:
                    raise ConfigError(
                        f"{where}: the private key can leave the token (CKA_SENSITIVE"
                        f" {sensitive}, CKA_EXTRACTABLE {extractable}); the exchange signs"
                        " only with sensitive, non-extractable keys"
                    )
                self._private = private
            self._check_pair(where)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_reference(cls, path: Path) -> TokenSigner:
        """The signer a ``<kid>.signing.pkcs11`` file names."""
        reference = TokenKeyReference.load(path)
        return cls(reference.config, reference.key)

    def _check_pair(self, where: str) -> None:
        """A private and a public key that share a label but are no pair would sign what
        the directory's key cannot verify: find out now, not in a recipient's quarantine."""
        try:
            Ed25519PublicKey.from_public_bytes(self._public).verify(
                self.sign(_SELF_TEST), _SELF_TEST
            )
        except InvalidSignature as exc:
            raise ConfigError(f"{where}: the private and public key are not a pair") from exc

    def __enter__(self) -> TokenSigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenSigner({self._config.where(self._key_label)})"

    @property
    def key_label(self) -> str:
        return self._key_label

    def public_bytes_raw(self) -> bytes:
        """The raw 32-byte Ed25519 public key, as read from the token's public key object."""
        return self._public

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature (CKM_EDDSA, pure Ed25519) of ``data``."""
        where = self._config.where(self._key_label)
        if self._login is None:
            raise ConfigError(f"{where}: the signer is closed")
        with _LOCK, _translated(where, "cannot sign"):
            signature = self._private.sign(data, mechanism=Mechanism.EDDSA)
        if len(signature) != 64:
            raise ConfigError(f"{where}: the token gave a {len(signature)}-byte signature")
        return signature

    def close(self) -> None:
        """Give back this signer's share of the login (the last one logs out). Idempotent."""
        login, self._login = self._login, None
        if login is not None:
            _release(self._config, login)
