"""The Replicate double, driven by the real `replicate` client (1.0.7) as our worker will drive it.

Every behaviour checked here is one docs/provider.md describes, or a scripted fault the worker's tests
rely on. Waits poll with deadlines; durations are shortened through the double's settings.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import replicate
from PIL import Image, UnidentifiedImageError
from pydantic.v1 import ValidationError as ClientModelError  # the client parses with pydantic.v1
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction
from replicate.stream import ServerSentEvent
from replicate.webhook import InvalidSignatureError, InvalidTimestampError, WebhookSigningSecret

from local.replicate_double import (
    FLUX_SCHNELL,
    FLUX_SCHNELL_VERSION,
    SDXL,
    SDXL_VERSION,
    Fault,
    ReplicateDouble,
    flux_size,
    sign,
    tqdm_line,
)

TOKEN = "r8_token_of_the_double_for_tests"
FAST = {
    "token": TOKEN,
    "starting_seconds": 0.02,
    "processing_seconds": 0.08,
    "webhook_min_interval": 0.05,
    "webhook_retries": 3,
    "webhook_backoff": 0.05,
    "webhook_timeout": 2.0,
}
DONE = ("succeeded", "failed", "canceled")


@pytest.fixture
def double() -> Iterator[ReplicateDouble]:
    with ReplicateDouble(**FAST) as running:
        yield running


@pytest.fixture
def client(double: ReplicateDouble) -> replicate.Client:
    return replicate.Client(api_token=TOKEN, base_url=double.base_url)


def flux(client: replicate.Client, prompt: str = "a lighthouse at dawn", **params: Any) -> Prediction:
    """A small flux-schnell prediction (0.25 MP), created the way our worker does."""
    input = {"prompt": prompt, "megapixels": "0.25", **params.pop("input", {})}
    return client.models.predictions.create(model=FLUX_SCHNELL, input=input, **params)


def poll(prediction: Prediction, *statuses: str, timeout: float = 5.0) -> list[float]:
    """Reload until one of `statuses` (default: finished); returns the progress fractions seen."""
    wanted = statuses or DONE
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        if prediction.progress is not None:
            seen.append(prediction.progress.percentage)
        if prediction.status in wanted:
            return seen
        assert time.monotonic() < deadline, f"{prediction.id} still {prediction.status} after {timeout}s"
        time.sleep(0.02)
        prediction.reload()


def download(double: ReplicateDouble, url: str) -> httpx.Response:
    """Fetch an output the safe way: a plain HTTP client trusting the double's CA, no API token."""
    response = httpx.get(url, verify=str(double.ca_file), timeout=5)
    assert response.status_code == 200, response.text
    return response


