"""The `lucid` command line: embedded stack, submit, status, get, verify, keys, bench."""
