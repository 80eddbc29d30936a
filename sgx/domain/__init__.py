"""The safeguarding domain's own rules: identifiers, the school calendar, consent,
restrictions on onward use.
"""