def api(double: ReplicateDouble, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return httpx.request(method, double.base_url + path, headers=headers, timeout=10, **kwargs)


# ---- a webhook receiver -----------------------------------------------------------------------------
class Receiver:
    """A tiny HTTP server recording what it receives; answers `answers` in order, then 200."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.open = threading.Event()  # cleared: requests wait (a receiver that hangs)
        self.open.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.open.wait(10)
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/replicate"

    def events(self) -> list[tuple[str, str]]:
        """(status in the body, webhook-id) of each request received."""
        return [(json.loads(r["body"])["status"], r["headers"]["webhook-id"]) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.open.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def secret_of(client: replicate.Client) -> WebhookSigningSecret:
    return client.webhooks.default.secret()


# ---- creating and following predictions ----------------------------------------------------------------
def test_create_reply_has_the_documented_shape(double: ReplicateDouble) -> None:
    response = api(double, "POST", f"/v1/models/{FLUX_SCHNELL}/predictions", json={"input": {"prompt": "x"}})

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "starting" and body["logs"] == "" and body["source"] == "api"
    assert {"output", "started_at", "completed_at"}.isdisjoint(body)
    assert body["model"] == FLUX_SCHNELL and body["version"] == FLUX_SCHNELL_VERSION
    assert len(body["id"]) == 26 and body["input"]["aspect_ratio"] == "1:1"  # defaults applied
    assert set(body["urls"]) == {"get", "cancel", "stream", "web"}
    assert all(url.startswith(double.base_url) for url in body["urls"].values())
    assert body["urls"]["get"] == f"{double.base_url}/v1/predictions/{body['id']}"


def test_sync_create_of_an_official_model_returns_its_images(double: ReplicateDouble) -> None:
    headers: list[httpx.Headers] = []
    client = replicate.Client(
        api_token=TOKEN,
        base_url=double.base_url,
        event_hooks={"response": [lambda r: headers.append(r.headers)]},
    )

    prediction = flux(client, input={"aspect_ratio": "16:9", "output_format": "png", "num_outputs": 2}, wait=10)

    assert headers[-1]["Preference-Applied"] == "wait=10"
    assert prediction.status == "succeeded"
    assert prediction.metrics and prediction.metrics["predict_time"] > 0
    assert len(prediction.output) == 2
    for url in prediction.output:
        assert url.startswith(f"https://{double.files_host}:{double.files_port}/")
        image = Image.open(io.BytesIO(download(double, url).content))
        assert (image.format, image.size) == ("PNG", (672, 384))  # 1344x768 halved
    fetched = double.file_requests
    assert [(r.method, r.status, r.tls, r.prediction_id) for r in fetched] == [("GET", 200, True, prediction.id)] * 2
    assert all("authorization" not in r.headers for r in fetched)  # no API token sent to the file host


def test_bare_prefer_wait_is_applied_as_wait(double: ReplicateDouble) -> None:
    response = api(
        double,
        "POST",
        f"/v1/models/{FLUX_SCHNELL}/predictions",
        headers={"Prefer": "wait"},
        json={"input": {"prompt": "x", "megapixels": "0.25"}},
    )

    assert response.headers["Preference-Applied"] == "wait"
    assert response.json()["status"] == "succeeded"


def test_sync_create_returns_the_unfinished_prediction_when_time_is_up(
    double: ReplicateDouble, client: replicate.Client
) -> None:
    double.script("slow", Fault.slow(10))
    started = time.monotonic()

    prediction = flux(client, "slow", wait=1)

    assert 0.9 < time.monotonic() - started < 5
    assert prediction.status == "processing"
    assert prediction.output is None


def test_predictions_create_with_a_model_silently_drops_wait(client: replicate.Client) -> None:
    prediction = client.predictions.create(model=FLUX_SCHNELL, input={"prompt": "x"}, wait=10)

    assert prediction.status == "starting"  # the client trap docs/provider.md warns about


@pytest.mark.parametrize(
    ("aspect_ratio", "megapixels", "fmt", "size"),
    [
        ("1:1", "1", "webp", (1024, 1024)),
        ("1:1", "0.25", "jpg", (512, 512)),
        ("9:21", "0.25", "png", (320, 768)),
    ],
)
def test_flux_outputs_are_real_images_of_the_documented_size(
    double: ReplicateDouble,
    client: replicate.Client,
    aspect_ratio: str,
    megapixels: str,
    fmt: str,
    size: tuple,
) -> None:
    prediction = flux(
        client, input={"aspect_ratio": aspect_ratio, "megapixels": megapixels, "output_format": fmt}, wait=10
    )

    assert prediction.output[0].endswith(f"/out-0.{fmt}")
    response = download(double, prediction.output[0])
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ({"jpg": "JPEG"}.get(fmt, fmt.upper()), size)
    assert response.headers["content-type"] == {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}[fmt]


def test_flux_sizes_follow_the_aspect_ratio_table() -> None:
    assert flux_size("1:1", "1") == (1024, 1024)
    assert flux_size("1:1", "0.25") == (512, 512)
    assert flux_size("21:9", "1") == (1536, 640)
    assert flux_size("4:5", "0.25") == (448, 544)


def test_sdxl_by_version_runs_with_rising_progress(double: ReplicateDouble, client: replicate.Client) -> None:
    double.script("astronaut", Fault.slow(0.6))

    prediction = client.predictions.create(
        version=SDXL_VERSION,
        input={"prompt": "astronaut", "width": 256, "height": 128, "num_inference_steps": 6},
    )
    assert prediction.status == "starting" and prediction.version == SDXL_VERSION
    progress = poll(prediction)

    assert prediction.status == "succeeded"
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len({p for p in progress if 0 < p < 1}) >= 2, progress  # seen rising, not just 0 and 1
    assert prediction.logs.startswith("Using seed:") and "txt2img mode" in prediction.logs
    image = Image.open(io.BytesIO(download(double, prediction.output[0]).content))
    assert (image.format, image.size) == ("PNG", (256, 128))


def test_version_can_also_be_given_as_owner_name_colon_id(client: replicate.Client) -> None:
    prediction = client.predictions.create(
        version=f"{SDXL}:{SDXL_VERSION}", input={"width": 64, "height": 64, "num_inference_steps": 2}
    )

    poll(prediction)
    assert prediction.status == "succeeded" and prediction.model == SDXL


def test_a_problem_found_while_running_fails_the_prediction(client: replicate.Client) -> None:
    prediction = client.predictions.create(version=SDXL_VERSION, input={"width": 1001, "height": 64})

    poll(prediction)
    assert prediction.status == "failed"
    assert "divisible by 8" in prediction.error


def test_deployments_run_their_model(double: ReplicateDouble) -> None:
    double.deployments["acme/fast-images"] = FLUX_SCHNELL
    client = replicate.Client(api_token=TOKEN, base_url=double.base_url)

    prediction = client.deployments.predictions.create(
        "acme/fast-images", input={"prompt": "x", "megapixels": "0.25"}, wait=10
    )

    assert prediction.status == "succeeded" and prediction.model == FLUX_SCHNELL


def test_progress_lines_parse_with_the_clients_own_parser() -> None:
    line = tqdm_line(2, 5, 0.12)

    assert line.startswith(" 40%|████")
    assert Prediction.Progress.parse(f"Using seed: 1\n{tqdm_line(0, 5, 0)}\n{line}\n") == Prediction.Progress(0.4, 2, 5)


def test_cancel_stops_a_running_prediction(double: ReplicateDouble, client: replicate.Client) -> None:
    double.script("long", Fault.slow(5))
    prediction = flux(client, "long")
    poll(prediction, "processing")

    canceled = client.predictions.cancel(prediction.id)

    assert canceled.status == "canceled" and canceled.completed_at
    record = double.predictions[prediction.id]
    assert record.cancel_requested and record.statuses == ["starting", "processing", "canceled"]
    prediction.reload()
    assert prediction.status == "canceled" and prediction.output is None


def test_cancel_of_a_finished_prediction_returns_it_unchanged(client: replicate.Client) -> None:
    prediction = flux(client, wait=10)

    assert client.predictions.cancel(prediction.id).status == "succeeded"


def test_unknown_prediction_is_a_404(client: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as caught:
        client.predictions.get("doesnotexist0000000000000a")
    assert caught.value.status == 404


def test_list_pages_with_absolute_cursor_urls(double: ReplicateDouble, client: replicate.Client) -> None:
    double.list_page_size = 2
    created = [flux(client, f"picture {n}").id for n in range(5)]

    first = client.predictions.list()
    pages = [first]
    while pages[-1].next:
        assert pages[-1].next.startswith(f"{double.base_url}/v1/predictions?cursor=")
        pages.append(client.predictions.list(pages[-1].next))

    assert [len(p.results) for p in pages] == [2, 2, 1]
    assert [p.id for page in pages for p in page] == created[::-1]  # newest first, each once
    assert first.previous is None
    back = client.predictions.list(pages[1].previous)
    assert [p.id for p in back] == [p.id for p in first]


# ---- errors ------------------------------------------------------------------------------------------
def test_a_wrong_or_missing_token_is_a_401(double: ReplicateDouble) -> None:
    wrong = replicate.Client(api_token="r8_wrong", base_url=double.base_url)
    with pytest.raises(ReplicateError) as caught:
        flux(wrong)
    assert (caught.value.status, caught.value.title) == (401, "Unauthenticated")

    response = httpx.get(f"{double.base_url}/v1/predictions")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()) == {"title", "detail", "status"}
    assert double.predictions == {}


def test_unknown_model_is_a_404_and_unknown_version_a_422(client: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as model:
        client.models.predictions.create(model="acme/nope", input={"prompt": "x"})
    with pytest.raises(ReplicateError) as version:
        client.predictions.create(version="0" * 64, input={"prompt": "x"})

    assert model.value.status == 404
    assert (version.value.status, version.value.title) == (422, "Invalid version or not permitted")


def test_invalid_input_is_a_422_listing_each_field(double: ReplicateDouble, client: replicate.Client) -> None:
    bad = {"num_outputs": 5, "aspect_ratio": "7:3", "num_inference_steps": "4"}
    response = api(double, "POST", f"/v1/models/{FLUX_SCHNELL}/predictions", json={"input": bad})

    assert response.status_code == 422
    fields = {f["field"]: f for f in response.json()["invalid_fields"]}
    assert fields["input"]["description"] == "prompt is required"
    assert fields["input.num_outputs"]["description"] == "Must be less than or equal to 4"
    assert fields["input.aspect_ratio"]["type"] == "enum"
    assert fields["input.num_inference_steps"]["type"] == "invalid_type"
    with pytest.raises(ReplicateError) as caught:
        flux(client, input={"output_format": "gif"})
    assert (caught.value.status, caught.value.title) == (422, "Input validation failed")
    assert double.predictions == {}


@pytest.mark.parametrize("status", [401, 402, 404, 422, 429, 500, 502, 503])
def test_scripted_create_errors_reach_the_caller_once(
    double: ReplicateDouble, client: replicate.Client, status: int
) -> None:
    headers: list[httpx.Headers] = []
    hooked = replicate.Client(
        api_token=TOKEN,
        base_url=double.base_url,
        event_hooks={"response": [lambda r: headers.append(r.headers)]},
    )
    double.script("storm", Fault.http(status))

    with pytest.raises(ReplicateError) as caught:
        flux(hooked, "storm")

    assert caught.value.status == status and caught.value.detail
    assert headers[-1]["content-type"] == "application/problem+json"
    assert ("retry-after" in headers[-1]) == (status == 429)
    assert double.create_calls == 1 and double.predictions == {}  # POST is not retried; nothing made
    assert flux(client, "storm").status == "starting"  # the script is used up


def test_a_gateway_error_page_is_not_json(double: ReplicateDouble, client: replicate.Client) -> None:
    double.script(None, Fault.http(502, html=True))

    with pytest.raises(ReplicateError) as caught:
        flux(client)

    assert caught.value.status == 502 and caught.value.title is None


def test_create_rate_limit_then_success(double: ReplicateDouble, client: replicate.Client) -> None:
    double.create_limit_per_minute = 2
    flux(client)
    flux(client)

    response = api(double, "POST", f"/v1/models/{FLUX_SCHNELL}/predictions", json={"input": {"prompt": "x"}})
    assert response.status_code == 429
    body = response.json()
    assert body["detail"].startswith("Request was throttled. Your rate limit resets in ~")
    assert body["detail"] == f"Request was throttled. Your rate limit resets in ~{response.headers['Retry-After']}s."
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    with pytest.raises(ReplicateError) as caught:
        flux(client)
    assert caught.value.status == 429
    assert client.predictions.get(next(iter(double.predictions))).status  # other calls are not limited

    double.create_limit_per_minute = 600
    assert flux(client).status == "starting"
    assert len(double.predictions) == 3 and double.create_calls == 5


def test_burst_limit_frees_up_within_a_second(double: ReplicateDouble, client: replicate.Client) -> None:
    double.create_limit_per_second = 1
    flux(client)

    with pytest.raises(ReplicateError) as caught:
        flux(client)
    assert caught.value.status == 429

    deadline = time.monotonic() + 3
    while True:  # the caller's job: come back later
        try:
            flux(client)
            break
        except ReplicateError as exc:
            assert exc.status == 429 and time.monotonic() < deadline
            time.sleep(0.1)
    assert len(double.predictions) == 2


def test_retry_after_can_be_left_out(double: ReplicateDouble) -> None:
    double.create_limit_per_minute = 0
    double.send_retry_after = False

    response = api(double, "POST", f"/v1/models/{FLUX_SCHNELL}/predictions", json={"input": {"prompt": "x"}})

    assert response.status_code == 429 and "retry-after" not in response.headers


def test_other_calls_have_their_own_limit(double: ReplicateDouble) -> None:
    double.other_limit_per_minute = 2

    statuses = [api(double, "GET", "/v1/predictions").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


# ---- scripted prediction faults ------------------------------------------------------------------------
def test_a_hanging_create_times_out_but_the_prediction_runs(double: ReplicateDouble, client: replicate.Client) -> None:
    double.script("ambiguous", Fault.hang(30))  # cut short when the double stops

    # wait=1 gives the create a 1.5 s read timeout. Without wait, client 1.0.7 passes timeout=None
    # to httpx, which means no timeout at all: a hanging create would block forever.
    with pytest.raises(httpx.ReadTimeout):
        flux(client, "ambiguous", wait=1)

    [record] = double.predictions.values()
    double.wait_for_status(record.id, "succeeded")
    listed = client.predictions.list()  # how a caller can find it again
    assert [(p.id, p.input["prompt"]) for p in listed] == [(record.id, "ambiguous")]


def test_scripted_failure(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("oom", Fault.fail("CUDA out of memory", logs="Traceback (most recent call last):\n  ..."))

    prediction = flux(client, "oom", wait=10)

    assert prediction.status == "failed" and prediction.error == "CUDA out of memory"
    assert prediction.output is None and "Traceback" in prediction.logs


def test_provider_side_cancel(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("gone", Fault.cancel())

    prediction = flux(client, "gone", wait=10)

    assert prediction.status == "canceled" and prediction.started_at
    assert not double.predictions[prediction.id].cancel_requested


def test_aborted_prediction_is_a_status_the_client_cannot_parse(
    double: ReplicateDouble, client: replicate.Client
) -> None:
    double.script("queued", Fault.abort())
    prediction = flux(client, "queued")
    double.wait_for_status(prediction.id)

    with pytest.raises(ClientModelError):
        client.predictions.get(prediction.id)
    body = api(double, "GET", f"/v1/predictions/{prediction.id}").json()
    assert body["status"] == "aborted" and body["started_at"] is None


def test_cancel_after_aborts_a_queued_prediction_and_cancels_a_running_one(double: ReplicateDouble) -> None:
    def create(prompt: str, deadline: str) -> str:
        response = api(
            double,
            "POST",
            f"/v1/models/{FLUX_SCHNELL}/predictions",
            headers={"Cancel-After": deadline},
            json={"input": {"prompt": prompt}},
        )
        assert response.status_code == 201
        return response.json()["id"]

    double.script("queued", Fault.slow(3, starting=3))
    double.script("running", Fault.slow(3))
    queued, running = create("queued", "200ms"), create("running", "0.3")

    assert double.wait_for_status(queued).status == "aborted"
    record = double.wait_for_status(running)
    assert record.status == "canceled" and record.started_at and record.cancel_after == 0.3
    assert api(double, "POST", f"/v1/models/{FLUX_SCHNELL}/predictions", headers={"Cancel-After": "soon"},
               json={"input": {"prompt": "x"}}).status_code == 400  # fmt: skip


def test_slow_prediction(double: ReplicateDouble, client: replicate.Client) -> None:
    double.script("slow", Fault.slow(0.6))
    prediction = flux(client, "slow")

    double.wait_for_status(prediction.id, "processing")
    prediction.reload()
    assert prediction.status == "processing"
    poll(prediction)
    assert prediction.metrics["predict_time"] >= 0.6


def test_output_on_a_foreign_host(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("evil", Fault.foreign_host())

    prediction = flux(client, "evil", wait=10)

    assert prediction.status == "succeeded" and prediction.output == ["https://evil.example.com/x.webp"]


def test_output_over_plain_http_is_really_served(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("plain", Fault.insecure_url())

    prediction = flux(client, "plain", wait=10)

    url = prediction.output[0]
    assert url.startswith(f"http://{double.files_host}:")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (512, 512)


def test_output_that_is_not_an_image(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("garbage", Fault.corrupt_image())

    response = download(double, flux(client, "garbage", wait=10).output[0])

    assert response.headers["content-type"] == "image/webp"
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("declare_length", [True, False])
def test_output_larger_than_a_cap(client: replicate.Client, double: ReplicateDouble, declare_length: bool) -> None:
    double.script("huge", Fault.large_file(3_000_000, declare_length=declare_length))

    url = flux(client, "huge", wait=10).output[0]

    with httpx.stream("GET", url, verify=str(double.ca_file)) as response:
        assert response.headers.get("content-length") == ("3000000" if declare_length else None)
        assert sum(len(chunk) for chunk in response.iter_bytes()) == 3_000_000


def test_get_errors_500_reach_the_caller(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("flaky", Fault.get_errors(500, count=2))
    prediction = flux(client, "flaky")

    for _ in range(2):
        with pytest.raises(ReplicateError) as caught:
            client.predictions.get(prediction.id)
        assert caught.value.status == 500
    assert client.predictions.get(prediction.id).id == prediction.id


def test_get_errors_503_are_retried_by_the_client_itself(client: replicate.Client, double: ReplicateDouble) -> None:
    double.script("flaky", Fault.get_errors(503, count=3))
    prediction = flux(client, "flaky")

    assert client.predictions.get(prediction.id).id == prediction.id
    assert double.predictions[prediction.id].get_calls == 4


def test_scripts_match_by_predicate_and_count(client: replicate.Client, double: ReplicateDouble) -> None:
    script = double.script(lambda request: request.model == SDXL, Fault.http(500), times=2)

    assert flux(client).status == "starting"
    for _ in range(2):
        with pytest.raises(ReplicateError):
            client.predictions.create(version=SDXL_VERSION, input={"prompt": "x"})
    assert client.predictions.create(version=SDXL_VERSION, input={"prompt": "x"}).status == "starting"
    assert script.used_by == [None, None] and double.pending_scripts == []


def test_data_is_removed_after_expiry(client: replicate.Client, double: ReplicateDouble) -> None:
    prediction = flux(client, wait=10)
    url = prediction.output[0]

    double.expire(prediction.id)

    prediction.reload()
    assert prediction.output is None and prediction.dict().get("data_removed") is None  # dropped by the client
    assert api(double, "GET", f"/v1/predictions/{prediction.id}").json()["data_removed"] is True
    assert httpx.get(url, verify=str(double.ca_file)).status_code == 404


def test_data_is_removed_once_the_ttl_has_passed(client: replicate.Client, double: ReplicateDouble) -> None:
    double.file_ttl_seconds = 0

    prediction = flux(client, wait=10)

    assert prediction.status == "succeeded" and prediction.output is None and prediction.input == {}


def test_stream_url_serves_server_sent_events(client: replicate.Client) -> None:
    prediction = flux(client)

    events = list(prediction.stream())

    kinds = [event.event for event in events]
    assert kinds[-1] == ServerSentEvent.EventType.DONE
    assert ServerSentEvent.EventType.LOGS in kinds
    outputs = [event.data.url for event in events if event.event == ServerSentEvent.EventType.OUTPUT]
    prediction.reload()
    assert outputs == prediction.output


# ---- webhooks ------------------------------------------------------------------------------------------
def test_signing_matches_the_standard_webhooks_test_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'

    signature = sign(secret, msg_id, timestamp, body)

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    replicate.webhooks.validate(headers=headers, body=body, secret=WebhookSigningSecret(key=secret))


def test_webhooks_are_signed_and_carry_the_prediction(
    client: replicate.Client, double: ReplicateDouble, receiver: Receiver
) -> None:
    secret = secret_of(client)
    assert secret.key == double.webhook_secret and secret.key.startswith("whsec_")

    prediction = flux(client, webhook=f"{receiver.url}?job=42&attempt=1")
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert {r["path"] for r in receiver.received} == {"/hooks/replicate?job=42&attempt=1"}
    for request in receiver.received:
        replicate.webhooks.validate(headers=request["headers"], body=request["body"], secret=secret, tolerance=300)
        assert request["headers"]["webhook-id"].startswith("msg_")
    statuses = [status for status, _ in receiver.events()]
    assert statuses[0] == "processing" and statuses[-1] == "succeeded"
    final = json.loads(receiver.received[-1]["body"])
    assert final == double.prediction_json(prediction.id)  # the body is what GET returns
    events = [d.event for d in double.webhook_deliveries]
    assert events[0] == "start" and events[-1] == "completed" and "logs" in events
    assert all(d.status_code == 200 and d.attempt == 1 for d in double.webhook_deliveries)


def test_logs_webhooks_are_throttled(double: ReplicateDouble, client: replicate.Client, receiver: Receiver) -> None:
    double.webhook_min_interval = 10  # nothing but the first logs event fits in a 10 s window
    prediction = client.predictions.create(
        version=SDXL_VERSION,
        input={"width": 64, "height": 64, "num_inference_steps": 20},
        webhook=receiver.url,
    )
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert [d.event for d in double.webhook_deliveries] == ["start", "logs", "completed"]


def test_webhook_events_filter(client: replicate.Client, double: ReplicateDouble, receiver: Receiver) -> None:
    prediction = flux(client, webhook=receiver.url, webhook_events_filter=["completed"])
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert [(d.event, d.prediction_id, d.status_code) for d in double.webhook_deliveries] == [
        ("completed", prediction.id, 200)
    ]


def test_only_the_terminal_webhook_is_retried(
    client: replicate.Client, double: ReplicateDouble, receiver: Receiver
) -> None:
    receiver.answers = [500] * 50  # every non-terminal one fails; then the terminal one, 3 tries
    prediction = flux(client, webhook=receiver.url, webhook_events_filter=["start", "completed"])
    record = double.wait_until(lambda: (r := double.predictions[prediction.id]).webhooks_done and r)

    attempts = [(d.event, d.attempt) for d in double.webhook_deliveries]
    assert attempts == [("start", 1), ("completed", 1), ("completed", 2), ("completed", 3), ("completed", 4)]
    assert record.status == "succeeded"


def test_terminal_webhook_retries_stop_at_the_first_success(
    client: replicate.Client, double: ReplicateDouble, receiver: Receiver
) -> None:
    receiver.answers = [503, 502]
    prediction = flux(client, webhook=receiver.url, webhook_events_filter=["completed"])
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert [(d.attempt, d.status_code) for d in double.webhook_deliveries] == [(1, 503), (2, 502), (3, 200)]
    assert len({webhook_id for _, webhook_id in receiver.events()}) == 1  # one message, retried


def test_an_unreachable_receiver_is_retried_then_given_up(client: replicate.Client, double: ReplicateDouble) -> None:
    dead = Receiver()
    url = dead.url
    dead.server.shutdown()
    dead.server.server_close()

    prediction = flux(client, webhook=url, webhook_events_filter=["completed"])
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert [(d.attempt, d.status_code) for d in double.webhook_deliveries] == [(n, None) for n in (1, 2, 3, 4)]
    assert all(d.error for d in double.webhook_deliveries)


def test_a_hanging_receiver_blocks_neither_the_api_nor_the_prediction(
    client: replicate.Client, double: ReplicateDouble, receiver: Receiver
) -> None:
    receiver.open.clear()
    started = time.monotonic()

    prediction = flux(client, webhook=receiver.url)
    client.predictions.get(prediction.id)

    assert time.monotonic() - started < 1.5  # the receiver holds each webhook for 10 s
    assert double.wait_for_status(prediction.id).status == "succeeded"
    assert receiver.received == []
    receiver.open.set()


def test_dropped_webhooks(client: replicate.Client, double: ReplicateDouble, receiver: Receiver) -> None:
    double.script("silent", Fault.drop_webhooks())
    double.script("no end", Fault.drop_webhooks("completed"))

    silent = flux(client, "silent", webhook=receiver.url)
    no_end = flux(client, "no end", webhook=receiver.url)
    double.wait_until(lambda: all(r.webhooks_done for r in double.predictions.values()))

    assert [d for d in double.webhook_deliveries if d.prediction_id == silent.id] == []
    events = [d.event for d in double.webhook_deliveries if d.prediction_id == no_end.id]
    assert events[0] == "start" and "completed" not in events
    assert double.predictions[no_end.id].status == "succeeded"


def test_duplicated_terminal_webhook(client: replicate.Client, double: ReplicateDouble, receiver: Receiver) -> None:
    secret = secret_of(client)
    double.script("twice", Fault.duplicate_webhook("completed"))

    prediction = flux(client, "twice", webhook=receiver.url, webhook_events_filter=["completed"])
    double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)

    assert len(receiver.received) == 2
    assert receiver.received[0]["body"] == receiver.received[1]["body"]
    assert len({webhook_id for _, webhook_id in receiver.events()}) == 1
    for request in receiver.received:
        replicate.webhooks.validate(headers=request["headers"], body=request["body"], secret=secret, tolerance=300)


def test_forged_webhooks_fail_validation(client: replicate.Client, double: ReplicateDouble, receiver: Receiver) -> None:
    secret = secret_of(client)
    double.script("forged", Fault.forged_webhook("signature"))
    double.script("replayed", Fault.forged_webhook("timestamp"))

    for prompt in ("forged", "replayed"):
        prediction = flux(client, prompt, webhook=receiver.url, webhook_events_filter=["completed"])
        double.wait_until(lambda: double.predictions[prediction.id].webhooks_done)  # noqa: B023
    forged, replayed = receiver.received

    with pytest.raises(InvalidSignatureError):
        replicate.webhooks.validate(headers=forged["headers"], body=forged["body"], secret=secret, tolerance=300)
    with pytest.raises(InvalidTimestampError):
        replicate.webhooks.validate(headers=replayed["headers"], body=replayed["body"], secret=secret, tolerance=300)
    # Without a tolerance the replay passes: the trap docs/provider.md warns about.
    replicate.webhooks.validate(headers=replayed["headers"], body=replayed["body"], secret=secret)
    assert [d.forged for d in double.webhook_deliveries] == ["signature", "timestamp"]


def test_delayed_webhook(client: replicate.Client, double: ReplicateDouble, receiver: Receiver) -> None:
    double.script("late", Fault.delay_webhooks(0.4, "completed"))

    prediction = flux(client, "late", webhook=receiver.url, webhook_events_filter=["completed"])
    record = double.wait_for_status(prediction.id)
    double.wait_until(lambda: record.webhooks_done)

    [received] = receiver.received
    assert record.completed_at and received["at"] - record.completed_at >= 0.4


def test_webhook_urls_are_checked(double: ReplicateDouble, client: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as not_a_url:
        flux(client, webhook="not a url")
    with pytest.raises(ReplicateError) as bad_event:
        flux(client, webhook="https://example.com/hook", webhook_events_filter=["finished"])
    double.require_https_webhooks = True
    with pytest.raises(ReplicateError) as plain:
        flux(client, webhook="http://127.0.0.1:9/hook")

    assert [e.value.status for e in (not_a_url, bad_event, plain)] == [422, 422, 422]
    assert double.predictions == {}
