"""Generation on Replicate: the real `replicate` client against the test double (local/
replicate_double), through the whole pipeline on the emulation, in its three waiting modes
(sync, polling, webhook callback) and in every failure mode the provider has."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest
from PIL import Image

from local.replicate_double import SDXL_VERSION, Fault, ReplicateDouble, sign
from shared.aws import client
from tests.conftest import executions_of, stats_of, status_of, submit, unique_prompt, wait_for, wait_until_done

FLUX = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def double():
    with ReplicateDouble(
        starting_seconds=0.1, processing_seconds=0.8, webhook_min_interval=0.1, webhook_backoff=0.5
    ) as replicate:
        yield replicate


@pytest.fixture
def provider(emulator, double, configure):
    """Switch the emulation to Replicate (the double) in one of its waiting modes."""

    def use(mode: str = "poll", **settings: str) -> ReplicateDouble:
        env = {
            "REPLICATE_API_TOKEN": double.token,
            "REPLICATE_BASE_URL": double.base_url,
            "REPLICATE_OUTPUT_HOSTS": double.files_host,
            "SSL_CERT_FILE": str(double.ca_file),  # the double's file CDN uses its own CA
            "POLL_INTERVAL_SECONDS": "1",
            "HEARTBEAT_SECONDS": "4",
            "REPLICATE_SYNC_WAIT_SECONDS": "5" if mode == "sync" else "0",
            "WEBHOOK_BASE_URL": emulator.gateway.url if mode == "webhook" else "",
        }
        configure(**(env | settings))
        return double

    return use


def predictions_for(double: ReplicateDouble, prompt: str) -> list:
    return [p for p in double.predictions.values() if p.input.get("prompt") == prompt]


def entered_states(emulator, job_id: str) -> list[str]:
    """The states the job's (one) execution entered, once it ended."""

    def ended() -> dict | None:
        executions = executions_of(emulator, job_id)
        return executions[0] if executions and executions[0]["status"] != "RUNNING" else None

    execution = wait_for(ended, what=f"the execution of {job_id} to end")
    history = client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def download(url: str) -> Image.Image:
    response = httpx.get(url)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# ---- the three ways of waiting -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "poll", "webhook"])
def test_the_default_model_completes_with_images_in_our_storage(api, provider, emulator, mode):
    double = provider(mode)
    prompt = unique_prompt(f"flux {mode}")
    job_id = submit(api, prompt, width=512, height=512, num_outputs=2)

    job = wait_until_done(api, job_id, timeout=20)

    assert job["status"] == "completed", job
    assert job["model"] == FLUX
    [prediction] = predictions_for(double, prompt)
    assert job["prediction_id"] == prediction.id
    assert prediction.input["aspect_ratio"] == "1:1" and prediction.input["megapixels"] == "0.25"
    assert [(o["content_type"], o["width"], o["height"]) for o in job["outputs"]] == [("image/webp", 512, 512)] * 2
    for output in job["outputs"]:
        assert output["url"].startswith(emulator.endpoint), "served from our S3, not the provider's CDN"
        image = download(output["url"])
        assert (image.format, image.size) == ("WEBP", (512, 512))
    key = f"outputs/{job_id}/1/0.webp"
    head = client("s3").head_object(Bucket=emulator.resources.bucket, Key=key)
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"]["model"] == FLUX
    assert head["Metadata"]["prediction_id"] == prediction.id
    assert head["Metadata"]["seed"] == str(prediction.input["seed"])
    assert float(head["Metadata"]["predict_time"]) > 0
    assert all("authorization" not in r.headers for r in double.file_requests), "our token never goes to the CDN"
    # One state transition in every mode: with webhooks the worker finishes what Generate started.
    assert entered_states(emulator, job_id) == ["Generate"]

    if mode == "sync":
        assert prediction.headers["prefer"] == "wait=5"
        assert not prediction.webhook
    if mode == "poll":
        assert prediction.get_calls >= 1 and not prediction.webhook
    if mode == "webhook":
        assert prediction.webhook.startswith(f"{emulator.gateway.url}/api/v1/webhooks/replicate?")
        completed = [
            d for d in double.webhook_deliveries if d.prediction_id == prediction.id and d.event == "completed"
        ]
        assert [d.status_code for d in completed] == [200]
        assert prediction.get_calls == 0, "no polling while a webhook is expected, none to finish"


