"""CDK entry point (``cdk.json``: ``PYTHONPATH=functions:. .venv/bin/python -m infra.app``,
the import path of make and pytest: functions/ and the repository root).

Builds the dependency layer first (cached; see layer.py), then synthesizes the stack with
the cdk-nag AwsSolutions checks: an unacknowledged finding fails the synthesis."""

import os

# Node 20 is what this project's machines ship; the jsii notice about it would drown the output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def main() -> None:
    # Imported here, after the setting above: the jsii runtime starts with aws_cdk.
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from infra.account import AccountConfig, SensorStreamAccountStack
    from infra.config import DeployConfig
    from infra.layer import build_dependency_layer
    from infra.stack import SensorStreamStack

    app = App()
    # Once per account and region (make deploy-account): settings every stage relies on.
    SensorStreamAccountStack(app, config=AccountConfig.from_context(app.node))
    # -c stage=staging deploys SensorStream-staging beside SensorStream-prod.
    config = DeployConfig.from_context(app.node)
    SensorStreamStack(app, config=config, dependency_layer=build_dependency_layer())
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
