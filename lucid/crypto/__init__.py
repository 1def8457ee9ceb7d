"""Encryption and keys: AEAD per chunk, session key envelopes, role key files, access tokens."""