def test_progress_from_webhook_logs_rises_while_a_client_polls(api, provider, double):
    provider("webhook")
    prompt = unique_prompt("progress")
    double.script(prompt, Fault.slow(2.5))
    job_id = submit(api, prompt)
    seen = []

    def finished() -> bool:
        status = status_of(api, job_id)
        seen.append(status["progress"])
        return status["status"] == "completed"

    wait_for(finished, timeout=20, interval=0.1, what="completion")
    assert seen == sorted(seen)
    assert len({p for p in seen if 5 < p < 90}) >= 2, seen


def test_sdxl_runs_by_version_with_the_old_parameters_mapped(api, provider, double):
    provider("poll")
    prompt = unique_prompt("sdxl")
    body = {
        "prompt": prompt,
        "model": "stability-ai/sdxl",
        "parameters": {
            "width": 768,
            "height": 512,
            "num_inference_steps": 20,
            "guidance_scale": 7.5,
            "negative_prompt": "blurry",
            "seed": 1234,
        },
    }
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 202, response.text
    job = wait_until_done(api, response.json()["job_id"])
    assert job["status"] == "completed", job
    [prediction] = predictions_for(double, prompt)
    assert prediction.route == "version" and prediction.version == SDXL_VERSION
    assert {k: prediction.body["input"][k] for k in body["parameters"]} == body["parameters"]
    assert [(o["content_type"], o["width"], o["height"]) for o in job["outputs"]] == [("image/png", 768, 512)]
    # SDXL is billed by its GPU's time: the prediction's predict time x the price per second.
    seconds = job["metrics"]["predict_seconds"]
    assert seconds and seconds > 0
    provider_cost = job["cost"]["provider"]
    assert provider_cost["usd"] == pytest.approx(seconds * 0.000975)
    assert provider_cost["basis"] == f"{seconds} s of predict time x $0.000975 per second"


def test_a_failed_prediction_on_a_per_second_model_still_shows_what_it_cost(api, provider, double):
    """Replicate bills the time a failed prediction ran: the job's cost is that, not unknown."""
    provider("poll")
    prompt = unique_prompt("sdxl-fails")
    double.script(prompt, Fault.fail("CUDA out of memory"))
    response = api.post("/api/v1/generate", json={"prompt": prompt, "model": "stability-ai/sdxl"})
    job = wait_until_done(api, response.json()["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "GENERATION_FAILED", job
    seconds = job["metrics"]["predict_seconds"]
    assert seconds and seconds > 0
    assert job["cost"]["provider"]["usd"] == pytest.approx(seconds * 0.000975)
    assert job["cost"]["total_usd"] == pytest.approx(job["cost"]["aws"]["usd"] + job["cost"]["provider"]["usd"])


# ---- validation per model --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "model": "acme/unknown"}, "model"),
        ({"prompt": "x", "model": FLUX, "parameters": {"guidance_scale": 7.5}}, "parameters.guidance_scale"),
        ({"prompt": "x", "model": FLUX, "parameters": {"negative_prompt": "ugly"}}, "parameters.negative_prompt"),
        ({"prompt": "x", "model": FLUX, "parameters": {"num_inference_steps": 20}}, "parameters.num_inference_steps"),
        ({"prompt": "x", "parameters": {"width": 1000, "height": 304}}, "parameters.width"),
        (
            {"prompt": "x", "model": "stability-ai/sdxl", "parameters": {"guidance_scale": 0}},
            "parameters.guidance_scale",
        ),
        ({"prompt": "x", "model": "stability-ai/sdxl", "parameters": {"width": 2048}}, "parameters.width"),
    ],
)
def test_parameters_are_validated_for_the_model_that_runs_the_job(api, provider, double, emulator, body, field):
    provider("poll")
    before = stats_of(api, emulator)["total_jobs"]
    creates = double.create_calls
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in error["errors"]] == [field]
    assert stats_of(api, emulator)["total_jobs"] == before, "nothing stored"
    assert double.create_calls == creates


