"""Child pseudonyms: the Kafka record key and the child reference in audit records.

A pseudonym is the first 16 bytes of HMAC-SHA256, under the exchange's secret pseudonym
key, of a domain-separated identifier::

    "SGX-PSEUDONYM1\\0nhs\\0" ‖ NHS number (digits only, spaces removed)
    "SGX-PSEUDONYM1\\0upn\\0" ‖ UPN (trimmed, upper case)

The NHS number is preferred (it is the consistent child identifier); the UPN is used
only when there is no NHS number. The key never leaves the :class:`Pseudonymiser`.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from sgx.errors import ConfigError
from sgx.keys.files import read_private_file
from sgx.keys.trust import PRIVATE_DIR, PSEUDONYM_KEY_FILE

PSEUDONYM_LEN = 16
_DOMAIN = b"SGX-PSEUDONYM1\0"
_NHS = _DOMAIN + b"nhs\0"
_UPN = _DOMAIN + b"upn\0"


class Pseudonymiser:
    """Keyed pseudonyms of child identifiers (HMAC-SHA256, truncated to 16 bytes)."""

    __slots__ = ("_mac",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError(f"the pseudonym key must be 32 bytes, got {len(key)}")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    @classmethod
    def load(cls, trust_dir: Path) -> Pseudonymiser:
        """Read ``trust_dir/private/pseudonym.key`` (refused if group/other may read it)."""
        path = trust_dir / PRIVATE_DIR / PSEUDONYM_KEY_FILE
        key = read_private_file(path)
        if len(key) != 32:
            raise ConfigError(f"{path}: must hold exactly 32 bytes, found {len(key)}")
        return cls(key)

    def __repr__(self) -> str:
        return "Pseudonymiser(<key hidden>)"

    def child_key(self, nhs_number: str | None, upn: str | None) -> bytes | None:
        """The child's pseudonym from the NHS number, else the UPN; None if neither."""
        nhs = "".join(nhs_number.split()) if nhs_number else ""
        if nhs:
            return self._digest(_NHS + nhs.encode())
        code = upn.strip().upper() if upn else ""
        if code:
            return self._digest(_UPN + code.encode())
        return None

    def identifier_keys(
        self, nhs_number: str | None, upn: str | None
    ) -> tuple[bytes | None, bytes | None]:
        """The pseudonyms of the NHS number and of the UPN, each on its own (None if absent).

        The allocation directory and the open-case lists key a child by both, so a school
        that knows a pupil by either identifier finds the child.
        """
        return self.child_key(nhs_number, None), self.child_key(None, upn)

    def _digest(self, message: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(message)
        return mac.digest()[:PSEUDONYM_LEN]
