"""Checks on what clients send: JSON bodies, session metadata, paging numbers, indexes.

Everything a request carries is checked here before it reaches the core or MongoDB, so bad
input is a 400 naming the problem, never a 500 from a parser or the BSON encoder.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request

from lucid.errors import InvalidInput, TooLarge

__all__ = ["MAX_BODY_BYTES", "chunk_index", "decimal", "json_object", "metadata"]

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 8192
MAX_DEPTH = 32
MAX_INDEX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)
# ASCII digits only: str.isdigit() and int() also take "²" and "٣", "1_0" and " 5".
_DECIMAL = re.compile(r"[0-9]{1,12}")


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"expected finite JSON numbers, got {name}")


def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty); at most MAX_BODY_BYTES, read only
    after the declared length was checked."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise TooLarge(f"expected a body of at most {MAX_BODY_BYTES} bytes, got {declared}")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise TooLarge(f"expected a body of at most {MAX_BODY_BYTES} bytes, got more")
    if not raw.strip():
        return {}
    if not request.is_json:
        raise InvalidInput(f"expected Content-Type application/json, got {request.mimetype!r}")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidInput(f"JSON nested too deep: at most {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(
            f'expected a JSON object, e.g. {{"metadata": {{...}}}}, got {value!r:.80}'
        )
    return value


def metadata(value: Any) -> dict[str, Any]:
    """Session metadata: a JSON object MongoDB can store as given, at most 8 KiB as JSON."""
    if not isinstance(value, dict):
        raise InvalidInput(f"metadata must be a JSON object, got {type(value).__name__}")
    _check(value, "metadata", 0)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes, got {size}")
    return value


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} is nested too deep: expected at most {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key, where)
            _check(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise InvalidInput(f"{where} must be a 64-bit integer, got {value:.3g}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} must be a finite number, got {value}")
    else:  # json.loads makes nothing else; a guard for callers that pass Python values
        raise InvalidInput(f"{where} must be JSON, got {type(value).__name__}")


def _check_key(key: str, where: str) -> None:
    # MongoDB field names: not empty, no NUL, no leading "$" (operators), no "." (paths).
    if not key or "\x00" in key or key.startswith("$") or "." in key:
        raise InvalidInput(
            f"{where} key must be non-empty without NUL, '.' or a leading '$', got {key!r}"
        )
    _check_text(key, f"{where} key")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where} must be valid Unicode text (a lone surrogate?)") from None


def decimal(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """A query parameter that must be a plain decimal integer in low..high."""
    if raw is None:
        return default
    value = int(raw) if _DECIMAL.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in {low}..{high}, got {raw[:40]!r}")
    return value


def chunk_index(raw: str) -> int:
    """A chunk index from a URL: a plain decimal integer in 0..2^31-1."""
    value = int(raw) if _DECIMAL.fullmatch(raw) else None
    if value is None or value > MAX_INDEX:
        raise InvalidInput(f"chunk index must be an integer in 0..{MAX_INDEX}, got {raw[:40]!r}")
    return value
