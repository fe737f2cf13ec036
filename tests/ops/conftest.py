"""A deployed topology on a moto server, as the stack leaves it: the operator commands act on it.

One moto server (real HTTP, ``AWS_ENDPOINT_URL``) for the session, reset before each test. The topology
is what ``cdk deploy`` creates for a Lambda model (a function with versions, the ``live`` alias, a
CodeDeploy application and group, rollback alarms, the registry and shadow parameters) and for a
SageMaker model (models, an endpoint config with two production variants, the endpoint), written
through boto3 with the registry entries the stack writes (``mdk.registry.Deployed``).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mdk.registry import (
    SHADOW_OFF,
    Deployed,
    LambdaTopology,
    SageMakerTopology,
    model_parameter,
    shadow_parameter,
)
from tests.mdk_cli import runner

REPO = Path(__file__).resolve().parents[2]
PROJECT = "mdk"
STAGE = "ops"
FUNCTION = "mdk-ops-serving-ModelirisFunction-AbC123"
ENDPOINT = "mdk-ops-serving-digits"
ALARMS = ["mdk-ops-iris-new-version-errors", "mdk-ops-iris-new-version-p99"]
BUCKET = "mdk-ops-batch"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Topology:
    url: str
    env: dict[str, str]
    role: str = ""
    versions: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    def alias(self) -> tuple[str, dict[str, float]]:
        alias = self.client("lambda").get_alias(FunctionName=FUNCTION, Name="live")
        return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get(
            "AdditionalVersionWeights"
        ) or {}

    def weights(self) -> dict[str, float]:
        endpoint = self.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
        return {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in endpoint["ProductionVariants"]}

    def set_alias(self, version: str, weights: dict[str, float] | None = None) -> None:
        self.client("lambda").update_alias(
            FunctionName=FUNCTION,
            Name="live",
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": weights or {}},
        )

    def alarm(self, name: str, state: str) -> None:
        self.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")

    def parameter(self, name: str) -> Any:
        return json.loads(self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])

    def codedeploy_deployment(self, current: str, target: str) -> str:
        appspec = {
            "version": 0.0,
            "Resources": [
                {
                    "iris": {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": FUNCTION,
                            "Alias": "live",
                            "CurrentVersion": current,
                            "TargetVersion": target,
                        },
                    }
                }
            ],
        }
        deployment: str = self.client("codedeploy").create_deployment(
            applicationName="mdk-ops-iris",
            deploymentGroupName="mdk-ops-iris-rollout",
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
        )["deploymentId"]
        return deployment


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", text)
    return buffer.getvalue()


def deploy(topology: Topology) -> None:
    iam = topology.client("iam")
    topology.role = iam.create_role(
        RoleName="mdk-ops-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    lam = topology.client("lambda")
    lam.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=topology.role,
        Handler="handler.handler",
        Code={"ZipFile": _zip("v1")},
        Description="model iris",
    )
    for n in (1, 2, 3):  # three deploys of the model, three versions
        lam.update_function_code(FunctionName=FUNCTION, ZipFile=_zip(f"v{n}"))
        version = lam.publish_version(FunctionName=FUNCTION, Description=f"model iris v{n}")["Version"]
        topology.versions.append(version)
    lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")
    codedeploy = topology.client("codedeploy")
    codedeploy.create_application(applicationName="mdk-ops-iris", computePlatform="Lambda")
    codedeploy.create_deployment_group(
        applicationName="mdk-ops-iris",
        deploymentGroupName="mdk-ops-iris-rollout",
        serviceRoleArn=topology.role,
        deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
    )
    cloudwatch = topology.client("cloudwatch")
    for name in ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="deployed")
    sagemaker = topology.client("sagemaker")
    for model in ("digits-primary", "digits-challenger", "digits-candidate"):
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=topology.role,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mdk-serving:gpu"},
        )
    variant = {"InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}
    sagemaker.create_endpoint_config(
        EndpointConfigName="digits-config-1",
        ProductionVariants=[
            {**variant, "VariantName": "primary", "ModelName": "digits-primary", "InitialVariantWeight": 1.0},
            {
                **variant,
                "VariantName": "challenger",
                "ModelName": "digits-challenger",
                "InitialVariantWeight": 0.0,
            },
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="digits-config-1")
    s3 = topology.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    ssm = topology.client("ssm")
    shadow = shadow_parameter(PROJECT, STAGE, "iris")
    ssm.put_parameter(Name=shadow, Value=json.dumps(SHADOW_OFF), Type="String")
    entries = [
        Deployed(
            model="iris",
            runtime="lambda",
            version="a6abf65a2a22",
            api_url=topology.env.get(
                "MDK_TEST_API_URL", "https://example.execute-api.us-east-1.amazonaws.com/ops/"
            ),
            alarms=ALARMS,
            shadow_parameter=shadow,
            lambda_=LambdaTopology(
                function_name=FUNCTION,
                alias="live",
                codedeploy_application="mdk-ops-iris",
                deployment_group="mdk-ops-iris-rollout",
            ),
            batch_bucket=BUCKET,
        ),
        Deployed(
            model="digits",
            runtime="sagemaker",
            version="fe9103d93426",
            api_url="https://example.execute-api.us-east-1.amazonaws.com/ops/",
            alarms=[],
            shadow_parameter="",
            sagemaker=SageMakerTopology(endpoint_name=ENDPOINT, variants=["primary", "challenger"]),
        ),
    ]
    for entry in entries:
        ssm.put_parameter(
            Name=model_parameter(PROJECT, STAGE, entry.model),
            Value=json.dumps(entry.to_json()),
            Type="String",
        )


@pytest.fixture
def topology(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Topology:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",  # moto answers unimplemented calls with 500: no retries
        "MDK_STAGE": STAGE,
        "COLUMNS": "200",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    topology = Topology(url=moto_url, env=env)
    deploy(topology)
    return topology


@pytest.fixture
def mdk(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``mdk(*args)``: the CLI's entry point in process (as the console script runs it)."""
    return runner(capsys, monkeypatch)
