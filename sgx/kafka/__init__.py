"""Kafka: topic and group naming, client wiring, the embedded broker, reading records as
envelopes and keeping what cannot be read.
"""
