"""A Lambda model's traffic: the ``live`` alias, its CodeDeploy deployment group, its shadow setting.

The alias has a primary version and at most one weighted extra version; every change is one
UpdateAlias call (never a CloudFormation update), so it takes effect in seconds. Each version made
live is recorded in the registry's history, which is where ``rollback`` goes back to. A shadow is a
setting in SSM that the live function reads (cached 30 s): starting and stopping one publishes nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mdk.ops.context import OnModel, OpsError
from mdk.ops.results import ModelStatus, Rollback, ShadowChange, Share, Shift, Split
from mdk.registry import SHADOW_OFF, LambdaTopology

IN_FLIGHT = ["Created", "Queued", "InProgress", "Baking", "Ready"]
UNIT = "version"


class LambdaAlias(OnModel):
    """The Traffic of a Lambda model (:class:`mdk.ops.traffic.Traffic`)."""

    @property
    def fn(self) -> LambdaTopology:
        assert self.deployed.lambda_ is not None
        return self.deployed.lambda_

    # -- reading --------------------------------------------------------------------------------------

    def alias(self) -> tuple[str, dict[str, float]]:
        """The primary version and the extra versions' weights."""
        alias = self.ops.call("lambda", "get_alias", FunctionName=self.fn.function_name, Name=self.fn.alias)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return alias["FunctionVersion"], {str(k): float(v) for k, v in weights.items()}

    def split(self) -> Split:
        primary, weights = self.alias()
        return {primary: round(1 - sum(weights.values()), 6), **weights}

    def versions(self) -> dict[str, dict[str, Any]]:
        versions: dict[str, dict[str, Any]] = {}
        paginator = self.ops.client("lambda").get_paginator("list_versions_by_function")
        pages = self.ops.attempt(
            "listing the function's versions",
            lambda: list(paginator.paginate(FunctionName=self.fn.function_name)),
        )
        for page in pages:
            for v in page.get("Versions", []):
                if v["Version"] != "$LATEST":
                    versions[v["Version"]] = v
        return versions

    def in_flight(self) -> dict[str, Any] | None:
        """The CodeDeploy deployment shifting the alias now, if any."""
        ids = self.ops.call(
            "codedeploy",
            "list_deployments",
            applicationName=self.fn.codedeploy_application,
            deploymentGroupName=self.fn.deployment_group,
            includeOnlyStatuses=IN_FLIGHT,
        ).get("deployments", [])
        if not ids:
            return None
        info = self.ops.call("codedeploy", "get_deployment", deploymentId=ids[0])["deploymentInfo"]
        current, target = appspec_versions(info)
        return {
            "id": info["deploymentId"],
            "status": info.get("status"),
            "from_version": current,
            "to_version": target,
            "overview": info.get("deploymentOverview"),
            "config": info.get("deploymentConfigName"),
        }

    def shadow_setting(self) -> dict[str, Any]:
        text = self.ops.parameter(self.deployed.shadow_parameter) if self.deployed.shadow_parameter else None
        setting: dict[str, Any] = json.loads(text) if text else {}
        return setting

    def status(self) -> ModelStatus:
        primary, weights = self.alias()
        versions = self.versions()
        rows = [(primary, round(1 - sum(weights.values()), 6), "primary")]
        rows += [(v, w, "candidate") for v, w in weights.items()]
        traffic = []
        for version, weight, role in rows:
            info = versions.get(str(version), {})
            description = info.get("Description", "")
            extra = {"description": description, "last_modified": info.get("LastModified", "")}
            traffic.append(Share(str(version), weight, role, description, extra))
        setting = self.shadow_setting()
        shadow = None
        if setting.get("candidate"):
            shadow = {"candidate": str(setting["candidate"]), "sample": setting.get("sample", 0)}
        alarms = self.ops.alarm_states(self.deployed.alarms)
        return ModelStatus.of(
            self.deployed, alarms, UNIT, "description", traffic, deployment=self.in_flight(), shadow=shadow
        )

    # -- moving traffic -------------------------------------------------------------------------------

    def require_version(self, version: str) -> None:
        versions = self.versions()
        if version not in versions:
            known = ", ".join(sorted(versions, key=_version_order)) or "none"
            raise OpsError(f"model {self.deployed.model} has no version {version!r} (versions: {known})")

    def _set_alias(self, primary: str, weights: dict[str, float]) -> None:
        self.ops.call(
            "lambda",
            "update_alias",
            FunctionName=self.fn.function_name,
            Name=self.fn.alias,
            FunctionVersion=primary,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )

    def _refuse_in_flight(self, force: bool) -> None:
        deployment = self.in_flight()
        if deployment is not None and not force:
            raise OpsError(
                f"CodeDeploy deployment {deployment['id']} ({deployment['status']}) is shifting this alias: "
                "wait for it, `mdk rollback` it, or pass --force"
            )

    def rollout(self, to: str, share: float, *, force: bool) -> Shift:
        model = self.deployed.model
        self.require_version(to)
        self._refuse_in_flight(force)
        primary, _ = self.alias()
        if to == primary:
            raise OpsError(f"version {to} already is the primary version of {model}; roll out another one")
        if share >= 1:
            self._set_alias(to, {})
            self.ops.record(model, to, previous=primary, action="mdk rollout 100%")
            return Shift(model, UNIT, {to: 1.0}, previous=primary)
        self._set_alias(primary, {to: share})
        return Shift(model, UNIT, {primary: round(1 - share, 6), to: share})

    def promote(self, variant: str | None, *, force: bool) -> Shift:
        model = self.deployed.model
        self._refuse_in_flight(force)
        primary, weights = self.alias()
        if not weights:
            raise OpsError(
                f"nothing to promote: version {primary} takes all traffic of {model} "
                f"(start with `mdk rollout {model} --to VERSION --percent 10`)"
            )
        candidate = max(weights, key=weights.__getitem__)
        self._set_alias(candidate, {})
        self.ops.record(model, candidate, previous=primary, action="mdk promote")
        return Shift(model, UNIT, {candidate: 1.0}, previous=primary)

    def rollback(self) -> Rollback:
        model = self.deployed.model
        primary, weights = self.alias()
        was = {primary: round(1 - sum(weights.values()), 6), **weights}
        stopped = warning = None
        deployment = self.in_flight()
        if deployment is not None:
            try:
                self.ops.call(
                    "codedeploy", "stop_deployment", deploymentId=deployment["id"], autoRollbackEnabled=True
                )
                stopped = deployment["id"]
            except OpsError as exc:
                # The alias still goes back below; the operator must know CodeDeploy may shift it again.
                warning = f"could not stop CodeDeploy deployment {deployment['id']}: {exc}"
            target = deployment.get("from_version") or primary
        elif weights:
            target = primary  # a manual canary: the candidate's share goes back to the primary
        else:
            target = self._previous(primary)
        self._set_alias(target, {})
        if target != primary:
            self.ops.record(model, target, previous=primary, action="mdk rollback")
        return Rollback(model, UNIT, was, {target: 1.0}, stopped_deployment=stopped, warning=warning)

    def _previous(self, primary: str) -> str:
        """The version that served before ``primary``: the CLI's history, else CodeDeploy's last
        deployment."""
        model = self.deployed.model
        history = [e["version"] for e in self.ops.history(model)]
        if primary in history:
            earlier = history[: len(history) - 1 - history[::-1].index(primary)]
            for version in reversed(earlier):
                if version != primary:
                    return str(version)
        ids = self.ops.call(
            "codedeploy",
            "list_deployments",
            applicationName=self.fn.codedeploy_application,
            deploymentGroupName=self.fn.deployment_group,
            includeOnlyStatuses=["Succeeded"],
        ).get("deployments", [])
        for deployment_id in ids:
            info = self.ops.call("codedeploy", "get_deployment", deploymentId=deployment_id)["deploymentInfo"]
            current, target = appspec_versions(info)
            if target == primary and current and current != primary:
                return current
        raise OpsError(
            f"no previous version of {model} is known (not in the CLI's history, no succeeded "
            f"CodeDeploy deployment to version {primary}); choose one: `mdk rollout {model} "
            "--to VERSION --percent 100`"
        )

    # -- shadow -------------------------------------------------------------------------------------

    def shadow_start(self, candidate: str, sample: float, *, instance_type: str | None) -> ShadowChange:
        model = self.deployed.model
        self.require_version(candidate)
        primary, weights = self.alias()
        if candidate == primary or candidate in weights:
            raise OpsError(f"version {candidate} already serves {model}'s traffic; shadow another version")
        setting = {"candidate": candidate, "sample": sample, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        self._put_shadow(setting)
        return ShadowChange(model, True, candidate=candidate, sample=sample, live=primary)

    def shadow_stop(self) -> ShadowChange:
        self._put_shadow(SHADOW_OFF)
        return ShadowChange(self.deployed.model, False)

    def shadow_candidate(self, named: str | None) -> str:
        if named is not None:
            return named
        candidate = self.shadow_setting().get("candidate")
        if not candidate:
            raise OpsError(
                f"no shadow running for {self.deployed.model}: name the candidate with --candidate"
            )
        return str(candidate)

    def _put_shadow(self, setting: dict[str, Any]) -> None:
        if not self.deployed.shadow_parameter:
            raise OpsError(
                f"model {self.deployed.model} has no shadow setting in its registry (redeploy the stack)"
            )
        self.ops.call(
            "ssm",
            "put_parameter",
            Name=self.deployed.shadow_parameter,
            Value=json.dumps(setting),
            Type="String",
            Overwrite=True,
        )


def appspec_versions(info: dict[str, Any]) -> tuple[str | None, str | None]:
    """CurrentVersion and TargetVersion of a Lambda deployment's AppSpec (what CodeDeploy shifts)."""
    revision = info.get("revision") or {}
    content = (revision.get("appSpecContent") or revision.get("string") or {}).get("content")
    try:
        spec = json.loads(content) if content else {}
    except ValueError:
        return None, None
    for resource in spec.get("Resources", []):
        for item in resource.values():
            props = item.get("Properties", {}) if isinstance(item, dict) else {}
            if "TargetVersion" in props:
                return _str(props.get("CurrentVersion")), _str(props.get("TargetVersion"))
    return None, None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)
