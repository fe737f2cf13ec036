"""The `mdk` command line: clear messages and a non-zero exit on bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdk_runtime.spec import read_spec

REPO = Path(__file__).resolve().parents[2]


def mdk(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdk", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_config_validate_lists_the_models() -> None:
    result = mdk("config", "validate")
    assert result.returncode == 0, result.stderr
    assert "iris" in result.stdout
    assert "digits" in result.stdout
    assert "config is valid" in result.stdout


def test_config_validate_reports_every_problem(tmp_path: Path) -> None:
    shutil.copytree(REPO / "models", tmp_path / "models")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: iris, artifact: models/iris/v1/model.onnx, runtime: gpu}\n"
                   "  - {name: x, artifact: nope.onnx, runtime: lambda}\n")  # fmt: skip
    result = mdk("config", "validate", "--config", str(bad))
    assert result.returncode == 2
    assert "models[0].runtime: expected 'lambda' or 'sagemaker', got 'gpu'" in result.stderr
    assert "models[1].artifact: file not found: nope.onnx" in result.stderr
    assert "Traceback" not in result.stderr


def test_bundle_and_unknown_model(tmp_path: Path) -> None:
    result = mdk("bundle", "iris", "--out", str(tmp_path / "iris"))
    assert result.returncode == 0, result.stderr
    assert read_spec(tmp_path / "iris").name == "iris"
    unknown = mdk("bundle", "nope")
    assert unknown.returncode == 2
    assert "unknown model 'nope' (models in the config: iris, digits)" in unknown.stderr


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["serve", "--port", "http"], ["frobnicate"]])
def test_usage_errors(args: list[str]) -> None:
    result = mdk(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Usage" in result.stderr or "Invalid value" in result.stderr or "No such command" in result.stderr


def test_batch_run_scores_a_file_and_accounts_for_every_line(tmp_path: Path) -> None:
    data = tmp_path / "day.jsonl"
    data.write_text('[5.1, 3.5, 1.4, 0.2]\n{"bad": \n[6.7, 3.0, 5.2, 2.3]\n')
    result = mdk("batch", "run", str(data), "--model", "iris", "--results", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "Completed: 3 lines: 2 scored, 1 rejected" in result.stdout
    [output] = (tmp_path / "out" / "iris").glob("*/output/day.jsonl.out")
    answers = output.read_text().splitlines()
    assert len(answers) == 3
    assert '"malformed_request"' in answers[1]


def test_batch_run_refuses_bad_files_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "day.txt"
    data.write_text("1,2,3,4\n")
    result = mdk("batch", "run", str(data), "--model", "iris", "--results", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Rejected" in result.stdout
    assert "key: expected a file ending in .csv, .jsonl, .ndjson" in result.stdout
    missing = mdk("batch", "run", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "FILE: not found" in missing.stderr


def test_stacks_names_each_models_stack_as_the_cdk_app_names_it() -> None:
    import json

    from mdk.config import load_config
    from stacks.settings import DeploySettings

    result = mdk("stacks", "--json", "--stage", "prod")
    assert result.returncode == 0, result.stderr
    named = json.loads(result.stdout)
    settings = DeploySettings(project=load_config(REPO / "models.yaml").project, stage="prod")
    assert named == {
        "shared": settings.shared_stack,
        "models": {"iris": settings.model_stack("iris"), "digits": settings.model_stack("digits")},
        "access": [],  # iam auth: no consumers
    }
    one = mdk("stacks", "iris")
    assert one.returncode == 0
    assert one.stdout.strip() == "mdk-dev-model-iris"
    unknown = mdk("stacks", "nope")
    assert unknown.returncode == 2
    assert "unknown model 'nope'" in unknown.stderr
