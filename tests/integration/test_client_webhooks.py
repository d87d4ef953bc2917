"""Client webhooks on the emulation: the real notifier function, fed by its SQS queue, delivers to
a loopback receiver (CLIENT_WEBHOOK_ALLOW_PRIVATE=1), and every delivery is verified with the
`standardwebhooks` library, an independent implementation of the signature."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from local.emulator import free_port
from shared.auth import NewKey
from shared.errors import PermanentError
from shared.models import WebhookEvent
from tests.conftest import stats_of, status_of, unique_prompt, wait_for, wait_until_done, wait_until_status

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Receiver:
    """A loopback webhook receiver answering scripted statuses (then 200), recording each request."""

    def __init__(self, *statuses: int, location: str | None = None) -> None:
        self.statuses, self.location = list(statuses), location
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks?source=test"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self) -> list[dict]:
        """Every delivery, verified (raises on a bad signature), as (headers, parsed body)."""
        return [
            {"id": r["headers"]["webhook-id"], "body": Webhook(SECRET).verify(r["body"], r["headers"])}
            for r in self.requests
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def hooks(configure, receivers):
    configure(
        CLIENT_WEBHOOK_ALLOW_PRIVATE="1",
        CLIENT_WEBHOOK_SECRET=SECRET,
        CLIENT_WEBHOOK_RETRY_SECONDS="1",
        CLIENT_WEBHOOK_RETRY_WINDOW_SECONDS="60",
        CLIENT_WEBHOOK_TIMEOUT_SECONDS="2",
    )

    def receiver(*statuses: int, location: str | None = None) -> Receiver:
        made = Receiver(*statuses, location=location)
        receivers.append(made)
        return made

    return receiver


def submit_with_webhook(api, url: str, prompt: str | None = None, **extra) -> str:
    body = {"prompt": prompt or unique_prompt("webhook"), "webhook": url, **extra}
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def deliveries_of(api, job_id: str) -> list[dict]:
    return api.get(f"/api/v1/jobs/{job_id}").json()["webhook_deliveries"]


def settled(api, job_id: str, count: int = 1) -> list[dict]:
    def check():
        found = deliveries_of(api, job_id)
        return found if len(found) >= count and all(d["state"] != "pending" for d in found) else None

    return wait_for(check, timeout=30, what=f"the webhook deliveries of {job_id}")


def test_a_completed_job_delivers_a_signed_job_completed_with_its_detail(api, hooks):
    receiver = hooks()
    job_id = submit_with_webhook(api, receiver.url)
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed"
    assert job["request"]["webhook"] == receiver.url
    assert job["request"]["webhook_events"] == ["job.completed", "job.failed", "job.cancelled"]

    [delivery] = settled(api, job_id)
    assert (delivery["event"], delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "job.completed",
        "delivered",
        1,
        "200",
    )
    [received] = receiver.verified()
    assert received["id"] == delivery["webhook_id"]
    body = received["body"]
    assert body["type"] == "job.completed" and body["timestamp"]
    assert body["data"]["job_id"] == job_id and body["data"]["status"] == "completed"
    assert body["data"]["outputs"][0]["url"].startswith("http")  # download URLs included
    assert receiver.requests[0]["headers"]["Host"] == receiver.url.split("/")[2]


def test_failed_and_cancelled_jobs_deliver_their_events(api, emulator, hooks, faults):
    receiver = hooks()
    prompt = unique_prompt("fails")
    faults.script(prompt, PermanentError("The prompt was flagged", code="CONTENT_REJECTED"))
    failed = submit_with_webhook(api, receiver.url, prompt=prompt)
    with emulator.dispatch_paused():
        cancelled = submit_with_webhook(api, receiver.url)
        assert api.post(f"/api/v1/jobs/{cancelled}/cancel").status_code == 200
    assert wait_until_done(api, failed)["status"] == "failed"
    settled(api, failed)
    settled(api, cancelled)
    events = {(r["body"]["data"]["job_id"], r["body"]["type"]) for r in receiver.verified()}
    assert events == {(failed, "job.failed"), (cancelled, "job.cancelled")}
    failed_body = next(r["body"] for r in receiver.verified() if r["body"]["type"] == "job.failed")
    assert failed_body["data"]["error"]["code"] == "CONTENT_REJECTED"


def test_processing_and_progress_events_when_asked(api, hooks):
    receiver = hooks()
    events = ["job.processing", "job.progress", "job.completed"]
    job_id = submit_with_webhook(api, receiver.url, webhook_events=events)
    assert wait_until_done(api, job_id)["status"] == "completed"
    wait_for(lambda: any(r["body"]["type"] == "job.completed" for r in receiver.verified()), what="completed")
    received = receiver.verified()
    types = {r["body"]["type"] for r in received}
    assert types == set(events)
    assert len({r["id"] for r in received}) == len(received)  # each event (each progress step) its own id


def test_a_receiver_answering_500_twice_gets_the_event_on_the_third_try_with_the_same_id(api, hooks):
    receiver = hooks(500, 503)
    job_id = submit_with_webhook(api, receiver.url)
    assert wait_until_done(api, job_id)["status"] == "completed"
    [delivery] = settled(api, job_id)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("delivered", 3, "200")
    received = receiver.verified()
    assert len(received) == 3
    assert {r["id"] for r in received} == {delivery["webhook_id"]}


def test_a_receiver_that_is_down_leaves_the_job_completed_and_the_delivery_given_up(api, configure, hooks):
    configure(CLIENT_WEBHOOK_RETRY_WINDOW_SECONDS="4")
    down = f"http://127.0.0.1:{free_port()}/nobody-listens"
    job_id = submit_with_webhook(api, down)
    assert wait_until_done(api, job_id)["status"] == "completed"
    [delivery] = settled(api, job_id)
    assert delivery["state"] == "given_up"
    assert delivery["last_status"] == "connection_error"
    assert delivery["attempts"] >= 2  # retried within the window, then gave up
    assert status_of(api, job_id)["status"] == "completed"


def test_a_410_stops_retries_at_once(api, hooks):
    receiver = hooks(410)
    job_id = submit_with_webhook(api, receiver.url)
    wait_until_done(api, job_id)
    [delivery] = settled(api, job_id)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("given_up", 1, "410")
    [received] = receiver.verified()
    assert received["id"] == delivery["webhook_id"] and received["body"]["data"]["job_id"] == job_id


def test_a_redirect_is_not_followed(api, hooks):
    target = hooks()
    redirecting = hooks(307, location=target.url)
    job_id = submit_with_webhook(api, redirecting.url)
    wait_until_done(api, job_id)
    [delivery] = settled(api, job_id)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("given_up", 1, "307")
    [received] = redirecting.verified()
    assert received["id"] == delivery["webhook_id"] and received["body"]["data"]["job_id"] == job_id
    assert target.requests == []


METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_the_metadata_address_is_not_followed_without_the_private_allowance(
    api, configure, internet, status
):
    """An https receiver on a public address (DNS and the network played by tests/fake_internet.py,
    the SSRF check itself real) answers a redirect to 169.254.169.254: the delivery stops there,
    given up after one try, and the stand-in for the metadata service hears nothing."""
    configure(
        CLIENT_WEBHOOK_ALLOW_PRIVATE="0",
        CLIENT_WEBHOOK_SECRET=SECRET,
        CLIENT_WEBHOOK_RETRY_SECONDS="1",
        CLIENT_WEBHOOK_RETRY_WINDOW_SECONDS="60",
        CLIENT_WEBHOOK_TIMEOUT_SECONDS="2",
    )
    metadata = internet.http("169.254.169.254")
    receiver = internet.https("hooks.example.test", "93.184.216.34", status=status, headers={"Location": METADATA_URL})
    job_id = submit_with_webhook(api, "https://hooks.example.test/hooks")
    assert wait_until_done(api, job_id)["status"] == "completed"
    [delivery] = settled(api, job_id)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("given_up", 1, str(status))
    [request] = receiver.requests
    assert (request.method, request.path, request.headers["Host"]) == ("POST", "/hooks", "hooks.example.test")
    body = Webhook(SECRET).verify(request.body.decode(), request.headers)
    assert body["data"]["job_id"] == job_id and request.headers["webhook-id"] == delivery["webhook_id"]
    assert metadata.requests == []

    # The stand-in is where a client that follows redirects would have landed.
    with httpx.Client(follow_redirects=True) as follower:
        follower.post("https://hooks.example.test/hooks", content=b"{}")
    assert len(metadata.requests) == 1


def test_the_url_is_checked_again_at_delivery(api, emulator, configure, hooks):
    receiver = hooks()
    with emulator.dispatch_paused():
        job_id = submit_with_webhook(api, receiver.url)  # allowed when submitted
        configure(CLIENT_WEBHOOK_ALLOW_PRIVATE="0")  # not any more when delivered
        assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    [delivery] = settled(api, job_id)
    assert delivery["state"] == "given_up" and delivery["last_status"].startswith("refused")
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",  # allowed only with the private allowance: http is refused too
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "ftp://example.com/hook",
        "not a url",
    ],
)
def test_a_refused_webhook_url_is_a_422_naming_the_field_and_stores_nothing(api, emulator, url):
    before = stats_of(api, emulator)["total_jobs"]
    response = api.post("/api/v1/generate", json={"prompt": unique_prompt(), "webhook": url})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in body["errors"]] == ["webhook"]
    assert stats_of(api, emulator)["total_jobs"] == before


def test_unknown_webhook_events_are_a_422(api):
    body = {"prompt": unique_prompt(), "webhook": "https://example.com/h", "webhook_events": ["job.exploded"]}
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"].startswith("webhook_events")


def test_the_detail_and_the_body_show_the_pending_job_until_dispatched(api, emulator, hooks):
    receiver = hooks()
    with emulator.dispatch_paused():
        job_id = submit_with_webhook(api, receiver.url)
        wait_until_status(api, job_id, "pending")
        assert deliveries_of(api, job_id) == []
    wait_until_done(api, job_id)
    settled(api, job_id)
    assert json.loads(receiver.requests[0]["body"])["data"]["job_id"] == job_id


def test_openapi_describes_the_webhooks_and_the_request_fields(api):
    document = api.get("/openapi.json").json()
    assert set(document["webhooks"]) == {e.value for e in WebhookEvent}
    completed = document["webhooks"]["job.completed"]["post"]
    schema = completed["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["data"] == {"$ref": "#/components/schemas/JobDetail"}
    assert "JobDetail" in document["components"]["schemas"]
    assert {p["name"] for p in completed["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    request = document["components"]["schemas"]["GenerateRequest"]["properties"]
    assert {"webhook", "webhook_events"} <= set(request)


def test_a_failure_to_queue_the_event_never_fails_the_job(api, hooks, monkeypatch):
    from shared import notify

    def broken(*args, **kwargs):
        raise RuntimeError("queue down")

    monkeypatch.setattr(notify, "send", broken)
    receiver = hooks()
    job_id = submit_with_webhook(api, receiver.url)
    assert wait_until_done(api, job_id)["status"] == "completed"
    assert deliveries_of(api, job_id) == [] and receiver.requests == []


def test_the_delivery_log_is_not_a_job(api, hooks):
    receiver = hooks()
    job_id = submit_with_webhook(api, receiver.url)
    wait_until_done(api, job_id)
    settled(api, job_id)
    response = api.get(f"/api/v1/jobs/deliveries%23{job_id}")
    assert response.status_code == 404


# ---- signing secrets: one per API key, rotatable; the deployment's for jobs without a key --------
def verifies(secret: str, request: dict) -> bool:
    try:
        Webhook(secret).verify(request["body"], request["headers"])
    except WebhookVerificationError:
        return False
    return True


@pytest.fixture
def as_key(api, configure, hooks) -> Iterator[Callable[[], tuple[str, NewKey, httpx.Client]]]:
    """API_AUTH=keys; each call makes a key: its owner's name, the key, an API client sending it."""
    from shared import auth

    configure(API_AUTH="keys")
    clients: list[httpx.Client] = []

    def make() -> tuple[str, NewKey, httpx.Client]:
        name = unique_prompt("signer").replace(" ", "-")
        new = auth.create_key(name)
        clients.append(httpx.Client(base_url=api.base_url, timeout=30, headers={"Authorization": f"Bearer {new.key}"}))
        return name, new, clients[-1]

    yield make
    for made in clients:
        made.close()


