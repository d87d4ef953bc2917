"""The local gateway builds API Gateway HTTP API payload v2.0 events as AWS does."""

from __future__ import annotations

import base64

from local.gateway import http_api_event


def test_query_and_headers():
    event = http_api_event("GET", "/api/v1/jobs?status=pending&limit=2&tag=a&tag=b", {"X-Trace": "1"}, b"", "10.0.0.1")
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/api/v1/jobs"
    assert event["rawQueryString"] == "status=pending&limit=2&tag=a&tag=b"
    assert event["queryStringParameters"] == {"status": "pending", "limit": "2", "tag": "a,b"}
    assert event["headers"] == {"x-trace": "1"}
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["http"]["sourceIp"] == "10.0.0.1"
    assert event["body"] is None and event["isBase64Encoded"] is False


def test_json_body_is_text_and_binary_body_is_base64():
    text = http_api_event("POST", "/x", {"Content-Type": "application/json"}, b'{"a":1}', "127.0.0.1")
    assert text["body"] == '{"a":1}' and not text["isBase64Encoded"]
    binary = http_api_event("POST", "/x", {"Content-Type": "image/png"}, b"\x89PNG", "127.0.0.1")
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\x89PNG"
