"""The local Application Auto Scaling: the stacks' scalable targets and scaling policies.

moto's CloudFormation skips both types; they are registered through the API so that ``mdk status`` and
``aws application-autoscaling`` see what AWS would. Nothing scales locally (an endpoint variant runs one
container whatever its instance count).
"""

from __future__ import annotations

from typing import Any

from mdk.local.cloud.registry import Completion, completes


@completes("AWS::ApplicationAutoScaling::ScalableTarget")
def scalable_target(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    ctx.client("application-autoscaling").register_scalable_target(
        ServiceNamespace=props["ServiceNamespace"],
        ResourceId=props["ResourceId"],
        ScalableDimension=props["ScalableDimension"],
        MinCapacity=int(props["MinCapacity"]),
        MaxCapacity=int(props["MaxCapacity"]),
    )


@completes("AWS::ApplicationAutoScaling::ScalingPolicy")
def scaling_policy(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    target = next(
        (
            r["Properties"]
            for r in ctx.prepared.deferred.values()
            if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
        ),
        None,
    )
    if target is None:
        return
    target = ctx.resolve(target)
    config = props.get("TargetTrackingScalingPolicyConfiguration")
    kwargs: dict[str, Any] = {
        "PolicyName": props["PolicyName"],
        "ServiceNamespace": target["ServiceNamespace"],
        "ResourceId": target["ResourceId"],
        "ScalableDimension": target["ScalableDimension"],
        "PolicyType": props.get("PolicyType", "TargetTrackingScaling"),
    }
    if config:
        config = dict(config)
        config["TargetValue"] = float(config["TargetValue"])
        kwargs["TargetTrackingScalingPolicyConfiguration"] = config
    ctx.client("application-autoscaling").put_scaling_policy(**kwargs)