def delivered(caller: httpx.Client, receiver: Receiver, job_id: str) -> dict:
    """The job's one delivery (completed), as the receiver got it."""
    assert wait_until_done(caller, job_id)["status"] == "completed"
    [delivery] = settled(caller, job_id)
    assert delivery["state"] == "delivered", delivery
    [request] = [r for r in receiver.requests if r["headers"]["webhook-id"] == delivery["webhook_id"]]
    return request


def test_each_api_key_signs_with_its_own_secret(as_key, hooks):
    receiver = hooks()
    (_, alice, alice_api), (_, bob, bob_api) = as_key(), as_key()
    assert alice.signing_secret != bob.signing_secret
    for secret in (alice.signing_secret, bob.signing_secret):
        assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    from_alice = delivered(alice_api, receiver, submit_with_webhook(alice_api, receiver.url))
    from_bob = delivered(bob_api, receiver, submit_with_webhook(bob_api, receiver.url))
    assert verifies(alice.signing_secret, from_alice) and not verifies(bob.signing_secret, from_alice)
    assert verifies(bob.signing_secret, from_bob) and not verifies(alice.signing_secret, from_bob)
    assert not verifies(SECRET, from_alice) and not verifies(SECRET, from_bob)  # not the deployment's either
    assert len(from_alice["headers"]["webhook-signature"].split()) == 1  # no rotation: one signature


