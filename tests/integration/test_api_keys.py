"""API keys on the emulation with API_AUTH=keys: the local gateway runs the deployed authorizer's
code; ownership on every route, quotas hit and released, refused requests store nothing."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, stats_of, unique_prompt, wait_for


@pytest.fixture
def keys(configure, api):
    configure(API_AUTH="keys", MOCK_GENERATION_SECONDS="0.5")
    from shared import auth

    def make(name: str | None = None, **limits) -> tuple[str, dict[str, str]]:
        name = name or unique_prompt("owner").replace(" ", "-")
        new = auth.create_key(name, limits.get("max_active_jobs"), limits.get("max_submits_per_minute"))
        return name, {"Authorization": f"Bearer {new.key}"}

    return make


def table_items(prefix: str) -> list[dict]:
    from shared.aws import client
    from shared.settings import get_settings

    items = client("dynamodb").scan(TableName=get_settings().jobs_table_name)["Items"]  # test-only scan
    return [i for i in items if json.dumps(i).find(prefix) >= 0]


def test_requests_without_a_valid_key_get_401_and_store_nothing(api: httpx.Client, keys) -> None:
    from shared import auth

    name, good = keys()
    prompt = unique_prompt("refused")
    assert api.post("/api/v1/generate", json={"prompt": prompt}).status_code == 401  # gateway: no header
    for header in ("Basic abc", "Bearer nope", "Bearer mg_unknown"):
        response = api.post("/api/v1/generate", json={"prompt": prompt}, headers={"Authorization": header})
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "UNAUTHORIZED"
    assert auth.revoke_keys(name) == 1
    response = api.post("/api/v1/generate", json={"prompt": prompt}, headers=good)
    assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED"
    assert table_items(prompt) == []
    assert api.get("/health").status_code == 200  # public


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/models", None),  # a route that reads nothing of the caller's
        ("POST", "/api/v1/generate", {"prompt": ""}),  # an invalid body: 401, not a 422 naming fields
        ("GET", "/api/v1/jobs?limit=0&page=2", None),  # invalid and unknown query parameters
        ("GET", "/api/v1/stats", None),
        ("GET", "/api/v1/jobs/not-a-job", None),
    ],
)
def test_every_api_route_refuses_a_bad_key_before_reading_the_request(api: httpx.Client, keys, method, path, body):
    _, good = keys()
    for header in ("Basic abc", "Bearer mg_unknown"):
        response = api.request(method, path, json=body, headers={"Authorization": header})
        assert response.status_code == 401, (header, response.text)
        assert response.json()["code"] == "UNAUTHORIZED"
    assert api.request(method, path, json=body, headers=good).status_code != 401


def test_each_owner_sees_only_its_own_jobs(api: httpx.Client, emulator, keys) -> None:
    _, alice = keys()
    _, bob = keys()
    response = api.post("/api/v1/generate", json={"prompt": unique_prompt("alice")}, headers=alice)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/status/{job_id}"):
        assert api.get(path, headers=alice).status_code == 200
        assert api.get(path, headers=bob).status_code == 404
    for action in ("cancel", "retry"):
        assert api.post(f"/api/v1/jobs/{job_id}/{action}", headers=bob).status_code == 404
    assert [j["job_id"] for j in api.get("/api/v1/jobs", headers=alice).json()["jobs"]] == [job_id]
    assert api.get("/api/v1/jobs", headers=bob).json()["jobs"] == []
    assert api.get("/api/v1/jobs?status=pending", headers=bob).json()["jobs"] == []
    assert stats_of(api, emulator, headers=bob)["total_jobs"] == 0
    assert stats_of(api, emulator, headers=alice)["total_jobs"] == 1


def test_active_jobs_quota_is_atomic_and_released_by_cancel_and_failure(api: httpx.Client, keys, emulator, faults):
    from shared.errors import PermanentError

    _, alice = keys(max_active_jobs=10)
    prompt = unique_prompt("quota")
    faults.script(prompt, PermanentError("scripted failure"))
    with emulator.dispatch_paused():
        seq_before = submitted_seq()
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(
                pool.map(
                    lambda n: api.post(
                        "/api/v1/generate", json={"prompt": prompt if n == 0 else f"{prompt} {n}"}, headers=alice
                    ),
                    range(50),
                )
            )
        codes = sorted(a.status_code for a in answers)
        assert codes.count(202) == 10 and codes.count(429) == 40, codes
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["code"] == "ACTIVE_JOBS_LIMIT" and int(refused.headers["retry-after"]) >= 1
        assert len(api.get("/api/v1/jobs?limit=100", headers=alice).json()["jobs"]) == 10
        # Nor a number in the dispatch order: the queue positions count the 10 jobs only.
        assert submitted_seq() == seq_before + 10
        # The 40 refused transactions left nothing on the table's stream: the counters say 10.
        assert stats_of(api, emulator, headers=alice)["by_status"]["pending"] == 10
        accepted = [a.json()["job_id"] for a in answers if a.status_code == 202]
        # A cancel releases one place.
        assert api.post(f"/api/v1/jobs/{accepted[-1]}/cancel", headers=alice).status_code == 200
        assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=alice).status_code == 202
        assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=alice).status_code == 429
    # Once the jobs end (one of them failed), the quota is free again.
    wait_for(
        lambda: api.get("/api/v1/stats", headers=alice).json()["by_status"]["pending"] == 0, timeout=60, what="drain"
    )
    wait_for(
        lambda: api.get("/api/v1/stats", headers=alice).json()["by_status"]["processing"] == 0, timeout=60, what="drain"
    )
    assert api.get("/api/v1/stats", headers=alice).json()["by_status"]["failed"] >= 1
    assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=alice).status_code == 202


def submitted_seq() -> int:
    """How many jobs were given a place in dispatch order so far."""
    from shared.aws import client
    from shared.job_store import QUEUE_KEY
    from shared.settings import get_settings

    item = client("dynamodb").get_item(TableName=get_settings().jobs_table_name, Key={"pk": {"S": QUEUE_KEY}})
    return int(item.get("Item", {}).get("submitted_seq", {}).get("N", 0))


def test_submit_rate_limit_slides_across_a_minutes_end(api: httpx.Client, keys, monkeypatch) -> None:
    """Counted per calendar minute alone, a key could submit its whole limit at a minute's last
    second and again at the next one's first (CI stop 16 saw 5 of 5 accepted that way). The
    previous minute's submits still count for the part of it within the last 60 seconds."""
    from shared import job_store

    _, carol = keys(max_submits_per_minute=3, max_active_jobs=100)
    minute_end = (time.time() // 60 + 1) * 60

    def submits(at: float, count: int) -> list[httpx.Response]:
        monkeypatch.setattr(job_store, "clock", lambda: at)
        return [api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=carol) for _ in range(count)]

    seq_before = submitted_seq()
    late = submits(minute_end - 2, 4)
    assert [c.status_code for c in late] == [202, 202, 202, 429]
    assert late[3].json()["code"] == "RATE_LIMITED"
    assert late[3].headers["retry-after"] == "3"  # at 1 s into the next minute, 2.95 of the 3 still count
    # At the minute's very start all 3 still count, though the new minute has no counter yet.
    turn = submits(minute_end, 1)
    assert [c.status_code for c in turn] == [429] and turn[0].headers["retry-after"] == "1"
    early = submits(minute_end + 1, 3)
    assert [c.status_code for c in early] == [202, 429, 429]
    assert early[1].headers["retry-after"] == "20"  # at 21 s, less than 2 of the previous 3 still count
    assert submitted_seq() - seq_before == 4  # refused submits stored nothing