def test_the_models_route_lists_the_allowlist(api, provider):
    provider("poll", DEFAULT_MODEL="stability-ai/sdxl")
    listing = api.get("/api/v1/models").json()
    assert listing["default"] == "stability-ai/sdxl"
    assert {m["name"] for m in listing["models"]} == {FLUX, "stability-ai/sdxl"}


def test_default_model_setting_picks_the_model(api, provider, double):
    provider("sync", DEFAULT_MODEL="stability-ai/sdxl")
    prompt = unique_prompt("default sdxl")
    # The old service's example body, verbatim: SDXL accepts all of it.
    body = {
        "prompt": prompt,
        "parameters": {"width": 512, "height": 512, "num_inference_steps": 20, "guidance_scale": 7.5},
    }
    response = api.post("/api/v1/generate", json=body)
    assert response.status_code == 202, response.text
    job = wait_until_done(api, response.json()["job_id"])
    assert (job["status"], job["model"]) == ("completed", "stability-ai/sdxl")
    assert predictions_for(double, prompt)[0].version == SDXL_VERSION


def test_the_old_services_example_runs_on_the_default_model_with_its_adjustments_shown(api, provider, double):
    provider("sync")
    prompt = unique_prompt("old example")
    parameters = {"width": 512, "height": 512, "num_inference_steps": 50, "guidance_scale": 7.5}
    response = api.post("/api/v1/generate", json={"prompt": prompt, "parameters": parameters})
    assert response.status_code == 202, response.text
    job = wait_until_done(api, response.json()["job_id"])
    assert (job["status"], job["model"]) == ("completed", FLUX), job
    assert parameters.items() <= job["request"]["parameters"].items()  # what the client sent, unchanged
    assert job["adjustments"] == [
        {
            "field": "parameters.guidance_scale",
            "requested": 7.5,
            "applied": None,
            "reason": f"not supported by {FLUX}",
        },
        {
            "field": "parameters.num_inference_steps",
            "requested": 50,
            "applied": 4,
            "reason": f"{FLUX} takes 1 to 4 steps",
        },
    ]
    [prediction] = predictions_for(double, prompt)
    assert prediction.body["input"]["num_inference_steps"] == 4
    assert "guidance_scale" not in prediction.body["input"] and prediction.body["input"]["aspect_ratio"] == "1:1"


# ---- transient failures: retried, one prediction in the end ----------------------------------
def test_a_429_on_create_is_waited_out_then_succeeds(api, provider, double):
    provider("poll")
    prompt = unique_prompt("throttled")
    double.script(prompt, Fault.http(429, retry_after=1))
    job = wait_until_done(api, submit(api, prompt))
    assert job["status"] == "completed", job
    assert len(predictions_for(double, prompt)) == 1
    throttled = [r for r in double.requests if r.method == "POST" and r.status == 429]
    assert throttled


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_create_is_retried_without_a_second_prediction(api, provider, double, status):
    provider("poll")
    prompt = unique_prompt(f"create {status}")
    double.script(prompt, Fault.http(status))
    job = wait_until_done(api, submit(api, prompt), timeout=30)
    assert job["status"] == "completed", job
    assert len(predictions_for(double, prompt)) == 1


