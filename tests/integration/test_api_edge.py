"""The HTTP edge against what a fuzzer won't try: wrong media types, huge, deep or malformed JSON,
duplicate keys, loose numbers, odd characters, huge ids, unknown query parameters, every method on
every route, trailing slashes. Each gets a clear 4xx in the one error shape, and stores nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import stats_of, unique_prompt
from tests.integration.test_api import UNKNOWN, assert_error

GENERATE = "/api/v1/generate"
JSON = {"content-type": "application/json"}
ROUTES = {
    "/api/v1/generate": {"POST"},
    f"/api/v1/status/{UNKNOWN}": {"GET"},
    f"/api/v1/jobs/{UNKNOWN}": {"GET"},
    "/api/v1/jobs": {"GET"},
    f"/api/v1/jobs/{UNKNOWN}/cancel": {"POST"},
    f"/api/v1/jobs/{UNKNOWN}/retry": {"POST"},
    "/api/v1/stats": {"GET"},
    "/api/v1/models": {"GET"},
    "/api/v1/webhooks/replicate": {"POST"},
    "/health": {"GET"},
    "/docs": {"GET"},
    "/openapi.json": {"GET"},
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture
def stores_nothing(api, emulator):
    """The refused requests of a test leave the job counters as they were."""
    before = stats_of(api, emulator)["total_jobs"]
    yield
    assert stats_of(api, emulator)["total_jobs"] == before, "a refused request stored a job"


def refused(response, status: int, code: str, field: str | None = None, location: str = "body") -> dict:
    body = assert_error(response, status, code)
    if field:
        assert {"field": field, "location": location} in [
            {"field": e["field"], "location": e["location"]} for e in body["errors"]
        ], body
        assert field in body["detail"]
    return body


# ---- media types -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"prompt": "a lighthouse"}'),
        ("text/plain; charset=utf-8", b"a lighthouse"),
        ("application/x-www-form-urlencoded", b"prompt=a+lighthouse"),
        (
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--XyZ--\r\n',
        ),
        ("application/xml", b"<prompt>a lighthouse</prompt>"),
        ("application/octet-stream", b"\x00\x01\x02"),
    ],
)
def test_a_body_that_is_not_json_is_415(api, stores_nothing, content_type, body):
    response = api.post(GENERATE, content=body, headers={"content-type": content_type})
    error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in error["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_json_with_or_without_a_content_type_is_accepted(api, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = api.post(GENERATE, content=json.dumps({"prompt": unique_prompt()}).encode(), headers=headers)
    assert response.status_code == 202, response.text
    api.post(f"/api/v1/jobs/{response.json()['job_id']}/cancel")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"prompt": "x"', b"", b"   ", b'"just a string"', b"[]"],
)
def test_unparseable_or_non_object_json_is_422(api, stores_nothing, body):
    refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR")


def test_a_body_of_almost_10_mb_is_413(api, stores_nothing):
    # Under API Gateway's own limit, so the function refuses it, in our shape.
    body = json.dumps({"prompt": "x" * (9 * 1024 * 1024)}).encode()
    error = assert_error(api.post(GENERATE, content=body, headers=JSON), 413, "PAYLOAD_TOO_LARGE")
    assert "bytes" in error["detail"]


def test_a_body_over_10_mb_is_413_from_the_gateway(api, stores_nothing):
    # API Gateway refuses payloads over 10 MB before any function runs (the local gateway too).
    body = json.dumps({"prompt": "x" * (10 * 1024 * 1024)}).encode()
    assert api.post(GENERATE, content=body, headers=JSON).status_code == 413


# ---- strict JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [20, 1_000, 30_000])
def test_deeply_nested_json_is_422(api, stores_nothing, depth):
    nested = "[" * depth + "]" * depth
    body = f'{{"prompt": "x", "parameters": {{"seed": {nested}}}}}'.encode()
    error = refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR")
    assert "nested deeper" in error["detail"]


@pytest.mark.parametrize("digits", [40, 4_301, 60_000])
def test_a_number_with_thousands_of_digits_is_422_naming_the_field(api, stores_nothing, digits):
    body = f'{{"prompt": "x", "parameters": {{"seed": {"7" * digits}}}}}'.encode()
    refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR", "parameters.seed")


@pytest.mark.parametrize("literal", ["7." + "0" * 4_999 + "1", "0." + "1" * 40, "-" + "3" * 40 + ".5e2"])
def test_a_decimal_with_too_many_digits_is_422_not_rounded(api, stores_nothing, literal):
    body = f'{{"prompt": "x", "parameters": {{"guidance_scale": {literal}}}}}'.encode()
    refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR", "parameters.guidance_scale")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422(api, stores_nothing, literal):
    body = f'{{"prompt": "x", "parameters": {{"guidance_scale": {literal}}}}}'.encode()
    refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize("value", [1e-200, 1e-131, 5e-7, -1e-200])
def test_a_guidance_scale_outside_dynamodbs_range_is_422(api, stores_nothing, value):
    response = api.post(GENERATE, json={"prompt": "x", "parameters": {"guidance_scale": value}})
    refused(response, 422, "VALIDATION_ERROR", "parameters.guidance_scale")


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"width": "512"}, "parameters.width"),
        ({"width": True}, "parameters.width"),
        ({"width": 512.0}, "parameters.width"),
        ({"num_outputs": False}, "parameters.num_outputs"),
        ({"seed": "42"}, "parameters.seed"),
        ({"num_inference_steps": 20.5}, "parameters.num_inference_steps"),
        ({"guidance_scale": "7.5"}, "parameters.guidance_scale"),
        ({"guidance_scale": True}, "parameters.guidance_scale"),
    ],
)
def test_numbers_and_booleans_are_strict(api, stores_nothing, parameters, field):
    refused(api.post(GENERATE, json={"prompt": "x", "parameters": parameters}), 422, "VALIDATION_ERROR", field)


def test_an_integral_guidance_scale_and_zero_are_numbers(api):
    for value in (7, 0):
        response = api.post(GENERATE, json={"prompt": unique_prompt(), "parameters": {"guidance_scale": value}})
        assert response.status_code == 202, response.text
        job = api.get(f"/api/v1/jobs/{response.json()['job_id']}").json()
        assert job["request"]["parameters"]["guidance_scale"] == value
        api.post(f"/api/v1/jobs/{job['job_id']}/cancel")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"prompt": "first", "prompt": "second"}', "prompt"),
        (b'{"prompt": "x", "parameters": {"width": 512, "width": 4096}}', "parameters.width"),
        (b'{"prompt": "x", "parameters": {}, "parameters": {}}', "parameters"),
    ],
)
def test_duplicate_json_keys_are_422_naming_the_key(api, stores_nothing, body, field):
    error = refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR", field)
    assert "duplicate" in error["detail"]


# ---- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a\u0000b"}, "prompt"),
        ({"prompt": "bell \u0007"}, "prompt"),
        ({"prompt": "x", "parameters": {"negative_prompt": "\u0000"}}, "parameters.negative_prompt"),
        ({"prompt": "x", "model": "black-forest-labs/flux-schnell\u0000"}, "model"),
    ],
)
def test_nul_and_control_characters_are_422(api, stores_nothing, body, field):
    refused(api.post(GENERATE, json=body), 422, "VALIDATION_ERROR", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [(b'{"prompt": "\\ud800"}', "prompt"), (b'{"prompt": "x", "\\udfff": 1}', "body")],
)
def test_lone_surrogates_are_422(api, stores_nothing, body, field):
    error = refused(api.post(GENERATE, content=body, headers=JSON), 422, "VALIDATION_ERROR", field)
    assert "Unicode" in error["detail"]


def test_emoji_and_other_scripts_in_a_prompt_are_kept_as_sent(api):
    prompt = f"🦄 une licorne, 一角獸, ユニコーン 🌈 {unique_prompt()}\nsecond line\ttab"
    response = api.post(GENERATE, json={"prompt": prompt})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert api.get(f"/api/v1/jobs/{job_id}").json()["request"]["prompt"] == prompt
    api.post(f"/api/v1/jobs/{job_id}/cancel")


# ---- paths and query strings -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/v1/status/{}"),
        ("GET", "/api/v1/jobs/{}"),
        ("POST", "/api/v1/jobs/{}/cancel"),
        ("POST", "/api/v1/jobs/{}/retry"),
    ],
)
def test_a_10000_character_job_id_is_422_naming_it(api, stores_nothing, method, template):
    response = api.request(method, template.format("j" * 10_000))
    refused(response, 422, "VALIDATION_ERROR", "job_id", location="path")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", GENERATE),
        ("GET", f"/api/v1/status/{UNKNOWN}"),
        ("GET", f"/api/v1/jobs/{UNKNOWN}"),
        ("POST", f"/api/v1/jobs/{UNKNOWN}/cancel"),
        ("POST", f"/api/v1/jobs/{UNKNOWN}/retry"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/models"),
        ("GET", "/health"),
        ("POST", "/api/v1/webhooks/replicate?job_id=j&attempt=1&nonce=n"),
    ],
)
def test_unknown_query_parameters_are_422_on_every_route(api, stores_nothing, method, path):
    separator = "&" if "?" in path else "?"
    response = api.request(method, f"{path}{separator}verbose=1", json={"prompt": "x"} if method == "POST" else None)
    refused(response, 422, "VALIDATION_ERROR", "verbose", location="query")


@pytest.mark.parametrize("query", [{"offset": "20"}, {"page": "2"}, {"page": "2", "per_page": "10"}])
def test_offset_or_page_paging_is_refused_pointing_at_the_cursor(api, query):
    error = refused(api.get("/api/v1/jobs", params=query), 422, "VALIDATION_ERROR", sorted(query)[0], "query")
    assert {e["field"] for e in error["errors"]} == set(query)
    assert "cursor" in error["errors"][0]["message"]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJ4IjogMX0", "%%%", "x" * 2048])
def test_a_bad_cursor_is_422_with_errors_like_every_other(api, cursor):
    refused(api.get("/api/v1/jobs", params={"cursor": cursor}), 422, "VALIDATION_ERROR", "cursor", "query")


# ---- methods and routes ------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_other_method_on_every_route_is_404_in_our_shape(api, stores_nothing, path):
    for method in METHODS:
        if method in ROUTES[path]:
            continue
        body = assert_error(api.request(method, path), 404, "NOT_FOUND")
        assert method in body["detail"]


@pytest.mark.parametrize("path", [*sorted(ROUTES), "/api/v1/jobs/"])
def test_a_trailing_slash_is_404_in_our_shape(api, stores_nothing, path):
    method = next(iter(ROUTES.get(path, {"GET"})))
    assert_error(api.request(method, path.rstrip("/") + "/"), 404, "NOT_FOUND")
