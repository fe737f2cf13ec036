"""The registry the stack writes for the operator commands, and the shadow wiring of Lambda models."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synth, resources
from tests.infra.layout import imported


def parameters(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources(template, "AWS::SSM::Parameter")
    return {v["Properties"]["Name"]: v["Properties"] for v in found.values()}


def test_every_model_is_registered_with_what_mdk_needs(synth_repo_config: Synth) -> None:
    # each model's entries are its own stack's: a model's change updates its own entry
    assert not parameters(synth_repo_config.shared_json)
    assert set(parameters(synth_repo_config.model_json("iris"))) == {
        "/mdk/mdk/dev/models/iris",
        "/mdk/mdk/dev/shadow/iris",
    }
    assert set(parameters(synth_repo_config.model_json("digits"))) == {"/mdk/mdk/dev/models/digits"}
    found = parameters(synth_repo_config.merged_json)
    buckets = resources(synth_repo_config.shared_json, "AWS::S3::Bucket")
    [bucket_id] = [k for k in buckets if k.startswith("StorageBatch")]
    batch_bucket = imported(synth_repo_config, "batch-bucket", {"Ref": bucket_id})
    iris = str(found["/mdk/mdk/dev/models/iris"]["Value"])
    for piece in (
        '"runtime\\":\\"lambda\\"',
        '\\"alias\\":\\"live\\"',
        "ModelirisFunction",  # the function's name, resolved at deploy
        "ModelirisRolloutApplication",
        "\"deployment_group\":\"', {'Ref': 'ModelirisRollout",  # the deployment group
        "ModelirisNewVersionFunctionErrors",  # the rollback alarms
        str(batch_bucket),  # the batch bucket, the shared stack's
        '\\"api_auth\\":\\"iam\\"',
        "/mdk/mdk/dev/shadow/iris",
    ):
        assert piece.replace("\\", "") in iris.replace("\\", ""), piece
    digits = str(found["/mdk/mdk/dev/models/digits"]["Value"])
    assert '"runtime":"sagemaker"' in digits.replace("\\", "")
    assert "EndpointdigitsErrors5xx" in digits
    assert found["/mdk/mdk/dev/shadow/iris"]["Value"] == '{"sample":0}'  # off at deploy


def test_the_function_reads_its_shadow_setting(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    [function] = [
        v["Properties"]
        for k, v in resources(template, "AWS::Lambda::Function").items()
        if k.startswith("ModelirisFunction")
    ]
    assert function["Environment"]["Variables"]["MDK_SHADOW_PARAMETER"]["Ref"].startswith(
        "RegistryShadowiris"
    )
    [policy] = [
        v["Properties"]["PolicyDocument"]["Statement"]
        for k, v in resources(template, "AWS::IAM::Policy").items()
        if k.startswith("ModelirisRoleDefaultPolicy")
    ]
    reads = [s for s in policy if "ssm:GetParameter" in s["Action"]]
    assert len(reads) == 1
    assert "RegistryShadowiris" in str(reads[0]["Resource"])  # this one parameter
