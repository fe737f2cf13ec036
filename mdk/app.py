"""The CDK app: one typed config in, the stacks out (`cdk synth`, `cdk deploy`).

A checkout runs it through the repository's ``app.py``; a project that installed the kit points its
``cdk.json`` at this module (``"app": "python -m mdk.app"``). Context: ``-c config=models.yaml`` (the
default), ``-c stage=dev`` (stack names ``<project>-<stage>-…``), ``-c destroy=true`` (dev only: logs and
other retained data go with the stack). A bad config or setting stops synth with every problem listed;
cdk-nag's AwsSolutions and Serverless packs run on every synth and fail it on any finding that is not
acknowledged with a reason (stacks/nag.py).
"""

from __future__ import annotations

import os
import sys

# Lambda runs a container image's function as a non-root user, and Docker's COPY keeps the build
# context's modes: the asset directories CDK creates under cdk.out (by the Node process that importing
# aws_cdk starts, which inherits this umask) must be searchable by everyone. A umask of 077 would leave
# them 0700. Only the group and world write bits stay masked; nothing is loosened beyond 0755/0644.
os.umask(os.umask(0) & 0o022)

import aws_cdk as cdk  # noqa: E402 - after the umask: its Node process inherits it

from mdk.config import DEFAULT_CONFIG, ConfigError, load_config  # noqa: E402
from stacks import build, nag  # noqa: E402
from stacks.settings import DeploySettings, SettingsError  # noqa: E402


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
