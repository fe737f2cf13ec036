"""status, rollout, promote, rollback against the deployed topology; each effect read back from AWS."""

from __future__ import annotations

from typing import Any

from mdk.registry import history_parameter
from tests.ops.conftest import ALARMS, PROJECT, STAGE, Topology


def test_status_shows_versions_weights_deployments_and_alarms(topology: Topology, mdk: Any) -> None:
    topology.set_alias("2", {"3": 0.1})
    topology.codedeploy_deployment("2", "3")
    topology.alarm(ALARMS[1], "ALARM")

    result = mdk("status", "--json")

    assert result.code == 0, result.stderr
    by_model = {m["model"]: m for m in result.json()}
    iris = by_model["iris"]
    assert [(t["version"], t["weight"], t["role"]) for t in iris["traffic"]] == [
        ("2", 0.9, "primary"),
        ("3", 0.1, "candidate"),
    ]
    assert iris["traffic"][0]["description"] == "model iris v2"
    assert iris["deployment"]["from_version"] == "2"
    assert iris["deployment"]["to_version"] == "3"
    assert iris["alarms"] == {ALARMS[0]: "OK", ALARMS[1]: "ALARM"}
    digits = by_model["digits"]
    assert digits["endpoint_status"] == "InService"
    assert [(t["variant"], t["weight"]) for t in digits["traffic"]] == [("primary", 1.0), ("challenger", 0.0)]

    table = mdk("status", "iris")
    assert table.code == 0
    assert "iris (lambda, model version a6abf65a2a22)" in table.stdout
    assert "90.0 %" in table.stdout
    assert f"ALARM {ALARMS[1]}" in table.stdout


def test_rollout_shifts_a_share_and_refuses_what_does_not_exist(topology: Topology, mdk: Any) -> None:
    shifted = mdk("rollout", "iris", "--to", "3", "--percent", "10")
    assert shifted.code == 0
    assert shifted.stdout.strip() == "iris: version 2 90 %, version 3 10 %"
    assert topology.alias() == ("2", {"3": 0.1})

    unknown = mdk("rollout", "iris", "--to", "9", "--percent", "10")
    assert unknown.code == 2
    assert "model iris has no version '9' (versions: 1, 2, 3)" in unknown.stderr
    assert mdk("rollout", "iris", "--to", "3", "--percent", "0").code == 2
    assert mdk("rollout", "iris", "--to", "2", "--percent", "10").code == 2  # already primary
    assert topology.alias() == ("2", {"3": 0.1})


def test_rollout_waits_for_codedeploy_unless_forced(topology: Topology, mdk: Any) -> None:
    topology.codedeploy_deployment("2", "3")
    refused = mdk("rollout", "iris", "--to", "3", "--percent", "20")
    assert refused.code == 2
    assert "is shifting this alias" in refused.stderr
    assert mdk("rollout", "iris", "--to", "3", "--percent", "20", "--force").code == 0
    assert topology.alias() == ("2", {"3": 0.2})


def test_promote_is_refused_while_an_alarm_fires(topology: Topology, mdk: Any) -> None:
    topology.set_alias("2", {"3": 0.1})
    topology.alarm(ALARMS[0], "ALARM")

    refused = mdk("promote", "iris")
    assert refused.code == 2
    assert f"alarm in ALARM: {ALARMS[0]}" in refused.stderr
    assert topology.alias() == ("2", {"3": 0.1})

    assert mdk("promote", "iris", "--force").code == 0
    assert topology.alias() == ("3", {})
    history = topology.parameter(history_parameter(PROJECT, STAGE, "iris"))
    assert [e["version"] for e in history] == ["2", "3"]


def test_promote_needs_a_candidate(topology: Topology, mdk: Any) -> None:
    result = mdk("promote", "iris")
    assert result.code == 2
    assert "nothing to promote: version 2 takes all traffic" in result.stderr


