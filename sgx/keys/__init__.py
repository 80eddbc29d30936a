"""Keys: the trust directory, a party's own identity and key files, data keys, key
administration, HSM tokens, pseudonyms.
"""
