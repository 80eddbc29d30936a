"""Safeguarding Exchange shared core: contract, envelope, keys, settings, metrics, Kafka wiring."""
