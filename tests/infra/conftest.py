"""The synthesized templates, made once per test session (a CDK synth costs ~5 s and ~500 MB).

One App holds the stack of a development stage and of a production stage (what differs is what is
kept on delete), plus a tiny non-compliant canary stack that proves cdk-nag's rules really run.
Synthesized offline from the function source directories (`assets=source`): no bundle, no
network, no AWS account. Context is cdk.json's, so the tests check what `make synth` builds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")


def cdk_context(**overrides: Any) -> dict[str, Any]:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    # Findings as annotations we can read (with the flag on they only surface as a failed synth).
    context["@aws-cdk/core:annotationsInValidationReport"] = False
    return context | {"assets": "source"} | overrides


@dataclass
class Synthesized:
    stage: str
    stack: Any  # MediaGenerationStack
    template: Any  # aws_cdk.assertions.Template
    json: dict[str, Any]
    annotations: Any  # aws_cdk.assertions.Annotations

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == type_}

    def resource(self, type_: str) -> tuple[str, dict[str, Any]]:
        (found,) = self.resources(type_).items()
        return found

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)


@dataclass
class Synthesis:
    stages: dict[str, Synthesized]
    canary: Any  # annotations of the canary stack


@pytest.fixture(scope="session")
def synthesis() -> Synthesis:
    from aws_cdk import App, Aspects, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Annotations, Template
    from cdk_nag import AwsSolutionsChecks

    from infra.app import build
    from infra.config import Config

    app = App(context=cdk_context())
    stacks = {}
    for stage in STAGES:
        config = Config.from_context(
            lambda key, stage=stage: stage if key == "stage" else app.node.try_get_context(key)
        )
        stacks[stage] = build(app, config)
    canary = Stack(app, "NagCanary")
    s3.Bucket(canary, "PlainBucket")  # no SSL enforcement, no access logs: two findings
    Aspects.of(canary).add(AwsSolutionsChecks())

    synthesized = {}
    for stage, stack in stacks.items():
        template = Template.from_stack(stack)
        synthesized[stage] = Synthesized(stage, stack, template, template.to_json(), Annotations.from_stack(stack))
    return Synthesis(synthesized, Annotations.from_stack(canary))


@pytest.fixture(scope="session")
def dev(synthesis: Synthesis) -> Synthesized:
    return synthesis.stages["dev"]


@pytest.fixture(scope="session")
def prod(synthesis: Synthesis) -> Synthesized:
    return synthesis.stages["prod"]


@pytest.fixture(scope="session", params=STAGES)
def each_stage(request: pytest.FixtureRequest, synthesis: Synthesis) -> Synthesized:
    return synthesis.stages[request.param]
