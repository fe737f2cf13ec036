"""The local cloud's pure parts: template preparation, rollout steps, alarm statistics, routing, EMF."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mdk.local.cloud.request_validation import match_path
from mdk.local.cloud.services.apigateway import _jwt_claims
from mdk.local.cloud.services.cloudwatch import Samples, emf_data
from mdk.local.cloud.services.codedeploy import Steps
from mdk.local.cloud.services.lambda_ import split_function
from mdk.local.cloud.template import DEFERRED, dependency_order, physical_name, prepare

TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Alias": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {
                "FunctionName": {"Ref": "Fn"},
                "FunctionVersion": {"Fn::GetAtt": ["Ver", "Version"]},
                "Name": "live",
            },
            "DependsOn": ["Errors"],
        },
        "Method": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "Integration": {"Uri": {"Fn::Join": ["", ["arn:x/", {"Ref": "Alias"}, "/invocations"]]}}
            },
        },
        "Ver": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Fn"}}},
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {}}},
        "Errors": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Threshold": 1}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"Tags": [{"Key": "a", "Value": "b"}]}},
        "Param": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Tags": {"a": "b"}, "Value": {"Ref": "Errors"}},
        },
    },
    "Rules": {"CheckBootstrapVersion": {}},
    "Parameters": {"BootstrapVersion": {"Type": "String"}},
}


def test_prepare_orders_names_and_defers_what_moto_skips() -> None:
    prepared = prepare(TEMPLATE, "stack", "eu-west-1")
    kept = list(prepared.template["Resources"])
    assert kept.index("Fn") < kept.index("Ver")  # dependencies first
    assert set(prepared.deferred) == {"Alias", "Errors"}
    assert all(r["Type"] not in DEFERRED for r in prepared.template["Resources"].values())
    assert prepared.names["Fn"] == "stack-Fn"
    alias_arn = "arn:aws:lambda:eu-west-1:123456789012:function:stack-Fn:live"
    uri = prepared.template["Resources"]["Method"]["Properties"]["Integration"]["Uri"]
    assert uri == {
        "Fn::Join": ["", ["arn:x/", alias_arn, "/invocations"]]
    }  # the alias's ARN, known beforehand
    assert prepared.template["Resources"]["Param"]["Properties"]["Value"] == "stack-Errors"
    assert prepared.template["Resources"]["Param"]["Properties"]["Tags"] == [{"Key": "a", "Value": "b"}]
    assert "Tags" not in prepared.template["Resources"]["Key"]["Properties"]
    assert prepared.deferred["Alias"]["Properties"]["FunctionVersion"] == {"Fn::GetAtt": ["Ver", "Version"]}
    assert "Rules" not in prepared.template
    assert "BootstrapVersion" not in prepared.template["Parameters"]
    assert TEMPLATE["Resources"]["Fn"]["Properties"] == {"Code": {}}  # the input is not modified


def test_dependency_order_follows_sub_and_depends_on() -> None:
    resources = {
        "B": {"Type": "T", "Properties": {"X": {"Fn::Sub": "${A.Arn}/x"}}},
        "A": {"Type": "T", "DependsOn": "C"},
        "C": {"Type": "T"},
    }
    assert dependency_order(resources) == ["C", "A", "B"]


def test_long_physical_names_are_cut_with_a_digest() -> None:
    name = physical_name("stack", "L" * 80)
    assert len(name) == 64
    assert name != physical_name("stack", "L" * 81)


@pytest.mark.parametrize(
    ("config", "percents", "minutes"),
    [
        ("CodeDeployDefault.LambdaCanary10Percent5Minutes", (10.0,), 5),
        ("CodeDeployDefault.LambdaCanary10Percent30Minutes", (10.0,), 30),
        (
            "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            tuple(float(p) for p in range(10, 100, 10)),
            1,
        ),
        ("CodeDeployDefault.LambdaAllAtOnce", (), 0),
    ],
)
def test_deployment_configs_become_traffic_steps(
    config: str, percents: tuple[float, ...], minutes: int
) -> None:
    assert Steps.from_config(config, {}) == Steps(percents, minutes)


def test_a_custom_deployment_config_is_read_from_the_stack() -> None:
    custom = {
        "c": {
            "TrafficRoutingConfig": {
                "Type": "TimeBasedLinear",
                "TimeBasedLinear": {"LinearPercentage": 25, "LinearInterval": 2},
            }
        }
    }
    assert Steps.from_config("c", custom) == Steps((25.0, 50.0, 75.0), 2)


def test_alarm_statistics() -> None:
    samples = Samples()
    for v in range(1, 101):
        samples.add(float(v))
    assert samples.statistic("Sum") == 5050
    assert samples.statistic("Average") == 50.5
    assert samples.statistic("SampleCount") == 100
    assert samples.statistic("p99") == 99
    with pytest.raises(ValueError, match="tm99"):
        samples.statistic("tm99")
    one = Samples()
    one.add(5.0)
    assert one.statistic("p50") == 5
    # Counts stored as statistic sets (the local publisher aggregates them per second) mix with raw values.
    samples.add_set(total=10.0, count=4.0, minimum=0.0, maximum=7.0)
    assert (samples.statistic("Sum"), samples.statistic("SampleCount")) == (5060, 104)
    assert (samples.statistic("Minimum"), samples.statistic("Maximum")) == (0.0, 100.0)


def test_resource_paths_match_like_api_gateway() -> None:
    assert match_path("/models/{name}/predict", "/models/iris/predict") == (2, {"name": "iris"})
    assert match_path("/models/iris/predict", "/models/iris/predict") == (3, {})
    assert match_path("/models/iris/predict", "/models/iris") is None
    assert match_path("/files/{proxy+}", "/files/a/b/c") == (1, {"proxy": "a/b/c"})
    assert match_path("/files/{proxy+}", "/files") is None


def test_function_names_split_like_lambda() -> None:
    assert split_function("fn") == ("fn", None)
    assert split_function("fn:live") == ("fn", "live")
    assert split_function("arn:aws:lambda:us-east-1:1:function:fn:3") == ("fn", "3")
    assert split_function("arn:aws:lambda:us-east-1:1:function:fn", "live") == ("fn", "live")


def test_emf_lines_become_metric_data() -> None:
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": 1_700_000_000_000,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "mdk",
                        "Dimensions": [["Model", "ModelVersion"]],
                        "Metrics": [{"Name": "ServerErrors", "Unit": "Count"}],
                    }
                ],
            },
            "Model": "iris",
            "ModelVersion": "v1",
            "ServerErrors": [1, 2],
        }
    )
    data = list(emf_data(line))
    assert [(ns, d["Value"]) for ns, d in data] == [("mdk", 1.0), ("mdk", 2.0)]
    assert data[0][1]["Dimensions"] == [
        {"Name": "Model", "Value": "iris"},
        {"Name": "ModelVersion", "Value": "v1"},
    ]
    assert data[0][1]["Timestamp"] == datetime.fromtimestamp(1_700_000_000, UTC)
    assert list(emf_data("START RequestId: 1")) == []
    assert list(emf_data('{"_aws": "broken"}')) == []


def test_jwt_claims_are_read_without_a_key() -> None:
    assert _jwt_claims("a.eyJpc3MiOiJ4In0.c") == {"iss": "x"}
    assert _jwt_claims("not a token") is None
    assert _jwt_claims("a.!!!.c") is None


def test_only_motos_constant_s3_sequencer_is_replaced() -> None:
    from mdk.local.cloud.moto_adapter import MOTO_S3_SEQUENCER, _sequence

    def event(sequencer: str) -> dict[str, Any]:
        return {"source": "aws.s3", "detail": {"object": {"key": "k", "sequencer": sequencer}}}

    first, second = event(MOTO_S3_SEQUENCER), event(MOTO_S3_SEQUENCER)
    _sequence(first)
    _sequence(second)
    _sequence(first)  # the same event seen by a second rule keeps its new sequencer
    sequencers = [e["detail"]["object"]["sequencer"] for e in (first, second)]
    assert MOTO_S3_SEQUENCER not in sequencers
    assert sequencers[0] != sequencers[1]
    assert sequencers[0] < sequencers[1]  # they grow, as S3's do for one key
    client_sent = event("00FFFFFFFFFFFFFFFF")
    _sequence(client_sent)  # a redelivered or client-sent event keeps its sequencer
    assert client_sent["detail"]["object"]["sequencer"] == "00FFFFFFFFFFFFFFFF"


def test_the_local_cloudwatch_forgets_data_points_past_its_retention() -> None:
    import boto3
    from moto import mock_aws

    from mdk.local.cloud.moto_adapter import prune_metrics
    from mdk.local.cloud.services.cloudwatch import metric_values

    now = datetime.now(UTC)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        for age_s, value in ((600, 1.0), (300, 2.0), (5, 3.0)):
            cloudwatch.put_metric_data(
                Namespace="mdk",
                MetricData=[{"MetricName": "M", "Value": value, "Timestamp": now - timedelta(seconds=age_s)}],
            )
        assert prune_metrics("us-east-1", now - timedelta(seconds=400)) == 1
        assert sorted(metric_values("us-east-1", "mdk", "M", {}, now - timedelta(hours=1)).values) == [
            2.0,
            3.0,
        ]


def test_count_data_points_are_stored_per_second_as_statistic_sets() -> None:
    from mdk.local.cloud.services.cloudwatch import aggregate_counts

    t0 = datetime(2026, 11, 29, 12, 0, 0, 100_000, tzinfo=UTC)
    dims = [{"Name": "FunctionName", "Value": "f"}]
    data = [
        {"MetricName": "Errors", "Dimensions": dims, "Unit": "Count", "Value": v, "Timestamp": t0 + dt}
        for v, dt in ((0.0, timedelta(0)), (1.0, timedelta(milliseconds=500)), (0.0, timedelta(seconds=1)))
    ]
    data.append(
        {"MetricName": "Duration", "Dimensions": dims, "Unit": "Milliseconds", "Value": 7.0, "Timestamp": t0}
    )
    out = aggregate_counts(data)
    raw = [d for d in out if "Value" in d]
    sets = sorted((d for d in out if "StatisticValues" in d), key=lambda d: d["Timestamp"])
    assert [d["MetricName"] for d in raw] == ["Duration"]  # latencies stay raw: alarms ask percentiles
    assert [d["StatisticValues"] for d in sets] == [
        {"SampleCount": 2.0, "Sum": 1.0, "Minimum": 0.0, "Maximum": 1.0},
        {"SampleCount": 1.0, "Sum": 0.0, "Minimum": 0.0, "Maximum": 0.0},
    ]


def test_the_local_invoke_api_refuses_oversized_requests_as_lambda_does() -> None:
    """boto3 gets the Invoke API's 413 RequestEntityTooLargeException (6 MB synchronous, 1 MB Event), and the
    function is not invoked."""
    import io
    import zipfile

    import boto3
    from botocore.exceptions import ClientError

    from mdk.local.cloud import moto_adapter
    from mdk.local.cloud.services.lambda_ import ASYNC_REQUEST_LIMIT, SYNC_REQUEST_LIMIT

    calls: list[tuple[str, int, bool]] = []

    def invoker(
        function: str, _qualifier: str | None, payload: bytes, asynchronous: bool
    ) -> tuple[bytes, bool]:
        calls.append((function, len(payload), asynchronous))
        return b'{"ok": true}', False

    aws = moto_adapter.LocalAws()
    aws.start()
    hooks = moto_adapter.HOOKS
    hooks.active, hooks.invoker = True, invoker
    try:
        session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
        iam = session.client("iam", endpoint_url=aws.endpoint_url)
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return event\n")
        client = session.client("lambda", endpoint_url=aws.endpoint_url)
        client.create_function(
            FunctionName="fn",
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
        )
        assert client.invoke(FunctionName="fn", Payload=b"1" * SYNC_REQUEST_LIMIT)["StatusCode"] == 200
        for size, kind in ((SYNC_REQUEST_LIMIT + 1, "RequestResponse"), (ASYNC_REQUEST_LIMIT + 1, "Event")):
            with pytest.raises(ClientError) as refused:
                client.invoke(FunctionName="fn", InvocationType=kind, Payload=b"1" * size)
            error = refused.value.response
            assert error["Error"]["Code"] == "RequestEntityTooLargeException"
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
            assert (
                f"{size} byte payload is too large for the {kind} invocation type"
                in error["Error"]["Message"]
            )
        assert calls == [("fn", SYNC_REQUEST_LIMIT, False)]
    finally:
        hooks.active, hooks.invoker = False, None
        aws.stop()