def test_authorizer_on_sample_events(keys) -> None:
    from functions.authorizer.app import handler
    from local.lambdas import LambdaContext

    event = json.loads((ROOT / "events" / "authorizer" / "request-unknown-key.json").read_text())
    assert handler(event, LambdaContext("api")) == {"isAuthorized": True, "context": {"denied": "unknown"}}
    name, headers = keys(max_active_jobs=3)
    event["headers"]["authorization"] = event["identitySource"][0] = headers["Authorization"]
    answer = handler(event, LambdaContext("api"))
    assert answer["isAuthorized"] and answer["context"]["owner"] == name and answer["context"]["max_active_jobs"] == 3
    assert headers["Authorization"].split()[1] not in json.dumps(table_items(name))  # stored as its hash only


def test_operators_see_every_owner_through_admin_routes(api: httpx.Client, keys, emulator) -> None:
    from tests.conftest import load_event

    name, alice = keys()
    job_id = api.post("/api/v1/generate", json={"prompt": unique_prompt("admin")}, headers=alice).json()["job_id"]
    event = load_event("api/list-jobs.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/admin/v1/jobs"
    event["queryStringParameters"], event["rawQueryString"] = {"owner": name}, f"owner={name}"
    event["requestContext"]["authorizer"] = {"iam": {"userArn": "arn:aws:iam::123456789012:user/ops"}}
    reply = emulator.runtime.invoke("api", event)
    assert reply["statusCode"] == 200, reply
    assert [j["job_id"] for j in json.loads(reply["body"])["jobs"]] == [job_id]
    event["requestContext"].pop("authorizer")  # not signed: no such route
    assert emulator.runtime.invoke("api", event)["statusCode"] in (401, 404)


def test_make_api_key_commands(emulator, capsys, monkeypatch) -> None:
    from ops import api_keys

    monkeypatch.setenv("EMULATOR_PORT", emulator.endpoint.rsplit(":", 1)[1])
    name = unique_prompt("ops").replace(" ", "-")
    assert api_keys.main(["create", name]) == 0
    *_, label, secret_line, key = capsys.readouterr().out.strip().splitlines()
    assert key.startswith("mg_") and len(key) > 40  # the last line: `make -s api-key … | tail -1`
    assert name in label and "shown once" in label
    secret = secret_line.removeprefix("Webhook signing secret: ")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert api_keys.main(["rotate-secret", name]) == 0
    *_, label, rotated = capsys.readouterr().out.strip().splitlines()
    assert "24 h" in label and rotated.startswith("whsec_") and rotated != secret
    assert api_keys.main(["rotate-secret", "nobody-" + name]) == 1  # no active key of that name
    capsys.readouterr()
    assert api_keys.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert name in listed and key not in listed and secret not in listed and rotated not in listed
    assert api_keys.main(["revoke", name]) == 0
    capsys.readouterr()
    api_keys.main(["list"])
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if name in line]
    assert entry["state"] == "revoked"


