"""What the HTTP API accepts as a body, before a route's own validation: JSON only, parsed strictly.

Everything here raises a ServiceError (415, 413, or 422 naming the field): the API maps each to
its answer in one place (shared/http_api.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from shared.errors import InvalidParameter, PayloadTooLarge, UnsupportedMediaType

# Our bodies are a prompt and a few numbers (at most ~5 KB, two levels deep): anything far past
# that is refused before it is parsed or reaches pydantic, DynamoDB or the logs.
MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_NUMBER_DIGITS = 32
JSON_MEDIA_TYPE = "application/json"


def json_body(headers: Mapping[str, str], body: str | None, base64_encoded: bool) -> Any:
    """The body of an API Gateway (payload 2.0) request as plain JSON values. Its media type must
    be JSON (any other is a 415, never parsed as a form); no content type at all is taken as JSON,
    as the old service (FastAPI) did. `headers` have lower-case names, as API Gateway sends them."""
    media_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type and media_type != JSON_MEDIA_TYPE and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {media_type!r} is not supported: send {JSON_MEDIA_TYPE}")
    raw = body or ""
    return parse_json(base64.b64decode(raw) if base64_encoded else raw.encode("utf-8", "surrogatepass"))


class _TooLong:
    """Stands in for a number literal with too many digits (Python refuses integers past 4,300)."""


class _Object(dict):
    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def _integer(literal: str) -> int | _TooLong:
    return _TooLong() if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS else int(literal)


def _decimal(literal: str) -> float | _TooLong:
    """A number with a fraction or exponent: its digits counted as an integer's (7.000...01 would
    otherwise be rounded to 7.0 and accepted)."""
    mantissa = literal.lower().split("e", 1)[0]
    return _TooLong() if sum(c.isdigit() for c in mantissa) > MAX_NUMBER_DIGITS else float(literal)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """The request body as plain JSON values; InvalidParameter (422) naming the field for anything
    that is not strict JSON: duplicate keys, NaN/Infinity, over-long numbers, deep nesting, invalid
    UTF-8 or lone surrogates. PayloadTooLarge (413) past MAX_BODY_BYTES."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_object, parse_int=_integer, parse_float=_decimal, parse_constant=_no_constant
        )
    except RecursionError:
        raise InvalidParameter("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidParameter("body", f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    except UnicodeDecodeError:
        raise InvalidParameter("body", "not valid UTF-8") from None
    except ValueError as exc:
        raise InvalidParameter("body", f"not valid JSON ({exc})") from None
    _check(value)
    return value


def _check(root: Any) -> None:
    """Walk the parsed body (without recursion) and refuse what json.loads lets through."""
    pending: list[tuple[Any, str, int]] = [(root, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        field = path or "body"
        if depth > MAX_DEPTH:
            raise InvalidParameter(field, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _TooLong):
            raise InvalidParameter(field, f"a number with more than {MAX_NUMBER_DIGITS} digits")
        if isinstance(value, str):
            _require_unicode(value, field, "a string")
        elif isinstance(value, dict):
            for key in value:
                _require_unicode(key, field, "a key")
            if getattr(value, "duplicates", ()):
                key = value.duplicates[0]
                raise InvalidParameter(f"{path}.{key}" if path else key, "duplicate key in the JSON object")
            pending += [(item, f"{path}.{key}" if path else key, depth + 1) for key, item in value.items()]
        elif isinstance(value, list):
            pending += [
                (item, f"{path}.{index}" if path else str(index), depth + 1) for index, item in enumerate(value)
            ]


def _require_unicode(text: str, field: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter(field, f"{what} with a lone surrogate (\\ud800-\\udfff) is not valid Unicode") from None
