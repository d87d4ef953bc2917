"""Each job's cost (`cost` in its detail) and the stats' totals and means: the provider's charge
from the catalog price, and our AWS cost from the operations counted while the job ran, checked
against what the emulation really did (the execution's billed transitions, the S3 objects)."""

from __future__ import annotations

import pytest

from bench.cost import transitions_of
from local.replicate_double import Fault
from shared.aws import client
from shared.usage import prices
from tests.conftest import executions_of, stats_of, submit, unique_prompt, wait_for, wait_until_done
from tests.integration.test_replicate import FLUX, double, provider  # noqa: F401 (fixtures)


def billed_transitions(emulator, job_id: str) -> int:
    """The transitions Step Functions bills for the job's executions (as make cost counts them)."""

    def ended() -> list | None:
        executions = executions_of(emulator, job_id)
        return executions if executions and all(e["status"] != "RUNNING" for e in executions) else None

    total = 0
    for execution in wait_for(ended, what="the executions to end"):
        pages = (
            client("stepfunctions")
            .get_paginator("get_execution_history")
            .paginate(executionArn=execution["executionArn"])
        )
        total += transitions_of([event for page in pages for event in page["events"]])
    return total


def test_a_webhook_job_costs_its_provider_charge_and_its_counted_aws_operations(api, provider, emulator):  # noqa: F811
    provider("webhook")
    job_id = submit(api, unique_prompt("cost"), width=512, height=512, num_outputs=2)
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "completed", job
    cost = job["cost"]
    # flux-schnell is billed per output image.
    assert cost["provider"]["model"] == FLUX
    assert cost["provider"]["usd"] == pytest.approx(2 * 0.003)
    assert cost["provider"]["basis"] == "2 output(s) x $0.003 per output"
    assert cost["provider"]["price_as_of"]
    counted = cost["aws"]["counted"]
    assert counted["transitions"] == billed_transitions(emulator, job_id) == 1
    assert counted["s3_puts"] == 2  # the two copies in our bucket
    assert counted["sqs_requests"] == 3  # sent, received, deleted
    assert counted["api_requests"] == 1  # the submit (the client's own reads are not the job's)
    # The api, the dispatcher, the worker twice (Generate, finish), and webhook deliveries that wrote.
    assert counted["lambda_requests"] >= 4 and counted["lambda_gb_seconds"] > 0
    assert counted["write_units"] >= 10
    parts = cost["aws"]["parts"]
    table = prices()
    assert parts["step_functions"] == pytest.approx(table["stepfunctions_standard_transition"])
    assert parts["s3"] == pytest.approx(2 * table["s3_put_copy_post_list_request"])
    assert parts["dynamodb"] == pytest.approx(counted["write_units"] * table["dynamodb_write_request_unit"])
    assert cost["aws"]["usd"] == pytest.approx(sum(parts.values()))
    assert cost["aws"]["prices_as_of"] == table["as_of"]
    assert cost["total_usd"] == pytest.approx(cost["aws"]["usd"] + cost["provider"]["usd"])
    assert cost["currency"] == "USD"


def test_polls_after_a_lost_webhook_are_counted_as_the_workflow_bills_them(api, provider, double, emulator):  # noqa: F811
    provider("webhook", HEARTBEAT_SECONDS="2")
    prompt = unique_prompt("cost polls")
    double.script(prompt, Fault.slow(4), Fault.drop_webhooks())
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=30)
    assert job["status"] == "completed", job
    billed = billed_transitions(emulator, job_id)
    assert billed >= 3, "Generate, Collect and at least one poll"
    assert job["cost"]["aws"]["counted"]["transitions"] == billed


def test_a_failed_job_counts_its_failure_states(api, provider, double, emulator):  # noqa: F811
    provider("webhook", HEARTBEAT_SECONDS="30")
    prompt = unique_prompt("cost failed")
    double.script(prompt, Fault.fail("CUDA out of memory"))
    job_id = submit(api, prompt)
    job = wait_until_done(api, job_id, timeout=20)
    assert job["status"] == "failed", job
    assert job["cost"]["aws"]["counted"]["transitions"] == billed_transitions(emulator, job_id) == 3
    assert job["cost"]["provider"]["usd"] == 0  # per output, and there was none


def test_a_mock_job_has_no_provider_charge(api, emulator):
    job = wait_until_done(api, submit(api, unique_prompt("cost mock")))
    assert job["status"] == "completed", job
    assert job["cost"]["provider"] is None
    assert job["cost"]["total_usd"] == job["cost"]["aws"]["usd"] > 0
    assert job["cost"]["aws"]["counted"]["transitions"] == billed_transitions(emulator, job["job_id"]) == 1


