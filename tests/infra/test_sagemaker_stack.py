"""Template assertions for SageMaker models: models, variants, guardrails, autoscaling, API route, storage."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mdk.bundle import model_spec
from tests.infra.conftest import Synth, dumps, resources, synth_config, write_config
from tests.infra.layout import imported


def owned(template: dict[str, Any], model: str, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources(template, kind).items() if k.startswith(f"Endpoint{model}")}


def test_model_endpoint_config_and_endpoint(synth_repo_config: Synth) -> None:
    template = synth_repo_config.model_json("digits")  # all of it in the model's own stack
    ((model_id, model),) = owned(template, "digits", "AWS::SageMaker::Model").items()
    container = model["Properties"]["PrimaryContainer"]
    assert container["Environment"] == {
        "MDK_DEVICE": "gpu",  # ml.g4dn.xlarge
        "MDK_MAX_BATCH_SIZE": "32",
        "MDK_MAX_BATCH_DELAY_MS": "2",
        "MDK_MAX_PAYLOAD_MB": "6",
        "MDK_MAX_CONCURRENT_TRANSFORMS": "1",
    }
    assert "container-assets" in dumps(container["Image"])
    assert dumps(container["ModelDataUrl"]).endswith('.gz"}')
    assert "ModelName" not in model["Properties"]  # generated: a changed model is a new resource
    ((_, config),) = owned(template, "digits", "AWS::SageMaker::EndpointConfig").items()
    props = config["Properties"]
    assert "EndpointConfigName" not in props
    assert props["ProductionVariants"] == [
        {
            "InitialInstanceCount": 1,
            "InitialVariantWeight": 1,
            "InstanceType": "ml.g4dn.xlarge",
            "ModelName": {"Fn::GetAtt": [model_id, "ModelName"]},
            "VariantName": "primary",
        }
    ]
    assert "KmsKeyId" not in props  # g4dn has local NVMe storage: AWS refuses a volume key
    ((_, endpoint),) = owned(template, "digits", "AWS::SageMaker::Endpoint").items()
    props = endpoint["Properties"]
    assert props["EndpointName"] == "mdk-dev-digits"  # <prefix>-<model>, whatever stack holds it
    assert props["RetainAllVariantProperties"] is True
    assert props["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredWeight"}]


def test_guardrail_rollout_with_alarm_rollback(synth_repo_config: Synth) -> None:
    template = synth_repo_config.model_json("digits")
    ((_, endpoint),) = owned(template, "digits", "AWS::SageMaker::Endpoint").items()
    deployment = endpoint["Properties"]["DeploymentConfig"]
    policy = deployment["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 300,
    }
    assert policy["TerminationWaitInSeconds"] == 600  # the baking period
    alarm_ids = sorted(a["AlarmName"]["Ref"] for a in deployment["AutoRollbackConfiguration"]["Alarms"])
    alarms = {k: template["Resources"][k]["Properties"] for k in alarm_ids}
    by_metric = {p["MetricName"]: p for p in alarms.values()}
    assert set(by_metric) == {"Invocation5XXErrors", "ModelLatency"}
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {"Name": "VariantName", "Value": "primary"} in alarm["Dimensions"]
        assert {"Name": "EndpointName", "Value": "mdk-dev-digits"} in alarm["Dimensions"]
    assert by_metric["ModelLatency"]["Threshold"] == 1_000_000  # 1000 ms, in microseconds
    assert by_metric["ModelLatency"]["ExtendedStatistic"] == "p99"


def test_autoscaling_tracks_invocations_per_instance(
    synth_repo_config: Synth, synth_sagemaker: Synth
) -> None:
    ((_, target),) = owned(
        synth_repo_config.model_json("digits"), "digits", "AWS::ApplicationAutoScaling::ScalableTarget"
    ).items()
    props = target["Properties"]
    assert (props["MinCapacity"], props["MaxCapacity"]) == (1, 4)
    assert props["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert props["ResourceId"] == "endpoint/mdk-dev-digits/variant/primary"
    ((_, policy),) = owned(
        synth_repo_config.model_json("digits"), "digits", "AWS::ApplicationAutoScaling::ScalingPolicy"
    ).items()
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == 200
    targets = owned(synth_sagemaker.model_json("ab"), "ab", "AWS::ApplicationAutoScaling::ScalableTarget")
    assert len(targets) == 2  # one per production variant


def test_execution_role_is_least_privilege(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    ((role_id, role),) = owned(template, "digits", "AWS::IAM::Role").items()
    assert "ManagedPolicyArns" not in role["Properties"]  # never AmazonSageMakerFullAccess
    policies = [
        p
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    actions = sorted(
        {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    )
    assert actions == [
        "cloudwatch:PutMetricData",
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetAuthorizationToken",
        "ecr:GetDownloadUrlForLayer",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "s3:GetObject",
    ]
    s3 = next(s for s in statements if s["Action"] == "s3:GetObject")
    assert dumps(s3["Resource"]).endswith('.gz"]]}')  # one object, not the assets bucket
    metrics = next(s for s in statements if s["Action"] == "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {
        "StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}
    }


def test_api_route_is_a_direct_sagemaker_integration(synth_repo_config: Synth) -> None:
    template = synth_repo_config.model_json("digits")  # the model's own API
    method = next(
        m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"]["Type"] == "AWS"
    )
    assert method["HttpMethod"] == "POST"
    assert method["AuthorizationType"] == "AWS_IAM"  # the same auth as the Lambda models
    integration = method["Integration"]
    uri = dumps(integration["Uri"])
    assert uri.endswith(':runtime.sagemaker:path/endpoints/mdk-dev-digits/invocations"]]}')
    assert integration["RequestParameters"] == {
        "integration.request.header.Content-Type": "method.request.header.Content-Type",
        "integration.request.header.Accept": "method.request.header.Accept",
    }
    responses = {r.get("SelectionPattern", "default"): r for r in integration["IntegrationResponses"]}
    assert (
        "$context.responseOverride.status = $body.OriginalStatusCode"
        in responses["424"]["ResponseTemplates"]["application/json"]
    )
    # SageMaker's 429 (endpoint throttled or not ready) reaches the caller as a 429 to retry; the other
    # 4xx are the request's fault; the patterns must not overlap (API Gateway picks any match).
    assert set(responses) == {"default", "424", "429", "4(?!24|29)\\d{2}", "5\\d{2}"}
    assert responses["429"]["StatusCode"] == "429"
    assert '"code": "throttled"' in responses["429"]["ResponseTemplates"]["application/json"]
    patterns = [re.compile(p) for p in responses if p != "default"]
    for status in ("400", "404", "413", "424", "429", "500", "503"):
        assert sum(bool(p.fullmatch(status)) for p in patterns) == 1, status
    assert responses["default"]["ResponseParameters"] == {
        "method.response.header.Content-Type": "integration.response.header.Content-Type"
    }
    role_id = integration["Credentials"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    (statement,) = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert dumps(statement["Resource"]).endswith('":endpoint/mdk-dev-digits"]]}')  # this endpoint only


def test_cpu_instances_data_capture_isolation_vpc_and_shadow(synth_sagemaker: Synth) -> None:
    template = synth_sagemaker.model_json("scorer")
    ((_, config),) = owned(template, "scorer", "AWS::SageMaker::EndpointConfig").items()
    props = config["Properties"]
    assert "KmsKeyId" in props  # m5 has no local storage: the volume is encrypted with the data key
    assert [v["VariantName"] for v in props["ProductionVariants"]] == ["primary"]
    assert props["ProductionVariants"][0]["InitialInstanceCount"] == 2
    (shadow,) = props["ShadowProductionVariants"]
    assert shadow["VariantName"] == "candidate"
    assert shadow["InitialVariantWeight"] == 0.5
    capture = props["DataCaptureConfig"]
    assert capture["InitialSamplingPercentage"] == 20
    assert capture["EnableCapture"] is True
    assert [o["CaptureMode"] for o in capture["CaptureOptions"]] == ["Input", "Output"]
    # the shared stack's data key and capture bucket, by the exports the model stack imports
    shared = resources(synth_sagemaker.shared_json, "AWS::S3::Bucket")
    [bucket_id] = [k for k in shared if k.startswith("StorageDataCapture")]
    [key_id] = [
        k for k in resources(synth_sagemaker.shared_json, "AWS::KMS::Key") if k.startswith("StorageDataKey")
    ]
    data_key = imported(synth_sagemaker, "data-key-arn", {"Fn::GetAtt": [key_id, "Arn"]})
    assert capture["KmsKeyId"] == props["KmsKeyId"] == data_key
    bucket = imported(synth_sagemaker, "capture-bucket", {"Ref": bucket_id})
    # capture/<model>/<version>: SageMaker adds <endpoint>/<variant>/yyyy/mm/dd/hh (stacks/capture.py)
    version = model_spec(synth_sagemaker.config.model("scorer")).version
    assert capture["DestinationS3Uri"] == {"Fn::Join": ["", ["s3://", bucket, f"/capture/scorer/{version}"]]}
    models = owned(template, "scorer", "AWS::SageMaker::Model")
    assert len(models) == 2  # production and shadow, each its own artifact
    for model in models.values():
        assert model["Properties"]["EnableNetworkIsolation"] is True
        assert model["Properties"]["VpcConfig"] == {
            "Subnets": ["subnet-0abc1234def567890"],
            "SecurityGroupIds": ["sg-0123456789abcdef0"],
        }
        assert model["Properties"]["PrimaryContainer"]["Environment"]["MDK_DEVICE"] == "cpu"
        assert model["Properties"]["PrimaryContainer"]["Environment"]["MDK_MAX_BATCH_SIZE"] == "64"

    def images(stack: str) -> dict[str, str]:
        assets = json.loads((synth_sagemaker.outdir / f"{stack}.assets.json").read_text())["dockerImages"]
        return {
            a["source"]["dockerBuildArgs"]["DEVICE"]: digest
            for digest, a in assets.items()
            if "DEVICE" in a["source"].get("dockerBuildArgs", {})
        }

    # one image per device, the same for every model on it (and for its batch transforms, in its stack):
    # each stack publishes the images its models run, under the same content hash, so ECR holds one of each
    assert images("acme-dev-model-scorer").keys() == {"cpu"}  # endpoint and transforms on CPU types
    assert images("acme-dev-model-ab").keys() == {"cpu", "gpu"}  # primary on g5, challenger on c5
    assert images("acme-dev-shared") == {}  # the batch pipeline runs no model
    assert images("acme-dev-model-scorer")["cpu"] == images("acme-dev-model-ab")["cpu"]
    ((_, endpoint),) = owned(template, "scorer", "AWS::SageMaker::Endpoint").items()
    routing = endpoint["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert routing["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
        "WaitIntervalInSeconds": 180,
    }
    assert routing["TerminationWaitInSeconds"] == 900
    role_policies = dumps(
        [p for k, p in resources(template, "AWS::IAM::Policy").items() if k.startswith("Endpointscorer")]
    )
    assert "ec2:CreateNetworkInterface" in role_policies
    assert "s3:PutObject" in role_policies
    assert "kms:GenerateDataKey" in role_policies
    assert "kms:GenerateDataKey*" not in role_policies  # no wildcards


def test_weighted_production_variants(synth_sagemaker: Synth) -> None:
    ((_, config),) = owned(synth_sagemaker.merged_json, "ab", "AWS::SageMaker::EndpointConfig").items()
    variants = {v["VariantName"]: v for v in config["Properties"]["ProductionVariants"]}
    assert {k: (v["InitialVariantWeight"], v["InstanceType"]) for k, v in variants.items()} == {
        "primary": (3, "ml.g5.xlarge"),
        "challenger": (1, "ml.c5.xlarge"),
    }
    assert "KmsKeyId" not in config["Properties"]  # g5: local storage
    alarms = owned(synth_sagemaker.merged_json, "ab", "AWS::CloudWatch::Alarm")
    assert len(alarms) == 4  # 5xx and latency, per variant


def test_model_tarball_is_the_bundle(synth_repo_config: Synth) -> None:
    tarball = (
        synth_repo_config.outdir / "build" / "mdk-dev" / "sagemaker" / "digits" / "primary" / "model.tar.gz"
    )
    with tarfile.open(tarball) as tar:
        assert tar.getnames() == ["mdk-model.json", "model.onnx"]
        spec = json.loads(tar.extractfile("mdk-model.json").read())  # type: ignore[union-attr]
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert spec["name"] == "digits"
    assert spec["version"] == model_spec(synth_repo_config.config.model("digits")).version


def test_data_capture_bucket_is_encrypted_tls_only_logged_and_expiring(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    buckets = resources(template, "AWS::S3::Bucket")
    capture = next(v["Properties"] for k, v in buckets.items() if k.startswith("StorageDataCapture"))
    logs_id = next(k for k in buckets if k.startswith("StorageAccessLogs"))
    encryption = capture["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert capture["VersioningConfiguration"] == {"Status": "Enabled"}
    assert capture["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    assert capture["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    assert any(r.get("ExpirationInDays") == 90 for r in capture["LifecycleConfiguration"]["Rules"])
    policies = dumps(resources(template, "AWS::S3::BucketPolicy"))
    assert policies.count('"aws:SecureTransport": "false"') >= 2
    assert "AccessControl" not in buckets[logs_id]["Properties"]  # no ACLs: logging uses a bucket policy


def test_endpoint_dashboard_and_alarms(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    dashboard = next(
        v
        for k, v in resources(template, "AWS::CloudWatch::Dashboard").items()
        if k.startswith("EndpointMonitoringdigits")
    )
    body = dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "Invocations",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "ModelLatency",
        "OverheadLatency",
        "GPUUtilization",
        "GPUMemoryUtilization",
    ):
        assert metric in body, metric
    names = sorted(
        v["Properties"]["AlarmName"]
        for k, v in resources(template, "AWS::CloudWatch::Alarm").items()
        if k.startswith("EndpointMonitoringdigits")
    )
    assert len(names) == 2
    assert all(n.startswith("mdk-dev-digits-primary-") for n in names)


@pytest.mark.parametrize(
    ("sagemaker", "message"),
    [
        (
            "{shadow: {name: s}, variants: [{name: b}]}",
            "a shadow variant needs exactly one production variant (AWS rejects anything else at deploy time)",
        ),
        ("{variants: [{name: primary}]}", "variant names must be unique (and not 'primary')"),
        ("{variants: [{name: b}, {name: b}]}", "variant names must be unique"),
        (
            "{instance_type: ml.c7g.xlarge}",
            "Graviton (arm64) instances are not supported by the serving image",
        ),
        (
            "{initial_instance_count: 5, max_instances: 4}",
            "expected min_instances <= initial_instance_count <= max_instances",
        ),
        ("{shadow: {name: bad_name}}", "shadow.name: expected a string matching"),
        ("{data_capture_percent: 101}", "data_capture_percent: expected a value <= 100"),
    ],
)
def test_variant_topology_is_validated_by_the_kit(tmp_path: Path, sagemaker: str, message: str) -> None:
    from mdk.config import ConfigError, load_config

    path = write_config(tmp_path, f"""
        models:
          - name: m
            artifact: MODELS/digits/v1/model.onnx
            runtime: sagemaker
            sagemaker: {sagemaker}
    """)  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_endpoint_names_must_fit_sagemakers_limit(tmp_path: Path) -> None:
    long_name = "a" * 32
    path = write_config(tmp_path, f"""
        project: {"p" * 32}
        models:
          - {{name: {long_name}, artifact: MODELS/digits/v1/model.onnx, runtime: sagemaker}}
    """)  # fmt: skip
    with pytest.raises(
        ValueError, match=re.escape("SageMaker allows 63: shorten the project, stage or model name")
    ):
        synth_config(path, tmp_path / "out", with_nag=False)
