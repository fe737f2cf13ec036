"""No client mistake can roll a deployment back: every alarm that CodeDeploy or SageMaker's deployment
guardrails watch counts server faults only, from the synthesized templates.

What each metric counts (AWS documentation):
* ``AWS/Lambda Errors``: invocations that result in a function error (an exception, a timeout, the runtime
  failing); a request Lambda refuses (over 6 MB, throttled) is an invocation error, not counted ("Types of
  metrics for Lambda functions", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html).
  The function answers every client mistake itself (4xx), an oversized answer included (413).
* ``mdk ServerErrors``: the function's own count of 5xx answers (``lambda_handlers.inference``); a 4xx
  (400/404/405/406/413/415/422) is ``ClientErrors``.
* ``AWS/SageMaker Invocation5XXErrors``: InvokeEndpoint requests where the model returned a 5xx; a model's
  4xx is ``Invocation4XXErrors`` ("Amazon SageMaker AI metrics in Amazon CloudWatch",
  https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html).
* ``Duration`` / ``ModelLatency`` percentiles: how slow the new version is.
API Gateway's own refusals (throttling 429, auth 401/403, a body over 10 MB) never reach the function or
the endpoint, and no rollback alarm watches API Gateway's ``4XXError``/``5XXError``.
"""

from __future__ import annotations

from typing import Any

import pytest

from mdk_runtime import telemetry
from mdk_runtime.errors import InferenceTimeout
from tests.infra.conftest import Synth, resources

# The metrics a rollback alarm may watch: each counts only what the server did wrong (or how slow it was).
SERVER_FAULT_METRICS = {
    ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Duration"),
    (telemetry.NAMESPACE, telemetry.SERVER_ERRORS),
    ("AWS/SageMaker", "Invocation5XXErrors"),
    ("AWS/SageMaker", "ModelLatency"),
}
CLIENT_METRICS = {
    (telemetry.NAMESPACE, telemetry.CLIENT_ERRORS),
    (telemetry.NAMESPACE, telemetry.ERRORS_BY_CODE),
    ("AWS/SageMaker", "Invocation4XXErrors"),
    ("AWS/ApiGateway", "4XXError"),
    ("AWS/ApiGateway", "5XXError"),  # a 502 for a body Lambda refused is counted here
    ("AWS/Lambda", "Invocations"),
}


def alarm_metrics(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric) of each metric an alarm reads, math expressions included."""
    if "MetricName" in alarm:
        return {(alarm["Namespace"], alarm["MetricName"])}
    found = set()
    for query in alarm.get("Metrics", []):
        assert "Expression" not in query or "SEARCH" not in query["Expression"], query
        stat = query.get("MetricStat")
        if stat is not None:
            found.add((stat["Metric"]["Namespace"], stat["Metric"]["MetricName"]))
    return found


def rollback_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every alarm a CodeDeploy deployment group or a SageMaker endpoint's guardrails watch, by id."""
    ids: set[str] = set()
    for group in resources(template, "AWS::CodeDeploy::DeploymentGroup").values():
        ids |= {a["Name"]["Ref"] for a in group["Properties"]["AlarmConfiguration"]["Alarms"]}
    for endpoint in resources(template, "AWS::SageMaker::Endpoint").values():
        config = endpoint["Properties"].get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {})
        ids |= {a["AlarmName"]["Ref"] for a in config.get("Alarms", [])}
    return {k: template["Resources"][k]["Properties"] for k in sorted(ids)}


@pytest.mark.parametrize("synth_name", ["synth_repo_config", "synth_sagemaker", "synth_variant"])
def test_rollback_alarms_count_server_faults_only(synth_name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    alarms = rollback_alarms(synth.merged_json)
    assert alarms
    for alarm_id, alarm in alarms.items():
        metrics = alarm_metrics(alarm)
        assert metrics, alarm_id
        assert metrics <= SERVER_FAULT_METRICS, (alarm_id, metrics)
        assert not metrics & CLIENT_METRICS, (alarm_id, metrics)


def test_each_rollback_alarm_and_its_metric(synth_repo_config: Synth) -> None:
    """The repository's config: a Lambda model (CodeDeploy) and a SageMaker model (guardrails)."""
    template = synth_repo_config.merged
    alarms = rollback_alarms(synth_repo_config.merged_json)
    seen = sorted(
        (p["Namespace"], p["MetricName"], p.get("Statistic") or p.get("ExtendedStatistic"))
        for p in alarms.values()
    )
    assert seen == [
        ("AWS/Lambda", "Duration", "p99"),
        ("AWS/Lambda", "Errors", "Sum"),
        ("AWS/SageMaker", "Invocation5XXErrors", "Sum"),
        ("AWS/SageMaker", "ModelLatency", "p99"),
        ("mdk", "ServerErrors", "Sum"),
    ]
    # Through the assertions API, every alarm of the stack: none counts client errors; an alarm on
    # ErrorsByCode watches a server code only (504 inference_timeout: the model too slow).
    for namespace, metric in CLIENT_METRICS - {("AWS/Lambda", "Invocations"), ("mdk", "ErrorsByCode")}:
        assert not template.find_resources(
            "AWS::CloudWatch::Alarm", {"Properties": {"Namespace": namespace, "MetricName": metric}}
        ), (namespace, metric)
    by_code = template.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"MetricName": telemetry.ERRORS_BY_CODE}}
    )
    codes = {
        d["Value"]
        for alarm in by_code.values()
        for d in alarm["Properties"]["Dimensions"]
        if d["Name"] == telemetry.DIM_ERROR_CODE
    }
    assert codes == {InferenceTimeout.code}
    assert InferenceTimeout.status >= 500