def test_stats_total_and_average_the_callers_metrics_and_costs(api, provider, emulator, configure):  # noqa: F811
    """Over one key's jobs: totals are the sums of the jobs' own figures, means per job."""
    from shared import auth

    provider("webhook")
    configure(API_AUTH="keys")
    headers = {"Authorization": f"Bearer {auth.create_key(unique_prompt('owner').replace(' ', '-')).key}"}
    ids = []
    for _ in range(2):
        response = api.post("/api/v1/generate", json={"prompt": unique_prompt("cost stats")}, headers=headers)
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])

    def detail(job_id: str) -> dict:
        return api.get(f"/api/v1/jobs/{job_id}", headers=headers).json()

    wait_for(lambda: all(detail(i)["status"] == "completed" for i in ids), timeout=30, what="both jobs")
    jobs = [detail(i) for i in ids]
    stats = stats_of(api, emulator, headers=headers)
    assert stats["total_jobs"] == 2
    metrics = stats["metrics"]
    assert metrics["jobs"] == 2
    for name in ("queue_wait", "time_to_start", "predict", "output_copy", "total"):
        seconds = [j["metrics"][f"{name}_seconds"] for j in jobs]
        assert metrics["total_seconds"][name] == pytest.approx(sum(seconds), abs=0.002), name
        assert metrics["mean_seconds"][name] == pytest.approx(sum(seconds) / 2, abs=0.002), name
    cost = stats["cost"]  # the jobs' figures are each rounded to nano-dollars: hence abs=1e-8
    assert cost["jobs"] == 2
    assert cost["total_usd"]["provider"] == pytest.approx(sum(j["cost"]["provider"]["usd"] for j in jobs))
    assert cost["total_usd"]["aws"] == pytest.approx(sum(j["cost"]["aws"]["usd"] for j in jobs), abs=1e-8)
    assert cost["mean_usd"]["total"] == pytest.approx(sum(j["cost"]["total_usd"] for j in jobs) / 2, abs=1e-8)
    for part in ("step_functions", "lambda", "api_gateway", "dynamodb", "sqs", "s3"):
        assert cost["total_usd"]["aws_parts"][part] == pytest.approx(
            sum(j["cost"]["aws"]["parts"][part] for j in jobs), abs=1e-8
        ), part


def test_x_ray_counts_lambdas_fixed_sampling_for_active_functions_only() -> None:
    """Executions are sampled by the template's rule; an Active function's own invocations at
    Lambda's fixed 1/s + 5% (no rule applies to them); PassThrough functions start no trace."""
    from bench.cost import DEFAULT_SAMPLING, active_functions, sampled_share

    def template(mode: str) -> dict:
        function = {"FunctionName": "media-generation-dev-api", "TracingConfig": {"Mode": mode}}
        return {"Resources": {"Api": {"Type": "AWS::Lambda::Function", "Properties": function}}}

    assert active_functions(template("PassThrough")) == []
    assert active_functions(template("Active")) == ["api"]
    # 8 requests a job at a million jobs a month: ~3.1 a second, so the 1/s reservoir keeps ~1/3.
    share = sampled_share(8, DEFAULT_SAMPLING)
    assert 0.35 < share < 0.39
    assert sampled_share(1, {"reservoir": 0, "rate": 0.01}) == pytest.approx(0.01)


def test_the_meter_counts_dynamodb_units_from_item_sizes_indexes_and_transactions(emulator):
    """`make cost`'s DynamoDB sizer: 1 KB write units of the larger of the item before and after,
    doubled in a transaction; a KEYS_ONLY index entry written when it appears, moves or goes;
    4 KB read units, halved when eventually consistent."""
    from bench.cost import DynamoSizer
    from shared.job_store import CREATED_AT, STATUS
    from shared.settings import get_settings

    sizer, table = DynamoSizer(), get_settings().jobs_table_name
    dynamodb = client("dynamodb")

    def written(operation: str, **params) -> tuple[float, float]:
        touched = sizer.before(operation, params)
        getattr(dynamodb, {"PutItem": "put_item", "TransactWriteItems": "transact_write_items"}[operation])(**params)
        return sizer.write_units(touched)

    key = {"pk": {"S": unique_prompt("meter").replace(" ", "-")}}
    item = key | {"blob": {"S": "x" * 1500}}  # about 1.5 KB: 2 write units
    assert written("PutItem", TableName=table, Item=item) == (2, 0)
    into_index = {
        "Update": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #s = :s, #c = :c",
            "ExpressionAttributeNames": {"#s": STATUS, "#c": CREATED_AT},
            "ExpressionAttributeValues": {":s": {"S": "pending"}, ":c": {"S": "2026-12-07"}},
        }
    }
    assert written("TransactWriteItems", TransactItems=[into_index]) == (4, 1)  # x2; one entry added
    moved = dict(into_index["Update"], ExpressionAttributeValues={":s": {"S": "failed"}, ":c": {"S": "2026-12-07"}})
    assert written("TransactWriteItems", TransactItems=[{"Update": moved}]) == (4, 2)  # removed + added
    assert sizer.read_units("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}, {}) == 1
    assert sizer.read_units("GetItem", {"TableName": table, "Key": key}, {}) == 0.5