def test_cors_only_for_allowed_origins(api: httpx.Client, configure) -> None:
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in api.options("/api/v1/generate", headers=preflight).headers  # off
    configure(CORS_ALLOWED_ORIGINS="https://app.example.com")
    answer = api.options("/api/v1/generate", headers=preflight)
    assert answer.status_code == 204 and answer.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in answer.headers["access-control-allow-headers"]
    assert api.get("/health", headers={"Origin": "https://app.example.com"}).headers["access-control-allow-origin"]
    assert "access-control-allow-origin" not in api.get("/health", headers={"Origin": "https://evil.example"}).headers


def test_openapi_declares_both_security_schemes(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "http", "scheme": "bearer", "description": schemes["apiKey"]["description"]}
    assert schemes["sigv4"]["type"] == "apiKey" and schemes["sigv4"]["in"] == "header"
    # Per operation, as deployed: Swagger UI's Authorize sends the key on /api/v1; /health is IAM's.
    assert document["paths"]["/api/v1/generate"]["post"]["security"] == [{"apiKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == [{"sigv4": []}]


def test_a_job_an_operator_submits_is_owned_by_its_iam_principal(api: httpx.Client, keys, emulator) -> None:
    from tests.conftest import load_event

    keys()  # API_AUTH=keys
    event = load_event("api/generate.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/admin/v1/generate"
    event["body"] = json.dumps({"prompt": unique_prompt("ops")})
    event["requestContext"]["authorizer"] = {"iam": {"userArn": "arn:aws:iam::123456789012:user/ops"}}
    reply = emulator.runtime.invoke("api", event)
    assert reply["statusCode"] == 202, reply
    job_id = json.loads(reply["body"])["job_id"]
    owner = "iam:arn:aws:iam::123456789012:user/ops"
    listing = load_event("api/list-jobs.json")
    listing["rawPath"] = listing["requestContext"]["http"]["path"] = "/admin/v1/jobs"
    listing["queryStringParameters"], listing["rawQueryString"] = {"owner": owner}, f"owner={owner}"
    listing["requestContext"]["authorizer"] = event["requestContext"]["authorizer"]
    reply = emulator.runtime.invoke("api", listing)
    assert [j["job_id"] for j in json.loads(reply["body"])["jobs"]] == [job_id]


def test_two_callers_with_the_same_idempotency_key_get_their_own_jobs(api: httpx.Client, keys) -> None:
    _, alice = keys()
    _, bob = keys()
    body = {"prompt": unique_prompt("same key")}
    first = api.post("/api/v1/generate", json=body, headers={**alice, "Idempotency-Key": "shared-key-1"})
    second = api.post("/api/v1/generate", json=body, headers={**bob, "Idempotency-Key": "shared-key-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] != second.json()["job_id"]
    assert api.get(f"/api/v1/jobs/{first.json()['job_id']}", headers=bob).status_code == 404
    replay = api.post("/api/v1/generate", json=body, headers={**bob, "Idempotency-Key": "shared-key-1"})
    assert replay.json()["job_id"] == second.json()["job_id"]


def test_the_refusals_of_keys_and_quotas_conform_to_the_openapi_document(api: httpx.Client, keys, emulator) -> None:
    """401 (a bad key), 429 (a quota, with Retry-After) and 409 (an Idempotency-Key in flight) are
    documented with the error body on the operations that give them."""
    from tests.integration.test_openapi import conforms

    document = api.get("/openapi.json").json()
    _, good = keys(max_active_jobs=1)
    unknown = {"Authorization": "Bearer mg_unknown"}
    for method, url, template in [
        ("GET", "/api/v1/models", "/api/v1/models"),
        ("GET", "/api/v1/jobs/x", "/api/v1/jobs/{job_id}"),
        ("POST", "/api/v1/jobs/x/retry", "/api/v1/jobs/{job_id}/retry"),
    ]:
        conforms(document, api.request(method, url, headers=unknown), method, template)
    with emulator.dispatch_paused():
        assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=good).status_code == 202
        limited = api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=good)
    assert limited.status_code == 429
    conforms(document, limited, "POST", "/api/v1/generate")
    assert "Retry-After" in document["paths"]["/api/v1/generate"]["post"]["responses"]["429"]["headers"]
    assert "409" in document["paths"]["/api/v1/generate"]["post"]["responses"]  # IDEMPOTENCY_IN_PROGRESS


def test_make_api_key_limits_and_rotation_by_key_id(api: httpx.Client, keys, emulator) -> None:
    """Through `make`, as an operator runs it: a key with its own limit; a second key of the same
    name, then the first revoked by its id while the second keeps working (rotation, no outage)."""
    import subprocess

    from tests.conftest import ROOT

    keys()  # API_AUTH=keys
    name = unique_prompt("rotate").replace(" ", "-")
    env = {**os.environ, "EMULATOR_PORT": emulator.endpoint.rsplit(":", 1)[1]}

    def make(*args: str) -> list[str]:
        done = subprocess.run(["make", "-s", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()

    first = make("api-key", f"NAME={name}", "MAX_ACTIVE_JOBS=1")[-1]
    second = make("api-key", f"NAME={name}")[-1]
    listed = [json.loads(line) for line in make("api-keys") if name in line]
    assert len(listed) == 2
    with emulator.dispatch_paused():
        headers = {"Authorization": f"Bearer {first}"}
        assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=headers).status_code == 202
        assert api.post("/api/v1/generate", json={"prompt": unique_prompt()}, headers=headers).status_code == 429
    from shared.auth import hash_key

    first_id = next(entry["key_id"] for entry in listed if hash_key(first).startswith(entry["key_id"]))
    make("api-key-revoke", f"NAME={name}", f"KEY_ID={first_id}")
    assert api.get("/api/v1/models", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert api.get("/api/v1/models", headers={"Authorization": f"Bearer {second}"}).status_code == 200
