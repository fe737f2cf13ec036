"""What the stacks promise about logs, network and CodeDeploy's reach, read from the templates."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synth, resources


def _all(synth: Synth, kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for template in synth.json.values():
        found.update(resources(template, kind))
    return found


def test_every_sagemaker_model_runs_network_isolated(
    synth_repo_config: Synth, synth_sagemaker: Synth
) -> None:
    for synth in (synth_repo_config, synth_sagemaker):
        models = _all(synth, "AWS::SageMaker::Model")
        assert models  # endpoints' and transform jobs' models
        for logical, model in models.items():
            assert model["Properties"]["EnableNetworkIsolation"] is True, logical


def test_the_log_groups_services_write_are_the_stacks_with_retention(synth_sagemaker: Synth) -> None:
    groups = resources(synth_sagemaker.merged_json, "AWS::Logs::LogGroup")
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())
    for model in synth_sagemaker.config.models:  # each in the model's own stack, with what writes to it
        template = synth_sagemaker.model_json(model.name)
        groups = resources(template, "AWS::Logs::LogGroup")
        names = {json.dumps(g["Properties"].get("LogGroupName")): k for k, g in groups.items()}
        [(logical, endpoint)] = resources(template, "AWS::SageMaker::Endpoint").items()
        assert endpoint["Properties"]["EndpointName"] == f"acme-dev-{model.name}"
        expected = json.dumps(f"/aws/sagemaker/Endpoints/acme-dev-{model.name}")
        assert expected in names, (expected, list(names))
        assert names[expected] in endpoint["DependsOn"], logical  # there before SageMaker writes to it
        [api] = resources(template, "AWS::ApiGateway::RestApi")
        [stage] = resources(template, "AWS::ApiGateway::Stage").values()
        execution = json.dumps(
            {
                "Fn::Join": [
                    "",
                    ["API-Gateway-Execution-Logs_", {"Ref": api}, f"/{stage['Properties']['StageName']}"],
                ]
            }
        )
        assert execution in names, list(names)
        assert names[execution] in stage["DependsOn"]


def test_codedeploy_may_shift_this_functions_alias_only(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    groups = resources(template, "AWS::CodeDeploy::DeploymentGroup")
    assert groups
    roles = resources(template, "AWS::IAM::Role")
    policies = resources(template, "AWS::IAM::Policy")
    text = json.dumps(template)
    assert "AWSCodeDeployRoleForLambdaLimited" not in text  # it allows UpdateAlias on every function
    for group in groups.values():
        role_id = group["Properties"]["ServiceRoleArn"]["Fn::GetAtt"][0]
        assert "ManagedPolicyArns" not in roles[role_id]["Properties"]
        statements = [
            s
            for p in policies.values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        alias = [s for s in statements if "lambda:UpdateAlias" in s["Action"]]
        [function_id] = {r["Fn::GetAtt"][0] for s in alias for r in s["Resource"] if "Fn::GetAtt" in r} | {
            part["Fn::GetAtt"][0]
            for s in alias
            for r in s["Resource"]
            if "Fn::Join" in r
            for part in r["Fn::Join"][1]
            if isinstance(part, dict)
        }
        assert (
            resources(template, "AWS::Lambda::Function")[function_id]["Properties"]["PackageType"] == "Image"
        )
        wildcards = [s for s in statements if s["Resource"] == "*"]
        assert [s["Action"] for s in wildcards] == ["cloudwatch:DescribeAlarms"]


def test_the_status_function_keeps_the_shared_transform_log_group(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    functions = resources(template, "AWS::Lambda::Function")
    [status] = [v["Properties"] for k, v in functions.items() if k.startswith("BatchStatus")]
    assert status["Environment"]["Variables"]["MDK_TRANSFORM_LOG_RETENTION_DAYS"] == "90"
    grants = [
        s
        for k, p in resources(template, "AWS::IAM::Policy").items()
        if k.startswith("BatchStatusRole")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "logs:PutRetentionPolicy" in json.dumps(s["Action"])
    ]
    [grant] = grants
    assert grant["Action"] == "logs:PutRetentionPolicy"
    assert json.dumps(grant["Resource"]).endswith(':log-group:/aws/sagemaker/TransformJobs"]]}')