def test_an_ambiguous_create_finds_its_prediction_instead_of_making_another(api, provider, double):
    # The create's answer comes after the client's read timeout (sync wait 1 s + 0.5 s), but the
    # prediction exists and runs: the worker must find it, not create a second, billed one.
    provider("sync", REPLICATE_SYNC_WAIT_SECONDS="1")
    prompt = unique_prompt("ambiguous")
    double.script(prompt, Fault.hang(4))
    job = wait_until_done(api, submit(api, prompt), timeout=30)
    assert job["status"] == "completed", job
    [prediction] = predictions_for(double, prompt)
    assert job["prediction_id"] == prediction.id
    assert not prediction.cancel_requested


def test_a_create_that_hangs_without_sync_wait_times_out_and_is_found(api, provider, double):
    # Without `wait` the client would disable its timeouts; ours must still apply.
    provider("poll", REPLICATE_TIMEOUT_SECONDS="1.5")
    prompt = unique_prompt("hang no wait")
    double.script(prompt, Fault.hang(4))
    job = wait_until_done(api, submit(api, prompt), timeout=30)
    assert job["status"] == "completed", job
    assert len(predictions_for(double, prompt)) == 1


def test_errors_while_polling_are_retried(api, provider, double):
    provider("poll")
    prompt = unique_prompt("flaky get")
    double.script(prompt, Fault.slow(1.5), Fault.get_errors(500, count=2))
    job = wait_until_done(api, submit(api, prompt), timeout=30)
    assert job["status"] == "completed", job


# ---- permanent failures: the job fails at once, with a stable code -----------------------------
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.http(401), "PROVIDER_AUTH"),
        (Fault.http(402, detail="You have insufficient credit"), "PROVIDER_BILLING"),
        (Fault.http(404), "MODEL_NOT_FOUND"),
        (Fault.http(422, detail="Input validation failed"), "INVALID_INPUT"),
        (Fault.fail("CUDA out of memory\nTraceback (most recent call last): ..."), "GENERATION_FAILED"),
        (Fault.foreign_host(), "INVALID_OUTPUT"),
        (Fault.insecure_url(), "INVALID_OUTPUT"),
        (Fault.corrupt_image(), "INVALID_OUTPUT"),
        (Fault.large_file(600_000), "INVALID_OUTPUT"),
        (Fault.large_file(600_000, declare_length=False), "INVALID_OUTPUT"),
    ],
    ids=["401", "402", "404", "422", "failed", "foreign-host", "http-url", "corrupt", "too-big", "too-big-chunked"],
)
def test_permanent_failures_fail_the_job_with_their_code(api, provider, double, emulator, fault, code):
    provider("poll", MAX_OUTPUT_BYTES="500000")
    prompt = unique_prompt(code.lower())
    double.script(prompt, fault)
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == code
    assert "Traceback" not in job["error"]["message"] and double.token not in json.dumps(job)
    assert job["outputs"] == []
    predictions = predictions_for(double, prompt)
    assert len(predictions) <= 1, "a permanent error is not retried"
    if code == "INVALID_OUTPUT" and fault.mode in ("foreign", "http"):
        assert not [r for r in double.file_requests if r.prediction_id == predictions[0].id], "never fetched"
    listed = client("s3").list_objects_v2(Bucket=emulator.resources.bucket, Prefix=f"outputs/{job_id}/")
    assert listed.get("KeyCount", 0) == 0


def test_a_prediction_cancelled_on_the_provider_ends_the_job_cancelled(api, provider, double):
    provider("webhook")
    prompt = unique_prompt("provider cancel")
    double.script(prompt, Fault.cancel())
    job = wait_until_done(api, submit(api, prompt), timeout=20)
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "PROVIDER_CANCELLED"


def test_an_aborted_prediction_is_read_despite_the_clients_parser(api, provider, double):
    provider("poll")
    prompt = unique_prompt("aborted")
    double.script(prompt, Fault.abort())
    job = wait_until_done(api, submit(api, prompt), timeout=20)
    assert (job["status"], job["error"]["code"]) == ("cancelled", "PROVIDER_CANCELLED")


