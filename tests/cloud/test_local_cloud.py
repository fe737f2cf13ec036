"""The example config deployed onto the local cloud and used as a user would: every route, a batch file,
a canary rollout to promotion, a 10 % split by hand, `mdk rollback`, and a broken model the pre-traffic
hook keeps away from traffic. The tests run in file order on one deployment (module-scoped cloud)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY, LocalCloud
from tests.cloud.conftest import REPO, Config, call, signed
from tests.mdk_cli import runner
from tests.onnx_models import poisoned

FUNCTION = "mdk-dev-model-iris-ModelirisFunction426CCFF9"
V1 = "a6abf65a2a22"  # iris v1's model version (sha256 prefix)
V2 = "73dd39291678"
IRIS = {"instances": [[6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9]]}


def health_version(cloud: LocalCloud) -> str:
    status, _, body = signed(f"{cloud.gateway.url}models/iris/health")
    assert status == 200, body
    return str(json.loads(body)["version"])


def alias(cloud: LocalCloud) -> tuple[str, dict[str, float]]:
    found = cloud.session.client("lambda").get_alias(FunctionName=FUNCTION, Name="live")
    return found["FunctionVersion"], found.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})


@pytest.fixture
def mdk(cloud: LocalCloud, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``mdk(*args)``: the operator CLI in process, pointed at the local cloud as the printed export does."""
    env = {
        "AWS_ENDPOINT_URL": cloud.aws_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": cloud.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLUMNS": "200",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return runner(capsys, monkeypatch, "--config", str(cloud.config))


# ------------------------------------------------------------------------------------ the topology


def test_the_deployed_topology_reads_back_as_aws_would_hold_it(cloud: LocalCloud) -> None:
    session = cloud.session
    lam = session.client("lambda")
    functions = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert functions == {
        FUNCTION,
        "mdk-dev-model-iris-ModelirisPreTrafficHookB60C84BA",
        "mdk-dev-shared-BatchTrigger8D9E9196",
        "mdk-dev-shared-BatchStatus50E69892",
    }
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]] == [
        "$LATEST",
        "1",
    ]
    assert alias(cloud) == ("1", {})
    # the alarms, CodeDeploy and the API stage moto's CloudFormation skips are there, from the template
    alarms = session.client("cloudwatch").describe_alarms()["MetricAlarms"]
    expected_alarms = [
        r
        for template in cloud.deployer.last_templates.values()
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarms) == len(expected_alarms) > 0
    new_version = next(a for a in alarms if a["AlarmName"].endswith(("NewVersionFunctionErrors9E3FD348",)))
    assert {d["Name"]: d["Value"] for d in new_version["Dimensions"]} == {
        "FunctionName": FUNCTION,
        "Resource": f"{FUNCTION}:live",
        "ExecutedVersion": "1",
    }
    codedeploy = session.client("codedeploy")
    (application,) = codedeploy.list_applications()["applications"]
    (group,) = codedeploy.list_deployment_groups(applicationName=application)["deploymentGroups"]
    info = codedeploy.get_deployment_group(applicationName=application, deploymentGroupName=group)[
        "deploymentGroupInfo"
    ]
    assert info["deploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert len(info["alarmConfiguration"]["alarms"]) == 3
    # one REST API per model, each with its stage and only its own model's routes
    apigw = session.client("apigateway")
    assert len(apigw.get_rest_apis()["items"]) == len(cloud.gateway.apis) == 2
    for api in cloud.gateway.apis:
        assert [s["stageName"] for s in apigw.get_stages(restApiId=api.id)["item"]] == ["dev"]
    iris, digits = cloud.gateway.api_of("iris"), cloud.gateway.api_of("digits")
    assert iris is not None
    assert digits is not None
    assert iris is not digits
    assert {(m.resource_path, m.http_method, m.authorization) for m in iris.methods} >= {
        ("/models/iris/predict", "POST", "AWS_IAM"),
        ("/models/iris/metadata", "GET", "AWS_IAM"),
        ("/models/iris/health", "GET", "AWS_IAM"),
    }
    assert all(m.resource_path.startswith("/models/iris/") for m in iris.methods)
    assert {(m.resource_path, m.http_method) for m in digits.methods} == {("/models/digits/predict", "POST")}
    rules = session.client("events").list_rules()["Rules"]
    assert len(rules) == 3
    buckets = {b["Name"] for b in session.client("s3").list_buckets()["Buckets"]}
    assert cloud.ready is not None
    assert cloud.ready.bucket in buckets
    batch_bucket = cloud.ready.bucket
    assert session.client("s3").get_bucket_versioning(Bucket=batch_bucket)["Status"] == "Enabled"
    # (moto does not echo EventBridgeConfiguration back; the batch test below shows S3 events arrive)
    assert len(session.client("dynamodb").list_tables()["TableNames"]) == 1
    endpoint = session.client("sagemaker").describe_endpoint(EndpointName="mdk-dev-digits")
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == ["primary"]


# ---------------------------------------------------------------------------------------- the API


def test_every_route_answers_through_the_gateway(cloud: LocalCloud) -> None:
    api = cloud.gateway.url
    status, _, body = signed(f"{api}models/iris/health")
    assert status == 200
    assert json.loads(body)["version"] == V1
    status, _, body = signed(f"{api}models/iris/metadata")
    assert status == 200
    assert json.loads(body)["name"] == "iris"
    status, headers, body = signed(
        f"{api}models/iris/predict",
        method="POST",
        body=json.dumps(IRIS).encode(),
        headers={"content-type": "application/json"},
    )
    assert status == 200, body
    assert [p["label"] for p in json.loads(body)["predictions"]] == ["virginica", "virginica"]
    digits = json.loads((REPO / "models/digits/v1/example.json").read_text())
    status, headers, body = signed(
        f"{api}models/digits/predict",
        method="POST",
        body=json.dumps(digits).encode(),
        headers={"content-type": "application/json"},
    )
    assert status == 200, body
    assert len(json.loads(body)["predictions"]) == len(digits["instances"])
    assert headers.get("x-amzn-invoked-production-variant") == "primary"


def test_a_clients_mistakes_get_clear_4xx_from_each_backend(cloud: LocalCloud) -> None:
    api = cloud.gateway.url
    status, _, body = signed(
        f"{api}models/iris/predict",
        method="POST",
        body=b'{"instances": [[1, 2]]}',
        headers={"content-type": "application/json"},
    )
    assert status == 422  # the runtime's answer for a well-formed request the model cannot take
    assert (
        json.loads(body)["error"]["message"]
        == "instances: expected each instance of shape [4] (float32), got shape [2]"
    )
    status, _, body = signed(
        f"{api}models/digits/predict",
        method="POST",
        body=b'{"instances": "x"}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= status < 500, body


def test_the_api_refuses_unsigned_and_wrongly_signed_calls(cloud: LocalCloud) -> None:
    api = cloud.gateway.url
    status, _headers, body = call(f"{api}models/iris/health")
    assert status == 403
    assert json.loads(body) == {"error": {"code": "client_error", "message": "Missing Authentication Token"}}
    status, _, body = signed(f"{api}models/iris/health", secret="not-the-secret")
    assert status == 403
    assert "signature" in json.loads(body)["error"]["message"]
    status, _, body = signed(f"{api}models/iris/health", region="eu-west-1")
    assert status == 403
    status, _, _ = signed(f"{api}models/nope/health")
    assert status == 403  # no such route: API Gateway's answer, not the function's


# ---------------------------------------------------------------------------------------- batch


def test_a_file_uploaded_to_the_inbox_comes_back_as_results_and_a_reconciled_manifest(
    cloud: LocalCloud,
) -> None:
    s3 = cloud.session.client("s3")
    bucket = cloud.ready.bucket if cloud.ready else None
    assert bucket
    lines = [json.dumps(row) for row in IRIS["instances"] * 3] + [
        '{"broken',
        json.dumps([1.0, 2.0, 3.0, 4.0]),
    ]
    s3.put_object(Bucket=bucket, Key="incoming/iris/day-1.jsonl", Body=("\n".join(lines) + "\n").encode())
    manifest = wait_for_manifest(s3, bucket, "day-1.jsonl")
    assert manifest["state"] == "Completed", manifest
    assert manifest["input"]["lines"] == len(lines) == 8
    outputs = [
        o["Key"]
        for o in s3.list_objects_v2(
            Bucket=bucket, Prefix=manifest["output"]["prefix"].split(bucket + "/", 1)[1]
        )["Contents"]
    ]
    (output,) = [k for k in outputs if k.endswith(".out")]
    answers = s3.get_object(Bucket=bucket, Key=output)["Body"].read().decode().splitlines()
    assert len(answers) == len(lines)  # one answer per input line, the bad one included
    assert "error" in json.loads(answers[6])
    assert json.loads(answers[0])["label"] == "virginica"
    assert cloud.transforms.finished[-1]["TransformJobStatus"] == "Completed"


def wait_for_manifest(s3: Any, bucket: str, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in s3.list_objects_v2(Bucket=bucket, Prefix="results/").get("Contents", []):
            if item["Key"].endswith("_status.json"):
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                if manifest["input"]["key"].endswith(name) and manifest["state"] not in (
                    "Received",
                    "InProgress",
                ):
                    return dict(manifest)
        time.sleep(0.25)
    raise AssertionError(f"no final manifest for {name} within {timeout} s")


# -------------------------------------------------------------------------------------- rollouts


def test_redeploying_a_changed_model_runs_the_canary_to_promotion(cloud: LocalCloud, config: Config) -> None:
    config.iris_artifact(REPO / "models/iris/v2/model.onnx")
    cloud.deploy()
    (rollout,) = cloud.rollouts
    seen: Counter[str] = Counter()
    while not rollout.done.is_set():
        seen[health_version(cloud)] += 1
    assert rollout.status == "Succeeded", rollout.message
    assert rollout.steps.percents == (10.0,)
    assert alias(cloud) == ("2", {})
    assert health_version(cloud) == V2
    deployment = cloud.session.client("codedeploy").get_deployment(deploymentId=rollout.id)["deploymentInfo"]
    assert deployment["status"] == "Succeeded"
    assert seen[V1] > 0  # the old version kept serving during the canary


def test_a_ten_percent_split_routes_about_one_request_in_ten(cloud: LocalCloud, mdk: Any) -> None:
    result = mdk("rollout", "iris", "--to", "1", "--percent", "10")
    assert result.code == 0, result.stderr
    assert alias(cloud) == ("2", {"1": 0.1})
    n = 300
    on_v1 = sum(health_version(cloud) == V1 for _ in range(n))
    mean, sd = n * 0.1, math.sqrt(n * 0.1 * 0.9)
    assert abs(on_v1 - mean) <= 4.5 * sd, f"{on_v1} of {n} on the 10 % version"


def test_mdk_rollback_puts_the_previous_version_back_at_once(cloud: LocalCloud, mdk: Any) -> None:
    result = mdk("rollback", "iris")  # first, the split by hand goes: all traffic on the primary again
    assert result.code == 0, result.stdout + result.stderr
    assert alias(cloud) == ("2", {})
    result = mdk("rollback", "iris")  # then the primary goes back to what served before the deploy
    assert result.code == 0, result.stdout + result.stderr
    assert alias(cloud) == ("1", {}), result.stdout
    assert {health_version(cloud) for _ in range(10)} == {V1}


def test_a_broken_model_is_kept_from_traffic_by_the_pre_traffic_hook(
    cloud: LocalCloud, config: Config, tmp_path: Path
) -> None:
    before = alias(cloud)
    config.iris_artifact(poisoned(REPO / "models/iris/v1/model.onnx", tmp_path / "nan" / "model.onnx"))
    started = len(cloud.rollouts)
    ready = cloud.deploy()
    assert len(cloud.rollouts) == started + 1, [s.alias_changes for s in ready.stacks]
    rollout = cloud.rollouts[-1]
    assert rollout.done.wait(120)
    assert rollout.status == "Failed"
    assert "BeforeAllowTraffic" in rollout.message
    assert alias(cloud) == before  # not one request went to it
    deployment = cloud.session.client("codedeploy").get_deployment(deploymentId=rollout.id)["deploymentInfo"]
    assert deployment["status"] == "Failed"


def test_an_alarm_on_the_new_version_mid_canary_rolls_the_alias_back(
    cloud: LocalCloud, config: Config
) -> None:
    """The new version passes the hook, then fails under traffic: its Errors (by ExecutedVersion, as
    Lambda reports them) cross the rollback alarm's threshold during the canary."""
    before = alias(cloud)
    config.iris_artifact(REPO / "models/iris/v2/model.onnx")
    started = len(cloud.rollouts)
    cloud.deploy()
    assert len(cloud.rollouts) == started + 1
    rollout = cloud.rollouts[-1]
    dimensions = [
        {"Name": "FunctionName", "Value": FUNCTION},
        {"Name": "Resource", "Value": f"{FUNCTION}:live"},
        {"Name": "ExecutedVersion", "Value": rollout.change.to_version},
    ]
    cloudwatch = cloud.session.client("cloudwatch")
    while not rollout.done.wait(0.1):
        cloudwatch.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[{"MetricName": "Errors", "Dimensions": dimensions, "Value": 5.0}],
        )
    assert rollout.status == "Failed", rollout.message
    assert "NewVersionFunctionErrors" in rollout.message
    assert alias(cloud) == before
    (state,) = cloudwatch.describe_alarms(
        AlarmNamePrefix="mdk-dev-model-iris-ModelirisNewVersionFunctionErrors"
    )["MetricAlarms"]
    assert state["StateValue"] == "ALARM"
