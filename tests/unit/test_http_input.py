"""The strict JSON parser of the HTTP edge, without the emulation."""

from __future__ import annotations

import pytest

from shared.errors import InvalidParameter, PayloadTooLarge
from shared.http_input import MAX_BODY_BYTES, parse_json


def test_plain_json_is_parsed():
    assert parse_json(b'{"prompt": "x", "parameters": {"width": 512, "guidance_scale": 7.5}}') == {
        "prompt": "x",
        "parameters": {"width": 512, "guidance_scale": 7.5},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"a": {"b": 1, "b": 2}}', "a.b"),
        (b'{"a": [' + b"9" * 4301 + b"]}", "a.0"),
        (b'{"a": NaN}', "body"),
        (b"[" * 5000 + b"]" * 5000, "body"),
        (b'{"a": "\xff"}', "body"),
        (b'{"a": "\\udc00"}', "a"),
    ],
)
def test_what_json_loads_lets_through_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidParameter) as refused:
        parse_json(body)
    assert refused.value.field == field


def test_a_body_past_the_limit_is_refused_before_parsing():
    with pytest.raises(PayloadTooLarge):
        parse_json(b" " * (MAX_BODY_BYTES + 1))