# ---- cancel and deadline reach the provider ----------------------------------------------------
@pytest.mark.parametrize("mode", ["poll", "webhook"])
def test_cancelling_a_processing_job_cancels_its_prediction(api, provider, double, mode):
    provider(mode)
    prompt = unique_prompt(f"cancel {mode}")
    double.script(prompt, Fault.slow(8))
    job_id = submit(api, prompt)
    wait_for(lambda: predictions_for(double, prompt) and status_of(api, job_id)["status"] == "processing")
    [prediction] = predictions_for(double, prompt)
    double.wait_for_status(prediction.id, "processing")

    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200

    double.wait_for_status(prediction.id, "canceled", timeout=10)
    assert prediction.cancel_requested
    time.sleep(1)
    assert status_of(api, job_id)["status"] == "cancelled"


@pytest.mark.parametrize("mode", ["poll", "webhook"])
def test_the_deadline_fails_the_job_and_cancels_its_prediction(api, provider, double, mode):
    provider(mode, JOB_TIMEOUT="4", HEARTBEAT_SECONDS="2")
    prompt = unique_prompt(f"deadline {mode}")
    double.script(prompt, Fault.slow(30))
    job = wait_until_done(api, submit(api, prompt), timeout=20)
    assert job["status"] == "failed"
    assert job["error"] == {"code": "JOB_TIMEOUT", "message": "The job did not finish within 4 seconds"}
    [prediction] = predictions_for(double, prompt)
    double.wait_for_status(prediction.id, "canceled", timeout=10)


# ---- webhooks: signed, idempotent, and never the only way ------------------------------------
def test_a_lost_webhook_falls_back_to_polling(api, provider, double):
    provider("webhook", HEARTBEAT_SECONDS="2")
    prompt = unique_prompt("lost webhooks")
    double.script(prompt, Fault.drop_webhooks())
    job = wait_until_done(api, submit(api, prompt), timeout=20)
    assert job["status"] == "completed", job
    [prediction] = predictions_for(double, prompt)
    assert prediction.get_calls >= 1


def test_a_duplicate_completed_webhook_is_harmless(api, provider, double, emulator):
    provider("webhook")
    prompt = unique_prompt("duplicate webhook")
    double.script(prompt, Fault.duplicate_webhook("completed"))
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id)
    assert job["status"] == "completed"
    [prediction] = predictions_for(double, prompt)

    def completed_deliveries(deliveries: list) -> list:
        return [d for d in deliveries if d.prediction_id == prediction.id and d.event == "completed"]

    completed = completed_deliveries(double.wait_for_webhooks(lambda ds: len(completed_deliveries(ds)) >= 2))
    assert len(completed) == 2 and {d.status_code for d in completed} == {200}
    assert len(job["outputs"]) == 1 and len(job["attempts"]) == 1
    assert [e["status"] for e in executions_of(emulator, job_id)] == ["SUCCEEDED"]


def test_a_lost_hand_over_to_the_worker_falls_back_to_collect(api, provider, double, emulator, monkeypatch):
    """The completed webhook cannot invoke the worker: nothing is lost, the heartbeat lapses and
    Collect polls, copies and completes (two transitions instead of one)."""
    import shared.webhooks

    def unavailable(task: dict) -> None:
        raise RuntimeError("Lambda unavailable")

    monkeypatch.setattr(shared.webhooks, "hand_to_worker", unavailable)
    provider("webhook", HEARTBEAT_SECONDS="2")
    job_id = submit(api, unique_prompt("lost hand-over"))
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "completed", job
    assert entered_states(emulator, job_id) == ["Generate", "Collect"]


