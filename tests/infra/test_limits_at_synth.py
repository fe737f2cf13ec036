"""The CDK app stops synth on a crossed AWS quota, naming it, before CloudFormation would refuse it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def synth(tmp_path: Path, **context: str) -> subprocess.CompletedProcess[str]:
    flags = json.loads((REPO / "cdk.json").read_text())["context"]
    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
        "CDK_OUTDIR": str(tmp_path / "out"),
        "CDK_CONTEXT_JSON": json.dumps({**flags, **context}),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, "-m", "mdk.app"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )


def test_a_stack_over_a_quota_stops_synth_with_the_quota_named(tmp_path: Path) -> None:
    # The account's quota lowered below what the iris model's stack holds (~50 resources).
    done = synth(tmp_path, limits=json.dumps({"resources_per_template": 40}))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("stack mdk-dev-model-iris:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "over CloudFormation's limit of 40 resources per template" in lines[0]
    assert "cloudformation-limits.html" in lines[0]  # the page that documents the quota


def test_the_limits_context_names_a_quota_that_does_not_exist() -> None:
    from mdk.app import _limits
    from stacks.limits import LimitsError
    from stacks.settings import SettingsError

    assert _limits(json.dumps({"resources_per_api": 600})).resources_per_api == 600
    with pytest.raises(LimitsError, match=r"limits\.no_such_limit: no such limit"):
        _limits(json.dumps({"no_such_limit": 1}))
    with pytest.raises(SettingsError, match="context 'limits': expected a JSON object"):
        _limits(json.dumps(["resources_per_api"]))
