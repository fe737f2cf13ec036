"""What serves a model's traffic, and moving it by hand: status, rollout, promote, rollback.

One :class:`Traffic` interface over the two backends: :class:`~mdk.ops.lambda_alias.LambdaAlias` (the
``live`` alias's versions) and :class:`~mdk.ops.sagemaker_variants.SageMakerVariants` (the endpoint's
variants); :func:`backend` is the one place that picks one by the model's runtime. The commands here
check what both share (the percent, the alarms) and hand the rest to the backend; every change is one
API call on the alias or the endpoint, so a rollback takes effect in seconds.
"""

from __future__ import annotations

from typing import Protocol

from mdk.ops.context import Ops, OpsError
from mdk.ops.lambda_alias import LambdaAlias
from mdk.ops.results import ModelStatus, Rollback, ShadowChange, Shift
from mdk.ops.sagemaker_variants import SageMakerVariants
from mdk.registry import Deployed

__all__ = ["ModelStatus", "Traffic", "backend", "promote", "rollback", "rollout", "status"]


class Traffic(Protocol):
    """How a model's traffic is read and moved, whatever serves it."""

    deployed: Deployed

    def status(self) -> ModelStatus: ...

    def rollout(self, to: str, share: float, *, force: bool) -> Shift:
        """``share`` (0 to 1) of the traffic to version or variant ``to``."""

    def promote(self, variant: str | None, *, force: bool) -> Shift:
        """The candidate (or ``variant``) takes all traffic."""

    def rollback(self) -> Rollback:
        """Back to the last good version or variant, now."""

    def shadow_start(self, candidate: str, sample: float, *, instance_type: str | None) -> ShadowChange: ...

    def shadow_stop(self) -> ShadowChange: ...

    def shadow_candidate(self, named: str | None) -> str:
        """The candidate whose Shadow* metrics a report reads (refused where there are none)."""


def backend(ops: Ops, model: str) -> Traffic:
    """The model's traffic, as its runtime serves it (the one ``runtime`` choice of the commands)."""
    deployed = ops.deployed(model)
    if deployed.runtime == "lambda":
        return LambdaAlias(ops, deployed)
    return SageMakerVariants(ops, deployed)


def status(ops: Ops, model: str) -> ModelStatus:
    return backend(ops, model).status()


def rollout(ops: Ops, model: str, to: str, percent: float, *, force: bool = False) -> Shift:
    """Send ``percent`` of the traffic to version (Lambda) or variant (SageMaker) ``to``."""
    if not 0 < percent <= 100:
        raise OpsError(f"--percent: expected more than 0 and at most 100, got {percent:g}")
    return backend(ops, model).rollout(to, round(percent / 100, 6), force=force)


def promote(ops: Ops, model: str, *, variant: str | None = None, force: bool = False) -> Shift:
    """The candidate takes all traffic; refused while one of the model's alarms is in ALARM."""
    traffic = backend(ops, model)
    firing = [name for name, state in ops.alarm_states(traffic.deployed.alarms).items() if state == "ALARM"]
    if firing and not force:
        raise OpsError(f"alarm in ALARM: {', '.join(firing)}; promote anyway with --force")
    return traffic.promote(variant, force=force)


def rollback(ops: Ops, model: str) -> Rollback:
    """Back to the last good version, now: stop a deployment in flight and move the alias (or the
    variant weights) directly; never waits for CloudFormation or CodeDeploy."""
    return backend(ops, model).rollback()
