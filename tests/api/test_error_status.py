"""The HTTP status of each access-control and end-of-life error."""

from __future__ import annotations

import pytest

from api.errors import status_for
from lucid import errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.Unauthorized("expired"), 401),
        (errors.Forbidden("lacks scope"), 403),
        (errors.NotFound("another tenant's session"), 404),
        (errors.Gone("shredded"), 410),
        (errors.Conflict("legal hold"), 409),
        (errors.TooManySessions("full", retry_after=30), 429),
    ],
)
def test_access_and_end_of_life_errors_map_to_their_status(
    error: errors.LucidError, status: int
) -> None:
    assert status_for(error) == status
