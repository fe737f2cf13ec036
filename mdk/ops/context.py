"""Which deployment the commands act on, its AWS clients, and the registry it reads.

Clients come from boto3's usual chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``..., ``AWS_REGION``) and
honour ``AWS_ENDPOINT_URL``, so the same commands work against AWS, a moto server or the local cloud.
Every AWS failure becomes an :class:`OpsError` naming what to do, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from mdk.registry import Deployed, history_parameter, model_parameter, prefix

T = TypeVar("T")
HISTORY_KEEP = 20


class OpsError(Exception):
    """A refusal or failure the operator can act on; printed as is, exit status 2."""


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore's exceptions into messages that say what to fix."""
    try:
        yield
    except NoCredentialsError:
        raise OpsError(
            "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or "
            "AWS_ENDPOINT_URL with any credentials for a local cloud"
        ) from None
    except PartialCredentialsError as exc:
        raise OpsError(f"incomplete AWS credentials: {exc}") from None
    except NoRegionError:
        raise OpsError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from None
    except EndpointConnectionError as exc:
        raise OpsError(f"cannot reach AWS at {exc.kwargs.get('endpoint_url', '?')} while {action}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise OpsError(
            f"AWS refused {action}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
        ) from None
    except BotoCoreError as exc:
        raise OpsError(f"{action} failed: {exc}") from None


@dataclass
class Ops:
    """One deployment (``<project>-<stage>``) and lazily created clients."""

    project: str
    stage: str
    _clients: dict[str, Any] = field(default_factory=dict)
    _session: Any = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            with aws_errors(f"creating a {service} client"):
                if self._session is None:  # its own session: credentials as the environment has them now
                    self._session = boto3.session.Session()
                self._clients[service] = self._session.client(service)
        return self._clients[service]

    def call(self, service: str, operation: str, **kwargs: Any) -> Any:
        """``client.<operation>(**kwargs)`` with errors as OpsError."""
        client = self.client(service)
        with aws_errors(f"{service} {operation}"):
            return getattr(client, operation)(**kwargs)

    def attempt(self, action: str, fn: Callable[[], T]) -> T:
        with aws_errors(action):
            return fn()

    @property
    def deployment(self) -> str:
        return f"{self.project}-{self.stage}"

    # -- the registry -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        root = f"{prefix(self.project, self.stage)}/models/"
        names: list[str] = []
        paginator = self.client("ssm").get_paginator("get_parameters_by_path")
        with aws_errors("reading the deployment's registry"):
            for page in paginator.paginate(Path=root, Recursive=False):
                names += [p["Name"][len(root) :] for p in page.get("Parameters", [])]
        return sorted(names)

    def parameter(self, name: str) -> str | None:
        """An SSM parameter's value, or None if there is none of that name."""
        with aws_errors(f"reading {name}"):
            try:
                value: str = self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                    return None
                raise
        return value

    def deployed(self, model: str) -> Deployed:
        name = model_parameter(self.project, self.stage, model)
        text = self.parameter(name)
        if text is None:
            known = self.model_names()
            if not known:
                raise OpsError(
                    f"no deployment {self.deployment} found (no parameters under "
                    f"{prefix(self.project, self.stage)}/models/): deploy it with `npx cdk deploy`, or pick "
                    "the stage with --stage and the account/region with AWS_PROFILE/AWS_REGION"
                )
            raise OpsError(
                f"model {model!r} is not deployed in {self.deployment} (deployed: {', '.join(known)})"
            )
        try:
            return Deployed.parse(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise OpsError(f"{name} is not a registry entry mdk understands: {exc}") from None

    # -- history of what went live ------------------------------------------------------------------

    def history(self, model: str) -> list[dict[str, Any]]:
        text = self.parameter(history_parameter(self.project, self.stage, model))
        try:
            entries = json.loads(text) if text else []
        except ValueError:
            return []
        return [e for e in entries if isinstance(e, dict) and "version" in e]

    def record(self, model: str, version: str, *, previous: str | None, action: str) -> None:
        """``version`` went live (after ``previous``): the newest entry of the model's history."""
        entries = self.history(model)
        if previous is not None and (not entries or entries[-1]["version"] != previous):
            entries.append({"version": previous, "at": None, "action": "seen live"})
        if not entries or entries[-1]["version"] != version:
            entries.append({"version": version, "at": now(), "action": action})
        self.call(
            "ssm",
            "put_parameter",
            Name=history_parameter(self.project, self.stage, model),
            Value=json.dumps(entries[-HISTORY_KEEP:]),
            Type="String",
            Overwrite=True,
        )

    # -- alarms ------------------------------------------------------------------------------------------

    def alarm_states(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        states: dict[str, str] = {}
        for start in range(0, len(names), 100):
            response = self.call("cloudwatch", "describe_alarms", AlarmNames=names[start : start + 100])
            for alarm in response.get("MetricAlarms", []) + response.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
        return {name: states.get(name, "MISSING") for name in names}


@dataclass
class OnModel:
    """Operations on one deployed model: the deployment's clients and the model's registry entry."""

    ops: Ops
    deployed: Deployed


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