def test_rollback_goes_back_to_the_version_before(topology: Topology, mdk: Any) -> None:
    topology.set_alias("2", {"3": 0.5})
    assert mdk("promote", "iris").code == 0
    assert topology.alias() == ("3", {})

    result = mdk("rollback", "iris")

    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "iris: rolled back from version 3 100 % to version 2 100 %"
    assert topology.alias() == ("2", {})
    history = topology.parameter(history_parameter(PROJECT, STAGE, "iris"))
    assert [e["version"] for e in history] == ["2", "3", "2"]


def test_rollback_of_a_manual_canary_drops_the_candidate(topology: Topology, mdk: Any) -> None:
    topology.set_alias("2", {"3": 0.25})
    result = mdk("rollback", "iris", "--json")
    assert result.code == 0
    assert result.json() == {
        "model": "iris",
        "unit": "version",
        "was": {"2": 0.75, "3": 0.25},
        "now": {"2": 1.0},
        "stopped_deployment": None,
        "rollback_alarm": None,
        "warning": None,
    }
    assert topology.alias() == ("2", {})


def test_rollback_during_a_codedeploy_deployment_moves_the_alias_at_once(
    topology: Topology, mdk: Any
) -> None:
    """The alias goes back to the deployment's CurrentVersion without waiting for CodeDeploy; moto has
    no StopDeployment, so the command also says the deployment could not be stopped (exit 1)."""
    topology.set_alias("2", {"3": 0.1})
    topology.codedeploy_deployment("2", "3")

    result = mdk("rollback", "iris")

    assert topology.alias() == ("2", {})
    assert result.code == 1
    assert "could not stop CodeDeploy deployment" in result.stderr
    assert result.stdout.strip() == "iris: rolled back from version 2 90 %, version 3 10 % to version 2 100 %"


def test_rollback_without_a_known_previous_version_is_refused(topology: Topology, mdk: Any) -> None:
    """Nothing in the CLI's history and no succeeded CodeDeploy deployment (a fresh deployment)."""
    refused = mdk("rollback", "iris")
    assert refused.code == 2
    assert "no previous version of iris is known" in refused.stderr
    assert "mdk rollout iris --to VERSION --percent 100" in refused.stderr
    assert topology.alias() == ("2", {})


def test_sagemaker_weights_rollout_promote_rollback(topology: Topology, mdk: Any) -> None:
    assert mdk("rollout", "digits", "--to", "challenger", "--percent", "25").code == 0
    assert topology.weights() == {"primary": 0.75, "challenger": 0.25}

    promoted = mdk("promote", "digits", "--json")
    assert promoted.code == 0
    assert promoted.json()["split"] == {"primary": 0.0, "challenger": 1.0}
    assert (promoted.json()["unit"], promoted.json()["previous"]) == ("variant", None)
    assert topology.weights() == {"primary": 0.0, "challenger": 1.0}

    rolled = mdk("rollback", "digits")
    assert rolled.code == 0
    assert (
        rolled.stdout.strip() == "digits: rolled back from variant challenger 100 % to variant primary 100 %"
    )
    assert topology.weights() == {"primary": 1.0, "challenger": 0.0}

    nothing = mdk("rollback", "digits")
    assert nothing.code == 2
    assert "nothing to roll back" in nothing.stderr
    unknown = mdk("rollout", "digits", "--to", "nope", "--percent", "5")
    assert "no variant 'nope' (variants: primary, challenger)" in unknown.stderr


def test_clear_errors_for_unknown_models_stages_and_credentials(
    topology: Topology, mdk: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    unknown = mdk("status", "nosuch")
    assert unknown.code == 2
    assert "model 'nosuch' is not deployed in mdk-ops (deployed: digits, iris)" in unknown.stderr

    nowhere = mdk("status", "--stage", "prod")
    assert nowhere.code == 2
    assert "no deployment mdk-prod found" in nowhere.stderr

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    anonymous = mdk("status")
    assert anonymous.code == 2
    assert "no AWS credentials" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr
