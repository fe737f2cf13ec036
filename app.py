#!/usr/bin/env python3
"""The CDK app: one typed config in, the stacks out (`npx cdk synth`, `npx cdk deploy`).

Context: `-c config=models.yaml` (the default), `-c stage=dev` (stack names `<project>-<stage>-…`),
`-c destroy=true` (dev only: logs and other retained data go with the stack). A bad config or
setting stops synth with every problem listed; cdk-nag's AwsSolutions and Serverless packs run on
every synth and fail it on any finding that is not acknowledged with a reason (stacks/nag.py).
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from mdk.config import DEFAULT_CONFIG, ConfigError, load_config
from stacks import build, nag
from stacks.settings import DeploySettings, SettingsError


def main() -> int:
    app = cdk.App()
    path = app.node.try_get_context("config") or DEFAULT_CONFIG
    try:
        config = load_config(path)
        settings = DeploySettings.from_context(app, config.project)
    except (ConfigError, SettingsError) as exc:
        print(exc, file=sys.stderr)
        return 1
    build(app, config, settings)
    nag.enable(app)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
