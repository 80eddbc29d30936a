"""Migrations of the gateway's database: audit chains, judged messages, quarantine, share
ledger, allocations, checkpoints."""
