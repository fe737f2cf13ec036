"""Capture as the stacks provision it: a Lambda model's function is told where and how much to capture,
may only put under its model's prefix (encrypted with the data key), and a lost record pages the topic;
the shared bucket keeps each model's captures for its retention; both runtimes write one layout."""

from __future__ import annotations

from mdk.bundle import model_spec
from mdk_runtime import telemetry
from tests.infra.conftest import Synth, resources
from tests.infra.layout import imported


def _function(template: dict[str, object], model: str) -> dict[str, object]:
    [function] = [
        r
        for k, r in resources(template, "AWS::Lambda::Function").items()
        if k.startswith(f"Model{model.replace('-', '')}Function")
    ]
    return function


def test_a_capturing_lambda_model_is_told_where_and_how_much(synth_variant: Synth) -> None:
    template = synth_variant.model_json("iris-fast")
    variables = _function(template, "iris-fast")["Properties"]["Environment"]["Variables"]  # type: ignore[index]
    version = model_spec(synth_variant.config.model("iris-fast")).version
    assert variables["MDK_CAPTURE_PERCENT"] == "25"
    assert variables["MDK_CAPTURE_PREFIX"] == f"capture/iris-fast/{version}"
    assert variables["MDK_CAPTURE_DROP"] == "customer_email"
    [bucket_id] = [k for k in resources(synth_variant.shared_json, "AWS::S3::Bucket") if "DataCapture" in k]
    assert variables["MDK_CAPTURE_BUCKET"] == imported(synth_variant, "capture-bucket", {"Ref": bucket_id})
    # a model without capture gets none of it
    other = _function(synth_variant.model_json("iris-big-bang"), "iris-big-bang")
    assert not [v for v in other["Properties"]["Environment"]["Variables"] if v.startswith("MDK_CAPTURE")]  # type: ignore[index]


def test_the_function_may_only_put_under_its_models_prefix(synth_variant: Synth) -> None:
    template = synth_variant.model_json("iris-fast")
    role = _function(template, "iris-fast")["Properties"]["Role"]["Fn::GetAtt"][0]  # type: ignore[index]
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in _list(s["Action"]))]
    [put] = [s for s in s3 if "capture" in str(s["Resource"])]
    assert _list(put["Action"]) == ["s3:PutObject"]
    assert str(put["Resource"]).endswith("/capture/iris-fast/*']]}")
    kms = [s for s in statements if "kms:GenerateDataKey" in _list(s["Action"])]
    assert kms
    assert all("kms:Decrypt" not in _list(s["Action"]) for s in kms)


def test_a_lost_capture_record_pages_the_topic(synth_variant: Synth) -> None:
    alarms = resources(synth_variant.model_json("iris-fast"), "AWS::CloudWatch::Alarm")
    [alarm] = [
        a["Properties"]
        for a in alarms.values()
        if a["Properties"].get("MetricName") == telemetry.CAPTURE_FAILED
    ]
    assert alarm["Threshold"] == 1
    assert alarm["Period"] == 300
    assert alarm["TreatMissingData"] == "notBreaching"
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dims[telemetry.DIM_MODEL] == "iris-fast"
    assert dims[telemetry.DIM_VERSION] == model_spec(synth_variant.config.model("iris-fast")).version
    assert alarm["AlarmActions"]
    assert not [
        a
        for a in alarms.values()
        if a["Properties"].get("MetricName") == telemetry.CAPTURE_FAILED and "big-bang" in str(a)
    ]


def test_each_models_captures_expire_after_its_retention(synth_variant: Synth) -> None:
    [bucket] = [
        b["Properties"]
        for k, b in resources(synth_variant.shared_json, "AWS::S3::Bucket").items()
        if "DataCapture" in k
    ]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    [rule] = [r for r in rules if r.get("Prefix") == "capture/iris-fast/"]
    assert rule["ExpirationInDays"] == 30
    assert rule["Status"] == "Enabled"
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]
