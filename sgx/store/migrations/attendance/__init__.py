"""Migrations of a school feed's record of what it pushed."""
