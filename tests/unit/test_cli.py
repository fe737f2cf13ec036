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
