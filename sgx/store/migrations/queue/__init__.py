"""Migrations of a receiving party's queue (and, since 0002, its inbox and learned schemas)."""