def test_a_crashed_finish_is_tried_again_by_lambda(api, provider, double, emulator, monkeypatch):
    """The worker's asynchronous invoke crashes before it can tell the workflow: Lambda's own
    retry of the event finishes the job, still in one transition."""
    from shared.attempt import Attempt

    real_finish, calls = Attempt.finish, []

    def crash_once(self):
        calls.append(self.task.job_id)
        if len(calls) == 1:
            raise RuntimeError("worker crashed")
        return real_finish(self)

    monkeypatch.setattr(Attempt, "finish", crash_once)
    provider("webhook", HEARTBEAT_SECONDS="30")
    job_id = submit(api, unique_prompt("crashed finish"))
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "completed", job
    assert calls == [job_id, job_id]
    assert entered_states(emulator, job_id) == ["Generate"]


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.fail("CUDA out of memory"), "GENERATION_FAILED"), (Fault.corrupt_image(), "INVALID_OUTPUT")],
    ids=["failed", "corrupt"],
)
def test_a_failure_while_finishing_is_recorded_by_the_workflow(api, provider, double, emulator, fault, code):
    provider("webhook", HEARTBEAT_SECONDS="30")
    prompt = unique_prompt(f"finish {code.lower()}")
    double.script(prompt, fault)
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=20)
    assert (job["status"], job["error"]["code"]) == ("failed", code), job
    assert entered_states(emulator, job_id) == ["Generate", "RecordFailure", "JobFailed"]


def test_a_transient_error_while_finishing_is_retried_by_the_workflow(api, provider, double, emulator, monkeypatch):
    """Storing the first copy fails (S3 unavailable): the Generate state's Retry runs it again,
    which finds the prediction done and finishes."""
    import shared.output_files
    from shared.errors import TransientError

    real_put, failures = shared.output_files.put_output, []

    def unavailable_once(key, *args, **kwargs):
        if not failures and key.startswith(f"outputs/{job_id}/"):
            failures.append(key)
            raise TransientError("storage unavailable")
        return real_put(key, *args, **kwargs)

    monkeypatch.setattr(shared.output_files, "put_output", unavailable_once)
    provider("webhook", HEARTBEAT_SECONDS="30")
    prompt = unique_prompt("finish transient")
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "completed", job
    assert failures, "the first copy failed"
    assert entered_states(emulator, job_id) == ["Generate"]
    [execution] = executions_of(emulator, job_id)
    history = client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    assert len([e for e in history if e["type"] == "TaskFailed"]) == 1, "the Generate state's retry"


@pytest.mark.parametrize("how", ["signature", "timestamp"])
def test_forged_or_stale_webhooks_are_rejected_and_change_nothing(api, provider, double, how):
    provider("webhook", HEARTBEAT_SECONDS="2")
    prompt = unique_prompt(f"forged {how}")
    double.script(prompt, Fault.forged_webhook(how))
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=20)
    [prediction] = predictions_for(double, prompt)
    forged = [d for d in double.webhook_deliveries if d.prediction_id == prediction.id]
    assert forged and {d.status_code for d in forged} == {401}
    # The job still completes: the workflow stopped waiting for webhooks and polled.
    assert job["status"] == "completed"


def test_webhook_authentication_at_the_api(api, provider, double, emulator):
    provider("webhook")
    with emulator.dispatch_paused():
        job_id = submit(api)
        url = f"/api/v1/webhooks/replicate?job_id={job_id}&attempt=1&nonce=guess"
        body = json.dumps({"id": "p1", "status": "succeeded", "output": ["https://evil.example.com/x.png"]})
        now = int(time.time())

        def signed(secret: str, timestamp: int) -> dict[str, str]:
            signature = sign(secret, "msg_1", timestamp, body)
            return {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp), "webhook-signature": signature}

        good = signed(double.webhook_secret, now)
        cases = {
            "unsigned": {},
            "wrong secret": signed("whsec_" + "A" * 32, now),
            "stale": signed(double.webhook_secret, now - 600),
            "tampered": good | {"webhook-signature": good["webhook-signature"][:-4] + "AAA="},
        }
        for name, headers in cases.items():
            response = api.post(url, content=body, headers=headers | {"content-type": "application/json"})
            assert response.status_code == 401, name
            assert response.json()["code"] == "INVALID_SIGNATURE"
        # Correctly signed but for a nonce that is not the job's: accepted and ignored.
        response = api.post(url, content=body, headers=good | {"content-type": "application/json"})
        assert response.status_code == 200 and response.json() == {"outcome": "stale attempt"}
        api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert api.get(f"/api/v1/jobs/{job_id}").json()["prediction_id"] is None


