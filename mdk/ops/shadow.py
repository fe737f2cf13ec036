"""Shadow testing from the command line: start, stop, and the candidate's report.

Starting and stopping belong to the model's backend (:func:`mdk.ops.traffic.backend`): Lambda's setting
in SSM that the live function reads, SageMaker's shadow variant on a new endpoint config. The report
reads the candidate's Shadow* metrics (what a Lambda candidate emits) back from CloudWatch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdk.ops.context import Ops, OpsError
from mdk.ops.results import ShadowChange, ShadowReport
from mdk.ops.traffic import backend

NAMESPACE = "mdk"
SERVICE = "mdk-inference"


def _check_sample(sample: float) -> None:
    if not 0 < sample <= 1:
        raise OpsError(f"--sample: expected a fraction above 0 and at most 1, got {sample:g}")


def start(
    ops: Ops, model: str, candidate: str, sample: float, *, instance_type: str | None = None
) -> ShadowChange:
    _check_sample(sample)
    return backend(ops, model).shadow_start(candidate, sample, instance_type=instance_type)


def stop(ops: Ops, model: str) -> ShadowChange:
    return backend(ops, model).shadow_stop()


def report(ops: Ops, model: str, *, hours: float = 24, candidate: str | None = None) -> ShadowReport:
    """Agreement, differences and latencies the candidate reported over the last ``hours``."""
    candidate = backend(ops, model).shadow_candidate(candidate)
    end = datetime.now(UTC) + timedelta(minutes=1)  # the current minute included
    start_time = end - timedelta(hours=hours)
    period = max(60, int(hours * 3600 // 60) * 60)

    def stat(metric: str, statistic: str) -> float | None:
        response = ops.call(
            "cloudwatch",
            "get_metric_statistics",
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=[
                {"Name": "Model", "Value": model},
                {"Name": "CandidateVersion", "Value": str(candidate)},
                {"Name": "service", "Value": SERVICE},
            ],
            StartTime=start_time,
            EndTime=end,
            Period=period,
            Statistics=[statistic, "SampleCount"],
        )
        points = response.get("Datapoints", [])
        if not points:
            return None
        if statistic == "Sum":
            return float(sum(p["Sum"] for p in points))
        if statistic == "Maximum":
            return float(max(p["Maximum"] for p in points))
        weight = sum(p["SampleCount"] for p in points)  # the window may straddle two periods
        return round(float(sum(p["Average"] * p["SampleCount"] for p in points) / weight), 6)

    samples = stat("ShadowSamples", "Sum") or 0.0
    live = stat("ShadowLiveLatency", "Average")
    shadow = stat("ShadowLatency", "Average")
    return ShadowReport(
        model=model,
        candidate=candidate,
        hours=hours,
        samples=int(samples),
        agreement_percent=stat("ShadowAgreement", "Average"),
        max_abs_diff=stat("ShadowMaxAbsDiff", "Maximum"),
        candidate_latency_ms=shadow,
        live_latency_ms=live,
        latency_delta_ms=None if live is None or shadow is None else round(shadow - live, 3),
        errors=int(stat("ShadowErrors", "Sum") or 0),
    )
