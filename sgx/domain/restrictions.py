"""What each restriction on onward use means: its words and the recipients it forbids.

Restriction codes are part of the contract (``RestrictionCode`` in the schemas); the
gateway attaches and enforces them, and the producer-side rules refuse an author who
both forbids a category and consents to it.
"""

from __future__ import annotations

TEXT = {
    "NO_ONWARD_SHARING": "The author does not allow this to be shared any further.",
    "NOT_TO_PARENTS": "The author does not allow this to be shared with parents or carers.",
    "NOT_TO_OTHER_AGENCIES": "The author does not allow this to be shared with other agencies.",
    "THIRD_PARTY_AUTHOR_CONSENT": (
        "Third-party information: it may be shared with parents, other professionals or used "
        "in care proceedings only with the author's written consent."
    ),
    "POLICE_CONFIDENTIAL_TO_PROCEEDINGS": (
        "Police material disclosed under the 2013 / 2024 Protocol: confidential to the "
        "proceedings; not to be shared with parents, carers or other agencies."
    ),
}

# Which recipient categories each restriction forbids (unless the author consented).
FORBIDS: dict[str, frozenset[str]] = {
    "NO_ONWARD_SHARING": frozenset(
        {"LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"}
    ),
    "NOT_TO_PARENTS": frozenset({"PARENT_OR_CARER"}),
    "NOT_TO_OTHER_AGENCIES": frozenset({"OTHER_PROFESSIONAL"}),
    "THIRD_PARTY_AUTHOR_CONSENT": frozenset(
        {"PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"}
    ),
    "POLICE_CONFIDENTIAL_TO_PROCEEDINGS": frozenset({"PARENT_OR_CARER", "OTHER_PROFESSIONAL"}),
}
