"""What crosses the wire: the Avro contract, envelopes and their framing, validation,
schema history and the registry's entries.
"""
