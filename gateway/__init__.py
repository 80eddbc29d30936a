"""The gateway role: opens, judges, minimises, routes and re-seals notifications, and keeps
the audit trail, quarantine and share ledger."""
