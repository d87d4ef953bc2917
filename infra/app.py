"""CDK entry point (cdk.json runs `python -m infra.app`): one stack per stage, checked by cdk-nag.

make synth                          # stage "dev", options from cdk.json's context
make deploy CDK_ARGS="-c stage=prod -c alarmEmail=ops@example.com"
"""

from __future__ import annotations

from aws_cdk import App, Aspects
from cdk_nag import AwsSolutionsChecks

from infra.config import Config
from infra.stack import MediaGenerationStack


def stack_name(config: Config) -> str:
    return f"MediaGeneration-{config.stage}"


def build(app: App, config: Config | None = None) -> MediaGenerationStack:
    """The stack of one stage, with cdk-nag's AWS Solutions checks (an unsuppressed finding is an
    error annotation: it fails `cdk synth`). No account or region: the template is
    environment-agnostic, so synth needs no credentials."""
    config = config or Config.from_context(app.node.try_get_context)
    stack = MediaGenerationStack(app, stack_name(config), config=config)
    Aspects.of(stack).add(AwsSolutionsChecks(verbose=True))
    return stack


def main() -> None:
    app = App()
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
