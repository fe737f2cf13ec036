#!/usr/bin/env python3
"""The CDK app: one typed config in, the stacks out (`npx cdk synth`, `npx cdk deploy`).

The config file defaults to models.yaml; `-c config=path/to/models.yaml` picks another. A bad
config stops synth with every problem listed. The stacks that deploy the models are built by
`stacks/` (added with the deployment work; until then the app only validates the config).
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from mdk.config import DEFAULT_CONFIG, ConfigError, load_config


def main() -> int:
    app = cdk.App()
    path = app.node.try_get_context("config") or DEFAULT_CONFIG
    try:
        load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
