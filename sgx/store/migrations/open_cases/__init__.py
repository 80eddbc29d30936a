"""Migrations of a school's open-case lists."""
