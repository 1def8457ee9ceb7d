"""The OpenAPI document is the contract: schemathesis generates requests for every
operation it describes and sends them to the live stack with an admin token. No answer
may be a 5xx, and every answer (status, content type, headers, body) must be one the
document allows. Bounded: a few examples per operation, no shrinking."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from cli.stack import Stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
]


@pytest.fixture(scope="module")
def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


@pytest.fixture(scope="module")
def api_schema(stack: Stack, auth: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(stack.api_url + "/openapi.json", headers=auth, timeout=30)


# pytest 9 dropped the node attribute schemathesis' pytest plugin renames per operation,
# so the run is driven here: one bounded Hypothesis run per operation and mode.
MAX_EXAMPLES = 12


def _run(operation: Any, mode: GenerationMode, auth: dict[str, str]) -> int:
    """A bounded run on one operation; returns how many cases were sent."""
    sent: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        sent.append(1)
        case.call_and_validate(headers=auth, checks=CHECKS, timeout=60)

    run()
    return len(sent)


def test_every_answer_matches_the_document(api_schema: Any, auth: dict[str, str]) -> None:
    failures: list[str] = []
    cases = operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                cases += _run(operation, mode, auth)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # no input to get wrong (GET /health)
            except Exception as exc:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")
    print(f"schemathesis: {operations} operations, {cases} cases, {len(failures)} failures")
    assert operations >= 15
    assert not failures, "\n\n".join(failures)


def test_document_describes_every_route_with_its_security(stack: Stack) -> None:
    import httpx

    spec = httpx.get(stack.api_url + "/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.1")
    assert httpx.get(stack.api_url + "/docs", timeout=30).status_code == 200
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "security" in operation, f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and method != "head":
                    schema_ref = response["content"]["application/json"]["schema"]
                    assert schema_ref, f"{method.upper()} {path} {status}"
