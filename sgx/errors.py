"""The one exception tree of Safeguarding Exchange.

Every error the exchange raises on purpose derives from :class:`ExchangeError`.
Library errors (fastavro, cryptography, aiokafka, SQLAlchemy) are translated at
the boundary where they occur and chained with ``raise ... from exc``::

    ExchangeError
    ├── ConfigError                 settings, trust directory, agreement files
    ├── ContractError               a record does not satisfy its Avro schema or a contract rule
    │   └── UnknownSchema           written with a schema this reader has not seen (yet)
    ├── EnvelopeError               a sealed envelope cannot be trusted (has a quarantine reason)
    │   ├── MalformedEnvelope       not our wire format, or an unsupported version
    │   ├── UnknownSender           the sender is not in the trust directory
    │   ├── UnknownKey              a key id is missing, unknown, revoked or out of its validity
    │   ├── BadSignature            the data-key signature does not verify
    │   ├── WrongRecipient          the envelope was sealed for somebody else
    │   └── TamperedEnvelope        authenticated decryption failed (header or ciphertext changed)
    ├── TransportError              the broker is unreachable or refused a request (retriable)
    ├── StoreError                  a queue, audit or outbox database failed (retriable)
    ├── NotFound                    a stored item (e.g. a queue item) does not exist
    ├── NotAuthenticated            a request has no valid session, token or credentials
    ├── Forbidden                   the caller may not do this or see this item
    ├── AlreadyAnswered             a consent request was answered before (the first answer stands)
    ├── AlreadyAsked                the author's consent to this share was asked already
    ├── Fenced                      a gateway instance no longer owns an audit chain it wrote
    └── AuditChainBroken            an audit hash chain does not verify

Retry decisions ask the error (``retriable``) rather than keeping lists of types.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Root of every error the exchange raises on purpose."""

    retriable: bool = False


class ConfigError(ExchangeError):
    """A settings value, trust directory or agreement file is missing or wrong."""


class ContractError(ExchangeError):
    """A record breaks its schema or a contract rule.

    ``path`` names the field (dotted, with ``[i]`` for array items) and ``problem``
    says what is wrong with it, so the sender can fix the record.
    """

    def __init__(self, path: str, problem: str, *, schema: str = "") -> None:
        self.path = path
        self.problem = problem
        self.schema = schema
        where = f"{schema}: " if schema else ""
        super().__init__(f"{where}field '{path}': {problem}")


class UnknownSchema(ContractError):
    """A single-object message written with a schema this reader has never seen (a newer
    release's): quarantined as ``unknown_schema`` until the schema is known."""

    reason = "unknown_schema"

    def __init__(self, digest: bytes, *, schema: str = "", problem: str = "") -> None:
        self.digest = digest
        problem = problem or f"unknown writer schema fingerprint {digest.hex()}"
        super().__init__("$", problem, schema=schema)


class EnvelopeError(ExchangeError):
    """A sealed envelope cannot be opened or trusted; it goes to quarantine.

    ``reason`` is the stable, machine-readable quarantine reason.
    """

    reason: str = "envelope_error"


class MalformedEnvelope(EnvelopeError):
    reason = "malformed_envelope"


class UnknownSender(EnvelopeError):
    reason = "unknown_sender"


class UnknownKey(EnvelopeError):
    reason = "unknown_key_id"


class BadSignature(EnvelopeError):
    reason = "bad_signature"


class WrongRecipient(EnvelopeError):
    reason = "wrong_recipient"


class TamperedEnvelope(EnvelopeError):
    reason = "tampered_ciphertext"


class TransportError(ExchangeError):
    """The broker is unreachable or refused a request."""

    retriable = True


class BrokerRefused(ConfigError):
    """The broker refused this party: its credentials, or a topic or group the cluster's
    ACLs do not grant its principal. Not retriable: asking again is refused again."""


class StoreError(ExchangeError):
    """A database used for a queue, audit trail or outbox failed."""

    retriable = True


class NotFound(ExchangeError):
    """A stored item that was asked for by id (a queue item, say) does not exist."""


class NotAuthenticated(ExchangeError):
    """A request carries no valid session, token or credentials (HTTP 401)."""


class Forbidden(ExchangeError):
    """The caller is known but may not do this, or see this item (HTTP 403)."""


class AlreadyAnswered(ExchangeError):
    """A consent request already has its answer: the first answer stands (HTTP 409)."""


class AlreadyAsked(ExchangeError):
    """The author's consent to this onward share was asked already and is awaited, or was
    granted in full: a second request would only repeat the first (HTTP 409)."""


class NotAnsweredYet(ExchangeError):
    """The gateway's answer to a request (a share, a consent request) was not kept within
    the wait: the request stands, and its answer is kept when it comes."""


class Fenced(ExchangeError):
    """A writer's claim on an audit chain (its epoch) is older than the chain's: another
    gateway instance took the partition over, so this one must write and publish nothing
    for it (a zombie: paused past its session timeout, then resumed)."""

    def __init__(self, chain: str, held: int, current: int) -> None:
        self.chain = chain
        super().__init__(
            f"audit chain {chain} was taken over (epoch {current}; this instance holds "
            f"{held}): the batch is abandoned, nothing written or published"
        )


class AuditChainBroken(ExchangeError):
    """An audit hash chain does not verify at ``sequence``."""

    def __init__(self, sequence: int, detail: str, chain: str | None = None) -> None:
        self.sequence = sequence
        self.detail = detail
        self.chain = chain
        where = f"audit chain {chain}" if chain else "audit chain"
        super().__init__(f"{where} broken at record {sequence}: {detail}")
