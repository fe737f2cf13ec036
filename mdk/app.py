"""The CDK app: one typed config in, the stacks out (`cdk synth`, `cdk deploy`).

A checkout runs it through the repository's ``app.py``; a project that installed the kit points its
``cdk.json`` at this module (``"app": "python -m mdk.app"``). Context: ``-c config=models.yaml`` (the
default), ``-c stage=dev`` (stack names ``<project>-<stage>-…``), ``-c destroy=true`` (dev only: logs and
other retained data go with the stack), ``-c limits='{"resources_per_api": 600}'`` (a quota AWS raised for
the account). A bad config or setting stops synth with every problem listed;
cdk-nag's AwsSolutions and Serverless packs run on every synth and fail it on any finding that is not
acknowledged with a reason (stacks/nag.py). The assembly is then checked against AWS's documented quotas
(stacks/limits.py): a template or API over one stops synth with a message naming it.
"""

from __future__ import annotations

import json
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
from stacks.limits import Limits, LimitsError, check_assembly  # noqa: E402
from stacks.settings import DeploySettings, SettingsError  # noqa: E402


def main() -> int:
    app = cdk.App()
    path = app.node.try_get_context("config") or DEFAULT_CONFIG
    try:
        config = load_config(path)
        settings = DeploySettings.from_context(app, config.project)
        limits = _limits(app.node.try_get_context("limits"))
    except (ConfigError, SettingsError, LimitsError) as exc:
        print(exc, file=sys.stderr)
        return 1
    build(app, config, settings)
    nag.enable(app)
    assembly = app.synth()
    # AWS's quotas (500 resources per template, 300 per REST API, 600 regional APIs...), before AWS refuses
    problems = check_assembly(assembly, limits)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _limits(context: object) -> Limits:
    """The account's quotas where AWS raised one for it: ``-c limits='{"resources_per_api": 600}'`` (or
    ``"limits": {...}`` in cdk.json's context); AWS's documented defaults otherwise."""
    if context is None:
        return Limits()
    values = json.loads(context) if isinstance(context, str) else context
    if not isinstance(values, dict) or not all(isinstance(v, int) for v in values.values()):
        raise SettingsError(
            f"context 'limits': expected a JSON object of quota names to integers, got {context!r}"
        )
    return Limits().override(values)


if __name__ == "__main__":
    sys.exit(main())
