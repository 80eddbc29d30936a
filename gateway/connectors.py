"""Whether the connector on whose topic an envelope arrived may carry it.

An inbound topic ``sgx.inbound.<owner>`` belongs to a connector (a system publishing for
the agencies the trust directory lists it as carrying) or to an agency that is its own
connector. Every envelope is signed by its agency, and in wire format 2 the signature
covers the connector the agency sealed it for. The gateway accepts an envelope read from
``<owner>``'s topic only if

* it was sealed for ``<owner>`` (else it was copied there from another connector's topic:
  ``connector_mismatch``; or, when it names its own sender, written by an agency to a
  topic not its own: ``sender_topic_mismatch``, as before connectors), and
* ``<owner>`` may carry its signer: the owner is the signer itself, or a connector that
  lists it (else ``not_carried``).

A format 1 envelope names no connector: it is accepted only on its sender's own topic,
as it was before connectors (``sender_topic_mismatch`` elsewhere).
"""

from __future__ import annotations

from gateway.decision import Quarantine
from sgx.kafka.wiring import inbound_agency
from sgx.keys.trust import TrustDirectory
from sgx.wire.envelope import Opened

CONNECTOR_MISMATCH = "connector_mismatch"
NOT_CARRIED = "not_carried"
SENDER_TOPIC_MISMATCH = "sender_topic_mismatch"


def check_connector(trust: TrustDirectory, opened: Opened, topic: str) -> None:
    """Quarantine unless ``opened`` may arrive on the inbound topic ``topic``."""
    owner = inbound_agency(topic)
    sender, sealed_for = opened.sender.id, opened.connector
    if sealed_for is None:  # wire format 1: its sender's own topic only
        if sender != owner:
            raise Quarantine(
                SENDER_TOPIC_MISMATCH,
                f"{sender} wrote to {topic}: an envelope of wire format 1, which names no"
                " connector, is accepted only on its sender's own topic",
            )
        return
    if sealed_for != owner:
        if sealed_for == sender:
            raise Quarantine(SENDER_TOPIC_MISMATCH, f"{sender} wrote to {topic}")
        raise Quarantine(
            CONNECTOR_MISMATCH,
            f"{sender} sealed this envelope for connector {sealed_for}, but it was read from"
            f" {topic}, connector {owner}'s: copied onto another connector's topic",
        )
    if not trust.may_carry(owner, sender):
        raise Quarantine(
            NOT_CARRIED,
            f"connector {owner} may not carry {sender}: the trust directory does not list"
            f" {sender} among the agencies it carries",
        )
