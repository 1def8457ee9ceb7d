from __future__ import annotations

import pytest

from lucid.redaction import redact_paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[Errno 21] Is a directory: '/srv/lucid-data/blobs/enc/ab/00000003'",
            "[Errno 21] Is a directory: '…/00000003'",
        ),
        (
            "PermissionError: [Errno 13] Permission denied: /home/op/keys/recipient.key",
            "PermissionError: [Errno 13] Permission denied: …/recipient.key",
        ),
        ("/tmp/x and (/var/lib/y)", "…/x and (…/y)"),
        ("copy /a/b to /c/d", "copy …/b to …/d"),
    ],
)
def test_absolute_paths_keep_only_their_last_component(text: str, expected: str) -> None:
    assert redact_paths(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "anchor service at http://anchor.example/api/v1 answered 503",
        "redis://127.0.0.1:6379/0 refused",
        "chunk 1/2 of raw/0123abcd/00000001 is missing",
        "expected 32 lowercase hex characters, got 'a / b'",
        "",
    ],
)
def test_urls_fractions_and_relative_keys_are_left_alone(text: str) -> None:
    assert redact_paths(text) == text