# ---- load and secrets -----------------------------------------------------------------------
def test_a_burst_against_a_tight_create_rate_limit_all_completes(api, provider, double):
    provider("poll")
    double.create_limit_per_second = 2
    try:
        prompts = [unique_prompt("burst") for _ in range(8)]
        ids = [submit(api, prompt, width=512, height=512) for prompt in prompts]
        for job_id in ids:
            assert wait_until_done(api, job_id, timeout=60)["status"] == "completed"
    finally:
        double.create_limit_per_second = None
    assert any(r.status == 429 for r in double.requests if r.method == "POST")
    assert all(len(predictions_for(double, p)) == 1 for p in prompts)


def test_the_token_comes_from_secrets_manager_when_deployed(api, provider, double, emulator):
    arn = client("secretsmanager").create_secret(
        Name="media-generation/replicate-test",
        SecretString=json.dumps({"api_token": double.token, "webhook_secret": double.webhook_secret}),
    )["ARN"]
    provider("webhook", REPLICATE_API_TOKEN="", REPLICATE_SECRET_ARN=arn)
    assert api.get("/health").json()["mode"] == "replicate"
    job = wait_until_done(api, submit(api))
    assert job["status"] == "completed", job


def test_secrets_never_appear_in_logs_errors_or_responses(api, provider, double, capfd, caplog):
    provider("webhook")
    bodies = []
    ok = submit(api)
    bodies.append(json.dumps(wait_until_done(api, ok)))
    prompt = unique_prompt("bad token")
    double.script(prompt, Fault.http(401))
    failed = submit(api, prompt)
    bodies.append(json.dumps(wait_until_done(api, failed)))
    bodies.append(api.get("/api/v1/jobs", params={"limit": 50}).text)
    bodies.append(api.post("/api/v1/webhooks/replicate?job_id=x&attempt=1&nonce=y", content="{}").text)
    out, err = capfd.readouterr()
    everything = "\n".join([*bodies, out, err, caplog.text])
    assert double.token not in everything
    assert double.webhook_secret not in everything
    assert double.webhook_secret.removeprefix("whsec_") not in everything


def test_collect_starts_a_job_that_generate_never_started(api, provider, double, emulator):
    # Generate's wait ended before its Lambda ran at all (throttled, say): Collect takes over.
    from local.invoke import seed_sample_job
    from shared.errors import PredictionRunning
    from shared.job_store import store
    from shared.models import to_iso, utcnow
    from tests.conftest import load_event

    provider("poll")
    job_id = unique_prompt("collect").split()[-1] + "-job"
    seed_sample_job(job_id)
    event = load_event("worker/collect.json", job_id) | {"execution_started_at": to_iso(utcnow())}
    with pytest.raises(PredictionRunning):
        emulator.runtime.invoke("worker", event)
    job = store().get(job_id)
    assert job.status == "processing" and job.prediction_id in double.predictions


def test_with_webhooks_the_create_call_does_not_wait_for_the_prediction(api, provider, double):
    """The workflow waits for a webhook at no cost; a sync wait would bill the worker for it."""
    provider("webhook", REPLICATE_SYNC_WAIT_SECONDS="5")
    prompt = unique_prompt("no sync wait")
    seen: list[dict] = []
    double.script(lambda request: request.prompt == prompt and seen.append(dict(request.headers)) and False)
    try:
        job = wait_until_done(api, submit(api, prompt), timeout=20)
    finally:
        double.clear_scripts()
    assert job["status"] == "completed", job
    assert len(seen) == 1 and "prefer" not in seen[0], seen


