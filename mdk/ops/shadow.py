"""Shadow testing from the command line.

Lambda: the setting in SSM that the live function reads (cached 30 s), so starting and stopping a
shadow publishes nothing; the report reads the candidate's Shadow* metrics back from CloudWatch.
SageMaker: a new endpoint config with the current production variant and one shadow variant
(SageMaker takes exactly one production variant next to a shadow: checked here, as the kit's config
check does), applied with UpdateEndpoint; stopping applies a config without the shadow. The stack's
next deploy replaces a config made here with its own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mdk.ops.context import Ops, OpsError
from mdk.ops.traffic import _alias, _lambda, _require_version
from mdk.registry import SHADOW_OFF, Deployed

NAMESPACE = "mdk"
SERVICE = "mdk-inference"
SHADOW_VARIANT = "shadow"
# Fields of a production variant that a new endpoint config may carry over.
VARIANT_FIELDS = (
    "VariantName",
    "ModelName",
    "InitialInstanceCount",
    "InstanceType",
    "InitialVariantWeight",
    "AcceleratorType",
    "VolumeSizeInGB",
    "ModelDataDownloadTimeoutInSeconds",
    "ContainerStartupHealthCheckTimeoutInSeconds",
    "ServerlessConfig",
    "ManagedInstanceScaling",
    "RoutingConfig",
    "InferenceAmiVersion",
)
CONFIG_FIELDS = ("DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig")


def _check_sample(sample: float) -> None:
    if not 0 < sample <= 1:
        raise OpsError(f"--sample: expected a fraction above 0 and at most 1, got {sample:g}")


def start(
    ops: Ops, model: str, candidate: str, sample: float, *, instance_type: str | None = None
) -> dict[str, Any]:
    _check_sample(sample)
    deployed = ops.deployed(model)
    if deployed.runtime == "sagemaker":
        return _start_endpoint(ops, deployed, candidate, sample, instance_type)
    _require_version(ops, deployed, candidate)
    primary, weights = _alias(ops, _lambda(deployed))
    if candidate == primary or candidate in weights:
        raise OpsError(f"version {candidate} already serves {model}'s traffic; shadow another version")
    setting = {"candidate": candidate, "sample": sample, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    _put(ops, deployed, setting)
    return {"model": model, "candidate": candidate, "sample": sample, "live": primary}


def stop(ops: Ops, model: str) -> dict[str, Any]:
    deployed = ops.deployed(model)
    if deployed.runtime == "sagemaker":
        return _stop_endpoint(ops, deployed)
    _put(ops, deployed, SHADOW_OFF)
    return {"model": model, "shadow": "off"}


def _put(ops: Ops, deployed: Deployed, setting: dict[str, Any]) -> None:
    if not deployed.shadow_parameter:
        raise OpsError(f"model {deployed.model} has no shadow setting in its registry (redeploy the stack)")
    ops.call(
        "ssm",
        "put_parameter",
        Name=deployed.shadow_parameter,
        Value=json.dumps(setting),
        Type="String",
        Overwrite=True,
    )


def report(ops: Ops, model: str, *, hours: float = 24, candidate: str | None = None) -> dict[str, Any]:
    """Agreement, differences and latencies the candidate reported over the last ``hours``."""
    deployed = ops.deployed(model)
    if deployed.runtime != "lambda":
        raise OpsError(
            f"{model} runs on SageMaker: compare its shadow variant on the endpoint's dashboard "
            "(SageMaker reports shadow variants' metrics per variant)"
        )
    if candidate is None:
        text = ops.parameter(deployed.shadow_parameter) if deployed.shadow_parameter else None
        candidate = (json.loads(text) if text else {}).get("candidate")
        if not candidate:
            raise OpsError(f"no shadow running for {model}: name the candidate with --candidate")
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
    return {
        "model": model,
        "candidate": str(candidate),
        "hours": hours,
        "samples": int(samples),
        "agreement_percent": stat("ShadowAgreement", "Average"),
        "max_abs_diff": stat("ShadowMaxAbsDiff", "Maximum"),
        "candidate_latency_ms": shadow,
        "live_latency_ms": live,
        "latency_delta_ms": None if live is None or shadow is None else round(shadow - live, 3),
        "errors": int(stat("ShadowErrors", "Sum") or 0),
    }


# -- SageMaker ------------------------------------------------------------------------------------------


def _current_config(ops: Ops, deployed: Deployed) -> tuple[str, dict[str, Any]]:
    assert deployed.sagemaker is not None
    endpoint = ops.call("sagemaker", "describe_endpoint", EndpointName=deployed.sagemaker.endpoint_name)
    name = endpoint["EndpointConfigName"]
    return name, ops.call("sagemaker", "describe_endpoint_config", EndpointConfigName=name)


def _new_config(
    ops: Ops, deployed: Deployed, config: dict[str, Any], shadow: list[dict[str, Any]]
) -> dict[str, Any]:
    assert deployed.sagemaker is not None
    name = f"{deployed.sagemaker.endpoint_name[:40]}-{'shadow' if shadow else 'noshadow'}-{int(time.time())}"
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {k: v for k, v in variant.items() if k in VARIANT_FIELDS}
            for variant in config["ProductionVariants"]
        ],
        **{k: config[k] for k in CONFIG_FIELDS if config.get(k)},
    }
    if shadow:
        request["ShadowProductionVariants"] = shadow
    ops.call("sagemaker", "create_endpoint_config", **request)
    ops.call(
        "sagemaker", "update_endpoint", EndpointName=deployed.sagemaker.endpoint_name, EndpointConfigName=name
    )
    return request


def _start_endpoint(
    ops: Ops, deployed: Deployed, candidate: str, sample: float, instance_type: str | None
) -> dict[str, Any]:
    _, config = _current_config(ops, deployed)
    production = config["ProductionVariants"]
    if len(production) != 1:
        names = ", ".join(v["VariantName"] for v in production)
        raise OpsError(
            f"a shadow variant needs exactly one production variant (SageMaker's rule); {deployed.model} "
            f"has {len(production)} ({names}): promote one first"
        )
    ops.call("sagemaker", "describe_model", ModelName=candidate)  # the candidate model must exist
    live = production[0]
    shadow = [
        {
            "VariantName": SHADOW_VARIANT,
            "ModelName": candidate,
            "InstanceType": instance_type or live["InstanceType"],
            "InitialInstanceCount": 1,
            # SageMaker mirrors shadow weight / production weight of the requests.
            "InitialVariantWeight": round(float(live.get("InitialVariantWeight", 1.0)) * sample, 6),
        }
    ]
    request = _new_config(ops, deployed, config, shadow)
    return {"model": deployed.model, "endpoint_config": request["EndpointConfigName"], "shadow": shadow[0]}


def _stop_endpoint(ops: Ops, deployed: Deployed) -> dict[str, Any]:
    _, config = _current_config(ops, deployed)
    if not config.get("ShadowProductionVariants"):
        raise OpsError(f"no shadow variant on {deployed.model}'s endpoint")
    request = _new_config(ops, deployed, config, [])
    return {"model": deployed.model, "endpoint_config": request["EndpointConfigName"], "shadow": "off"}
