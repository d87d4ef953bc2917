"""Deployment options from CDK context: defaults, `-c key=value` strings, and refusals."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from infra import spec
from infra.config import DEFAULTS, Config

from .conftest import ROOT


def context(**values):
    return lambda key: values.get(key)


def test_cdk_json_documents_every_option_with_its_default() -> None:
    options = {k: v for k, v in json.loads((ROOT / "cdk.json").read_text())["context"].items() if not k.startswith("@")}
    assert options == DEFAULTS


def test_command_line_strings_are_converted() -> None:
    config = Config.from_context(context(stage="prod", jobTimeout="900", productionStages="prod,staging"))
    assert config.stage == "prod" and config.production
    assert config.job_timeout == 900
    assert Config.from_context(context(stage="staging", productionStages="prod,staging")).production
    assert not Config.from_context(context(stage="dev")).production


def test_values_the_functions_would_refuse_fail_the_synth() -> None:
    with pytest.raises(ValidationError):
        Config.from_context(context(jobTimeout="0"))
    with pytest.raises(ValidationError):
        Config.from_context(context(presignedUrlTtl="10"))


@pytest.mark.parametrize(
    "values",
    [
        {"stage": "Prod"},
        {"stage": "a" * 21},
        {"logLevel": "LOUD"},
        {"assets": "docker"},
        {"webhookConcurrency": "-1"},
        {"tracing": "some"},
    ],
)
def test_bad_options_are_refused(values: dict) -> None:
    with pytest.raises(ValueError):
        Config.from_context(context(**values))


def test_log_retention_must_be_one_cloudwatch_accepts() -> None:
    from infra.constructs import log_retention

    assert log_retention(Config.from_context(context(logRetentionDays=90))).value == "THREE_MONTHS"
    with pytest.raises(ValueError, match="logRetentionDays"):
        log_retention(Config.from_context(context(logRetentionDays=31)))


def test_mock_generation_leaves_the_provider_secret_out() -> None:
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.app import build

    from .conftest import cdk_context

    app = App(context=cdk_context(mockGeneration="true", stage="demo"))
    config = Config.from_context(app.node.try_get_context)
    assert config.mock_generation is True
    template = Template.from_stack(build(app, config)).to_json()
    environments = [
        r["Properties"]["Environment"]["Variables"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and str(r["Properties"].get("FunctionName", "")).startswith("media-generation-demo-")
    ]
    assert len(environments) == len(spec.FUNCTIONS)
    assert not [env for env in environments if "REPLICATE_SECRET_ARN" in env]
    with pytest.raises(ValueError, match="true or false"):
        Config.from_context(context(mockGeneration="yes please"))


def test_options_for_an_open_stage_webhooks_unreserved_and_every_function_tracing() -> None:
    """`-c webhookConcurrency=0` deploys no reservation at all (0 reserved would stop the function);
    `-c tracing=all` puts every function in Active tracing mode."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.app import build

    from .conftest import cdk_context

    app = App(context=cdk_context(webhookConcurrency="0", tracing="all", stage="open"))
    template = Template.from_stack(build(app, Config.from_context(app.node.try_get_context))).to_json()
    types = {r["Type"] for r in template["Resources"].values()}
    assert "Custom::AWS" not in types
    assert "ReservedConcurrentExecutions" not in json.dumps(template)
    modes = [
        r["Properties"]["TracingConfig"]["Mode"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "media-generation-open-" in str(r["Properties"].get("FunctionName"))
    ]
    assert modes == ["Active"] * len(spec.FUNCTIONS)
