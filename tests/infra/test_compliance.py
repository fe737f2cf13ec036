"""cdk-nag (AwsSolutions and Serverless) and cfn-lint on every synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import nag
from tests.infra.conftest import REPO, Synth, synth_config, write_config

# W3005: CDK writes DependsOn that a GetAtt/Ref already implies; harmless, and not ours to remove.
# W6001 (an output built from an ImportValue): a model stack's Inbox output shows the shared stack's batch
# bucket, imported, with the model's prefix (s3://<bucket>/incoming/<model>/) for people to read; it is
# not exported, so no chain of imports forms, and the bucket's own export is the shared stack's.
CFN_LINT_IGNORED = ("W3005", "W6001")


def acknowledgements() -> list[nag.Acknowledged]:
    found = []
    for value in vars(nag).values():
        if isinstance(value, nag.Acknowledged):
            found.append(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, nag.Acknowledged) for v in value):
            found.extend(value)
    return found


def test_every_acknowledgement_names_a_rule_and_a_real_reason() -> None:
    acks = acknowledgements()
    assert len(acks) >= 10
    for ack in acks:
        assert ack.rule.split("::")[0] in ("AwsSolutions", "Serverless"), ack
        assert len(ack.reason) > 60, ack


def test_every_acknowledgement_is_listed_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for ack in acknowledgements():
        rule = ack.rule.split("::", 1)[1].split("[", 1)[0]
        assert rule in readme, f"{rule} is acknowledged in stacks/nag.py but not reviewed in the README"


@pytest.mark.parametrize("fixture", ["synth_repo_config", "synth_variant", "synth_sagemaker"])
def test_nag_passes_and_acknowledgements_are_recorded(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(fixture)  # synthesized with both packs: an error would raise
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    plugins = {p["pluginName"]: p for p in report["pluginReports"]}
    # a pack appears in the report once it has a finding (acknowledged or not) in the app
    assert "AwsSolutions" in plugins
    assert set(plugins) <= {"AwsSolutions", "Serverless"}
    for name, plugin in plugins.items():
        # warnings too: nothing is left unacknowledged
        assert plugin["violations"] == [], (name, plugin["violations"])
        for suppressed in plugin["suppressedViolations"]:
            assert len(suppressed["reason"]) > 60, suppressed


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    """The packs are not decorative: strip one acknowledgement and synth must fail on it."""
    path = write_config(
        tmp_path, "models:\n  - {name: iris, artifact: MODELS/iris/v1/model.onnx, runtime: lambda}\n"
    )
    original = nag.MODEL_FUNCTION_DLQ
    try:
        nag.MODEL_FUNCTION_DLQ = nag.Acknowledged(
            "Serverless::Serverless-XXX0", "a rule that does not exist, for the test"
        )
        with pytest.raises(RuntimeError, match="Serverless-LambdaDLQ"):
            synth_config(path, tmp_path / "out")
    finally:
        nag.MODEL_FUNCTION_DLQ = original


@pytest.mark.parametrize("fixture", ["synth_repo_config", "synth_variant", "synth_sagemaker"])
def test_cfn_lint_passes(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(fixture)
    templates = sorted(str(p) for p in synth.outdir.glob("*.template.json"))
    assert templates
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", *CFN_LINT_IGNORED, "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