def test_a_rotated_secret_signs_at_once_and_the_old_one_only_during_its_grace_period(as_key, hooks):
    from shared import auth

    receiver = hooks()
    owner, key, caller = as_key()
    with_grace = auth.rotate_signing_secrets(owner)[key.key_id]
    assert with_grace != key.signing_secret
    during = delivered(caller, receiver, submit_with_webhook(caller, receiver.url))
    assert verifies(with_grace, during) and verifies(key.signing_secret, during)
    assert len(during["headers"]["webhook-signature"].split()) == 2

    without_grace = auth.rotate_signing_secrets(owner, grace_hours=0)[key.key_id]
    after = delivered(caller, receiver, submit_with_webhook(caller, receiver.url))
    assert verifies(without_grace, after)
    assert not verifies(with_grace, after) and not verifies(key.signing_secret, after)


def test_a_job_of_a_revoked_key_still_signs_with_that_key_s_secret(as_key, emulator, hooks):
    from shared import auth

    receiver = hooks()
    owner, key, caller = as_key()
    with emulator.dispatch_paused():
        job_id = submit_with_webhook(caller, receiver.url)
        assert auth.revoke_keys(owner) == 1
    assert caller.get("/api/v1/jobs").status_code == 401
    wait_for(lambda: receiver.requests or None, what="the delivery")
    assert verifies(key.signing_secret, receiver.requests[0])
    assert json.loads(receiver.requests[0]["body"])["data"]["job_id"] == job_id


