"""Where bytes and records live: the blob store (claim check), the metadata store, key layout,
the data directory.
"""
