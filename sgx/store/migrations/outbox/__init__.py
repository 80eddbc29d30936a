"""Migrations of an agency's outbox."""
