"""The workflow in the template is the ASL file, inlined, with every placeholder substituted with
the values of infra/spec.py, and its role may invoke exactly the functions the definition names."""

from __future__ import annotations

import json

from infra import spec
from infra.config import Config

from .conftest import Synthesized
from .test_resources import function
from .workflow_helpers import placeholder_paths, render, rendered_substitutions


def test_definition_is_the_asl_file_inlined(each_stage: Synthesized) -> None:
    _, machine = each_stage.resource("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert "DefinitionS3Location" not in props  # from_file would upload it: templates could not see it
    assert props["DefinitionString"] == spec.WORKFLOW.definition.read_text()


def test_every_placeholder_is_substituted(each_stage: Synthesized) -> None:
    _, machine = each_stage.resource("AWS::StepFunctions::StateMachine")
    definition = machine["Properties"]["DefinitionString"]
    assert spec.placeholders(definition)  # a file without placeholders would make this test vacuous
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == spec.placeholders(definition)
    rendered = render(definition, rendered_substitutions(machine))
    assert "${" not in rendered
    json.loads(rendered)  # valid JSON once substituted (numbers where numbers belong)


def test_substitutions_are_the_specs(dev: Synthesized) -> None:
    """The values are spec.workflow_substitutions(...) for the deployed settings, with the ARNs of
    the template's own functions: nothing is duplicated or hand-written in the CDK app."""
    _, machine = dev.resource("AWS::StepFunctions::StateMachine")
    arns = {name: f"<GetAtt:{function(dev, name)[0]}.Arn>" for name in spec.FUNCTIONS}
    settings = Config.from_context(dev.stack.node.try_get_context).workflow_settings()
    assert rendered_substitutions(machine) == spec.workflow_substitutions(arns, settings)
    assert settings.job_timeout_seconds == dev.stack.node.try_get_context("jobTimeout")


def test_role_invokes_exactly_the_functions_the_definition_names(dev: Synthesized) -> None:
    _, machine = dev.resource("AWS::StepFunctions::StateMachine")
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    named = {
        value
        for path, name in placeholder_paths(spec.WORKFLOW.definition.read_text()).items()
        if path[-1] == "FunctionName"
        for value in [rendered_substitutions(machine)[name]]
    }
    assert named  # the definition invokes Lambda functions
    invoked = set()
    for policy in dev.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "lambda:InvokeFunction" in actions:
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                invoked |= {f"<GetAtt:{'.'.join(r['Fn::GetAtt'])}>" for r in resources}
    assert invoked == named