def test_the_first_try_marks_its_create_in_the_start_write(api, provider, double):
    """The mark that a create is being sent rides on the write that starts the job (one paid write
    fewer), and a first try never searches the provider for an earlier create. The ended job sheds
    the mark (and the rest of the running attempt's bookkeeping): its last writes pay for fewer bytes."""
    from shared.job_store import store

    provider("webhook")
    prompt = unique_prompt("create mark")
    writes: list[tuple[str, dict]] = []
    dynamodb = client("dynamodb")

    def record(params, model, **_):
        writes.append((model.name, params))

    before = len(double.requests)
    dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    try:
        job_id = submit(api, prompt)
        job = wait_until_done(api, job_id, timeout=20)
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", record)
    assert job["status"] == "completed", job
    [start] = [
        p["Item"]
        for name, p in writes
        if name == "PutItem" and p["Item"]["pk"]["S"] == job_id and p["Item"]["status"]["S"] == "processing"
    ]
    assert start["prediction_requested_at"] == start["started_at"]
    job_updates = [p for name, p in writes if name == "UpdateItem" and p["Key"]["pk"]["S"] == job_id]
    assert not [w for w in job_updates if "prediction_requested_at" in json.dumps(w)], job_updates
    assert not [r for r in double.requests[before:] if r.method == "GET" and r.path == "/v1/predictions"]
    stored = store().get(job_id)
    assert stored.prediction_requested_at is stored.webhook_nonce is stored.task_token is None


def test_routine_webhook_deliveries_write_no_info_line(api, provider, double, caplog):
    """Progress and the completion arrive as several deliveries per job: at INFO, one log line each
    would be most of the logs' cost, so only unusual outcomes are logged at that level."""
    provider("webhook")
    prompt = unique_prompt("quiet webhooks")
    caplog.set_level(logging.INFO)
    job = wait_until_done(api, submit(api, prompt), timeout=20)
    assert job["status"] == "completed", job
    [prediction] = predictions_for(double, prompt)
    assert len([d for d in double.webhook_deliveries if d.prediction_id == prediction.id]) >= 2
    delivered = [r for r in caplog.records if r.getMessage() == "Webhook delivered" and r.levelno >= logging.INFO]
    assert delivered == [], [r.__dict__.get("outcome") for r in delivered]


def test_a_late_worker_of_an_old_attempt_never_cancels_the_new_attempts_prediction(api, provider, double):
    # Given a job cancelled while its first prediction ran, then retried: attempt 2 has its own
    from shared.attempt import Attempt, AttemptTask
    from shared.models import utcnow

    provider("poll")
    prompt = unique_prompt("late worker")
    double.script(prompt, Fault.slow(8))
    job_id = submit(api, prompt)
    wait_for(lambda: predictions_for(double, prompt) and status_of(api, job_id)["status"] == "processing")
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert api.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    wait_for(lambda: len(predictions_for(double, prompt)) == 2, what="attempt 2's prediction")
    first, second = predictions_for(double, prompt)  # in creation order
    double.wait_for_status(first.id, "canceled", timeout=10)  # by the cancel, as ever

    # When attempt 1's worker finds, late, that the job changed under it
    task = AttemptTask(job_id=job_id, attempt=1, execution_started_at=utcnow(), job_timeout_seconds=60)
    assert Attempt(task, lambda: 30.0)._stopped()["status"] == "processing"

    # Then attempt 2's prediction runs on, and so does the job
    assert wait_until_done(api, job_id, timeout=30)["status"] == "completed"
    assert not second.cancel_requested
