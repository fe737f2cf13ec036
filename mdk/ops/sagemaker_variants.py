"""A SageMaker model's traffic: the endpoint's production variants, their weights, a shadow variant.

Moving traffic is one UpdateEndpointWeightsAndCapacities call (never a CloudFormation update). A
shadow is a new endpoint config with the current production variant and one shadow variant (SageMaker
takes exactly one production variant next to a shadow: checked here, as the kit's config check does),
applied with UpdateEndpoint; stopping applies a config without the shadow. The stack's next deploy
replaces a config made here with its own.
"""

from __future__ import annotations

import time
from typing import Any

from mdk.ops.context import OnModel, OpsError
from mdk.ops.results import ModelStatus, Rollback, ShadowChange, Share, Shift, Split
from mdk.registry import SageMakerTopology

UNIT = "variant"
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


class SageMakerVariants(OnModel):
    """The Traffic of a SageMaker model (:class:`mdk.ops.traffic.Traffic`)."""

    @property
    def topology(self) -> SageMakerTopology:
        assert self.deployed.sagemaker is not None
        return self.deployed.sagemaker

    @property
    def primary(self) -> str:
        return self.topology.variants[0]

    def endpoint(self) -> dict[str, Any]:
        endpoint: dict[str, Any] = self.ops.call(
            "sagemaker", "describe_endpoint", EndpointName=self.topology.endpoint_name
        )
        return endpoint

    def status(self) -> ModelStatus:
        endpoint = self.endpoint()
        weights = variant_weights(endpoint)
        total = sum(weights.values()) or 1.0
        traffic = [
            Share(
                v["VariantName"],
                round(weights[v["VariantName"]] / total, 6),
                "production",
                str(v.get("CurrentInstanceCount")),
                {
                    "instances": v.get("CurrentInstanceCount"),
                    "desired_instances": v.get("DesiredInstanceCount"),
                },
            )
            for v in endpoint.get("ProductionVariants", [])
        ]
        traffic += [
            Share(
                v["VariantName"],
                v.get("CurrentWeight"),
                "shadow",
                str(v.get("CurrentInstanceCount")),
                {"instances": v.get("CurrentInstanceCount")},
            )
            for v in endpoint.get("ShadowProductionVariants", [])
        ]
        state = endpoint.get("EndpointStatus")
        update = None
        if state in ("Updating", "SystemUpdating"):
            update = {"status": state, "config": endpoint.get("EndpointConfigName")}
        alarms = self.ops.alarm_states(self.deployed.alarms)
        return ModelStatus.of(
            self.deployed, alarms, UNIT, "instances", traffic, deployment=update, endpoint_status=state
        )

    # -- moving traffic -------------------------------------------------------------------------------

    def _set_weights(self, weights: Split) -> None:
        self.ops.call(
            "sagemaker",
            "update_endpoint_weights_and_capacities",
            EndpointName=self.topology.endpoint_name,
            DesiredWeightsAndCapacities=[{"VariantName": k, "DesiredWeight": v} for k, v in weights.items()],
        )

    def _known(self, weights: Split, variant: str) -> None:
        if variant not in weights:
            raise OpsError(
                f"model {self.deployed.model} has no variant {variant!r} (variants: {', '.join(weights)})"
            )

    def rollout(self, to: str, share: float, *, force: bool) -> Shift:
        weights = variant_weights(self.endpoint())
        self._known(weights, to)
        others = {k: v for k, v in weights.items() if k != to}
        rest = sum(others.values())
        new = {to: share}
        for name, weight in others.items():  # the rest keep their proportions among themselves
            new[name] = round((1 - share) * (weight / rest if rest else 1 / len(others)), 6)
        self._set_weights(new)
        return Shift(self.deployed.model, UNIT, new)

    def promote(self, variant: str | None, *, force: bool) -> Shift:
        weights = variant_weights(self.endpoint())
        primary = self.primary
        candidates = {k: v for k, v in weights.items() if k != primary and v > 0}
        chosen = variant or (max(candidates, key=candidates.__getitem__) if candidates else None)
        if chosen is None:
            raise OpsError(
                f"nothing to promote: variant {primary} takes all traffic of {self.deployed.model}"
            )
        self._known(weights, chosen)
        new = {k: (1.0 if k == chosen else 0.0) for k in weights}
        self._set_weights(new)
        return Shift(self.deployed.model, UNIT, new)

    def rollback(self) -> Rollback:
        model = self.deployed.model
        endpoint = self.endpoint()
        weights = variant_weights(endpoint)
        primary = self.primary
        if any(w > 0 for k, w in weights.items() if k != primary):
            new = {k: (1.0 if k == primary else 0.0) for k in weights}
            self._set_weights(new)
            return Rollback(model, UNIT, weights, new)
        if endpoint.get("EndpointStatus") == "Updating" and self.topology.rollback_alarms:
            # A guardrail deployment in flight rolls back when one of its alarms fires: fire it now.
            alarm = self.topology.rollback_alarms[0]
            self.ops.call(
                "cloudwatch",
                "set_alarm_state",
                AlarmName=alarm,
                StateValue="ALARM",
                StateReason="mdk rollback: an operator rolled the deployment back",
            )
            return Rollback(model, UNIT, weights, None, rollback_alarm=alarm)
        raise OpsError(
            f"nothing to roll back: variant {primary} takes all traffic of {model} and no update is in flight"
        )

    # -- shadow -------------------------------------------------------------------------------------

    def _current_config(self) -> dict[str, Any]:
        name = self.endpoint()["EndpointConfigName"]
        config: dict[str, Any] = self.ops.call(
            "sagemaker", "describe_endpoint_config", EndpointConfigName=name
        )
        return config

    def _new_config(self, config: dict[str, Any], shadow: list[dict[str, Any]]) -> str:
        endpoint = self.topology.endpoint_name
        name = f"{endpoint[:40]}-{'shadow' if shadow else 'noshadow'}-{int(time.time())}"
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
        self.ops.call("sagemaker", "create_endpoint_config", **request)
        self.ops.call("sagemaker", "update_endpoint", EndpointName=endpoint, EndpointConfigName=name)
        return name

    def shadow_start(self, candidate: str, sample: float, *, instance_type: str | None) -> ShadowChange:
        config = self._current_config()
        production = config["ProductionVariants"]
        if len(production) != 1:
            names = ", ".join(v["VariantName"] for v in production)
            raise OpsError(
                f"a shadow variant needs exactly one production variant (SageMaker's rule); "
                f"{self.deployed.model} has {len(production)} ({names}): promote one first"
            )
        self.ops.call("sagemaker", "describe_model", ModelName=candidate)  # the candidate model must exist
        live = production[0]
        shadow = {
            "VariantName": SHADOW_VARIANT,
            "ModelName": candidate,
            "InstanceType": instance_type or live["InstanceType"],
            "InitialInstanceCount": 1,
            # SageMaker mirrors shadow weight / production weight of the requests.
            "InitialVariantWeight": round(float(live.get("InitialVariantWeight", 1.0)) * sample, 6),
        }
        name = self._new_config(config, [shadow])
        return ShadowChange(
            self.deployed.model,
            True,
            candidate=candidate,
            sample=sample,
            endpoint_config=name,
            shadow_variant=shadow,
        )

    def shadow_stop(self) -> ShadowChange:
        config = self._current_config()
        if not config.get("ShadowProductionVariants"):
            raise OpsError(f"no shadow variant on {self.deployed.model}'s endpoint")
        return ShadowChange(self.deployed.model, False, endpoint_config=self._new_config(config, []))

    def shadow_candidate(self, named: str | None) -> str:
        raise OpsError(
            f"{self.deployed.model} runs on SageMaker: compare its shadow variant on the endpoint's "
            "dashboard "
            "(SageMaker reports shadow variants' metrics per variant)"
        )


def variant_weights(endpoint: dict[str, Any]) -> Split:
    return {
        v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)))
        for v in endpoint.get("ProductionVariants", [])
    }
