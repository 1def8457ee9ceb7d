"""A session's life: the state machine, reconciliation, retention, limits and crypto-shredding."""
