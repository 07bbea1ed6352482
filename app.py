#!/usr/bin/env python3
"""The CDK app: one COAFI stack, checked by cdk-nag's AWS Solutions rules. Settings: infra/config.py."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import CoafiConfig
from infra.stack import CoafiStack


def main() -> None:
    app = cdk.App()
    config = CoafiConfig.from_context(app.node)
    CoafiStack(
        app,
        config.stack_name,
        config=config,
        description="COAFI: workflow definitions compiled to Step Functions (state table, bus, functions)",
    )
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    app.synth()


if __name__ == "__main__":
    main()
