"""A short run of the load test (`make reliability` runs 5 minutes): every request accounted for, none
unexpected, memory sampled for every process the local cloud runs. No timing is asserted."""

from __future__ import annotations

from mdk.local.cloud.cloud import LocalCloud
from reliability import load


def test_a_mixed_load_gets_only_expected_answers(cloud: LocalCloud) -> None:
    cloud.warm()
    result = load.run(cloud, duration_s=6, clients=8, sample_s=0.5)
    summary = result.summary()
    assert summary["requests"] > 0
    assert summary["unexpected"] == 0, summary["kinds"]
    assert summary["server_errors"] == 0
    assert set(summary["kinds"]) == set(load.MIX)  # every kind was sent
    assert sum(k["requests"] for k in summary["kinds"].values()) == len(result.samples)
    names = " ".join(summary["memory"])
    assert "local-cloud" in names
    assert "runtime" in names
    assert "serving container" in names
