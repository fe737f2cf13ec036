"""The baseline and PSI of ``mdk_runtime.drift``, and ``mdk baseline`` on the iris model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mdk.config import load_config
from mdk.quality import BaselineError, compute_baseline, read_sample
from mdk_runtime import drift

ROOT = Path(__file__).resolve().parents[2]


def test_psi_of_identical_shares_is_zero() -> None:
    assert drift.psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0


def test_psi_is_the_documented_sum() -> None:
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.8) * math.log(0.5 / 0.8)
    assert drift.psi([0.2, 0.8], [0.5, 0.5]) == pytest.approx(expected)


def test_empty_bins_count_as_epsilon() -> None:
    value = drift.psi([0.0, 1.0], [1.0, 0.0])
    assert math.isfinite(value)
    assert value > 10


def test_numeric_bins_are_open_ended() -> None:
    summary = drift.numeric_summary(np.arange(100.0))
    shares = drift.bin_shares([-1000.0, 1000.0], summary["edges"])
    assert shares[0] == 0.5
    assert shares[-1] == 0.5


def test_numeric_summary_has_deciles() -> None:
    summary = drift.numeric_summary(np.arange(1000.0))
    assert len(summary["edges"]) == 9
    assert summary["shares"] == pytest.approx([0.1] * 10, abs=0.002)


def test_a_sample_from_the_baseline_distribution_barely_drifts() -> None:
    rng = np.random.default_rng(0)
    summary = drift.numeric_summary(rng.normal(0, 1, 5000))
    assert drift.numeric_psi(summary, rng.normal(0, 1, 2000)) < 0.05


def test_a_shifted_sample_drifts_beyond_the_rule_of_thumb() -> None:
    rng = np.random.default_rng(0)
    summary = drift.numeric_summary(rng.normal(0, 1, 5000))
    assert drift.numeric_psi(summary, rng.normal(1.5, 1, 2000)) > 0.2


def test_unseen_labels_share_one_extra_bin() -> None:
    summary = drift.label_summary(["a", "b", "a", "b"])
    assert drift.label_psi(summary, ["a", "b"]) == 0.0
    assert drift.label_psi(summary, ["c", "d"]) > 1


def test_labels_compare_as_strings() -> None:
    summary = drift.label_summary([0, 1, 1.0, True])
    assert summary["shares"] == {"0": 0.25, "1": 0.5, "true": 0.25}


def test_feature_columns_of_rows_and_objects() -> None:
    rows = drift.feature_columns([[1, 2], [3, 4]], ["features"])
    assert rows == {"features[0]": [1.0, 3.0], "features[1]": [2.0, 4.0]}
    named = drift.feature_columns([{"a": 1, "b": [2]}], ["a", "b"])
    assert named == {"a": [1.0], "b": [2.0]}


def test_drift_names_the_worst_feature() -> None:
    rng = np.random.default_rng(1)
    base_rows = rng.normal(0, 1, (2000, 2)).tolist()
    baseline = drift.build_baseline(
        "m", "v", base_rows, [{"label": "x"}] * 2000, input_names=["f"], tabular=True
    )
    live = np.column_stack([rng.normal(0, 1, 500), rng.normal(3, 1, 500)]).tolist()
    result = drift.drift(baseline, live, [{"label": "x"}] * 500)
    assert result["worst"] == "f[1]"
    assert result["features"]["f[0]"] < 0.1
    assert result["output"] == 0.0


def test_iris_baseline_from_the_kit_model(tmp_path: Path) -> None:
    config = load_config(ROOT / "models.yaml")
    model = config.model("iris")
    sample = json.loads((ROOT / "models" / "iris" / "v1" / "example.json").read_text())
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(sample))
    doc = compute_baseline(model, path)
    assert doc["model"] == "iris"
    assert doc["rows"] == 2
    assert set(doc["features"]) == {f"features[{j}]" for j in range(4)}
    assert doc["output"] == {"kind": "label", "shares": {"virginica": 1.0}}


def test_committed_iris_baseline_is_the_iris_models() -> None:
    doc = json.loads((ROOT / "models" / "iris" / "v1" / "baseline.json").read_text())
    assert doc["model"] == "iris"
    assert doc["rows"] == 150
    assert doc["output"]["shares"]["setosa"] == pytest.approx(1 / 3)
    assert doc["method"] == "psi"


def test_read_sample_refuses_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("1,2")
    with pytest.raises(BaselineError, match=r"data: expected a \.csv"):
        read_sample(path)


def test_read_sample_csv_skips_a_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    assert read_sample(path) == [[1.0, 2.0], [3.0, 4.0]]