def test_a_key_made_before_keys_had_secrets_signs_with_the_deployment_s_until_rotated(as_key, hooks):
    from shared import auth, signing
    from shared.aws import client
    from shared.settings import get_settings

    receiver = hooks()
    owner, key, caller = as_key()
    table = get_settings().jobs_table_name
    client("dynamodb").delete_item(TableName=table, Key={"pk": {"S": signing.ITEM_PREFIX + key.key_id}})
    before = delivered(caller, receiver, submit_with_webhook(caller, receiver.url))
    assert verifies(SECRET, before)
    own = auth.rotate_signing_secrets(owner)[key.key_id]  # its first own secret
    after = delivered(caller, receiver, submit_with_webhook(caller, receiver.url))
    assert verifies(own, after) and not verifies(SECRET, after)


def test_jobs_without_a_key_sign_with_the_deployment_s_secret(api, as_key, configure, emulator, hooks):
    """An operator's job (IAM principal, no key) with keys on, and any job with keys off."""
    from tests.conftest import load_event

    receiver = hooks()
    _, key, _ = as_key()
    event = load_event("api/generate.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/admin/v1/generate"
    event["body"] = json.dumps({"prompt": unique_prompt("operator"), "webhook": receiver.url})
    # Its own principal: other tests count the jobs of theirs.
    event["requestContext"]["authorizer"] = {"iam": {"userArn": "arn:aws:iam::123456789012:user/webhook-ops"}}
    reply = emulator.runtime.invoke("api", event)
    assert reply["statusCode"] == 202, reply
    wait_for(lambda: receiver.requests or None, what="the operator's delivery")
    [operators] = receiver.requests
    assert verifies(SECRET, operators) and not verifies(key.signing_secret, operators)

    configure(API_AUTH="none")
    anonymous = delivered(api, receiver, submit_with_webhook(api, receiver.url))
    assert verifies(SECRET, anonymous)


def test_the_deployment_s_secret_is_stored_on_first_use_when_not_configured(
    api, configure, hooks, emulator, capsys, monkeypatch
):
    """Deployed, CLIENT_WEBHOOK_SECRET is unset: the secret is made once, in the jobs table, and
    `python -m ops.api_keys deployment-secret` shows it."""
    from ops import api_keys
    from shared import signing

    configure(CLIENT_WEBHOOK_SECRET="")
    receiver = hooks()
    request = delivered(api, receiver, submit_with_webhook(api, receiver.url))
    stored = signing.stored_deployment()[0].get_secret_value()
    assert verifies(stored, request) and not verifies(SECRET, request)
    assert signing.stored_deployment()[0].get_secret_value() == stored  # made once
    again = delivered(api, receiver, submit_with_webhook(api, receiver.url))
    assert verifies(stored, again)

    monkeypatch.setenv("EMULATOR_PORT", emulator.endpoint.rsplit(":", 1)[1])
    capsys.readouterr()
    assert api_keys.main(["deployment-secret"]) == 0
    assert capsys.readouterr().out.strip() == stored


def test_signing_secrets_never_appear_in_logs_or_responses(as_key, hooks, capfd, caplog):
    from shared import auth

    receiver = hooks()
    owner, key, caller = as_key()
    rotated = auth.rotate_signing_secrets(owner)[key.key_id]
    job_id = submit_with_webhook(caller, receiver.url)
    delivered(caller, receiver, job_id)
    bodies = [
        caller.get(f"/api/v1/jobs/{job_id}").text,
        caller.get("/api/v1/jobs").text,
        caller.get(f"/api/v1/status/{job_id}").text,
        json.dumps(auth.list_keys()),
        *(r["body"] + json.dumps(r["headers"]) for r in receiver.requests),
    ]
    out, err = capfd.readouterr()
    everything = "\n".join([*bodies, out, err, caplog.text])
    for secret in (key.signing_secret, rotated, SECRET):
        assert secret not in everything
        assert secret.removeprefix("whsec_") not in everything
