"""Where a deployment says what it is: one SSM parameter per model, written by the stack, read by ``mdk``.

``/mdk/<project>/<stage>/models/<model>`` holds the names the operator commands need (function and
alias, CodeDeploy application and group, endpoint and variants, alarms, API URL, batch bucket), so the
CLI needs no CloudFormation call and works the same against AWS, a moto server or the local cloud. A
model that takes batch files also has its ``batch`` member: the SageMaker model its transform jobs run
and their settings, which the shared batch functions read at run time (so the shared stack names no
model, and a model's change is its own stack's update).
Next to it, ``shadow/<model>`` is the live shadow setting (read by the function at run time) and
``history/<model>`` the versions the CLI made live, newest last (what ``mdk rollback`` goes back to).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

ROOT = "/mdk"
SCHEMA = 1


def prefix(project: str, stage: str) -> str:
    return f"{ROOT}/{project}/{stage}"


def model_parameter(project: str, stage: str, model: str) -> str:
    return f"{prefix(project, stage)}/models/{model}"


def shadow_parameter(project: str, stage: str, model: str) -> str:
    return f"{prefix(project, stage)}/shadow/{model}"


def history_parameter(project: str, stage: str, model: str) -> str:
    return f"{prefix(project, stage)}/history/{model}"


SHADOW_OFF: dict[str, Any] = {"candidate": None, "sample": 0.0}


@dataclass
class LambdaTopology:
    function_name: str
    alias: str
    codedeploy_application: str
    deployment_group: str


@dataclass
class SageMakerTopology:
    endpoint_name: str
    variants: list[str]
    rollback_alarms: list[str] = field(default_factory=list)


@dataclass
class BatchTopology:
    """A model's batch transform, as the batch trigger and status functions read it from the entry
    (``lambda_handlers.batch_aws.BatchModel``: the same member names)."""

    transform_model: str  # the SageMaker model its transform jobs run (the model stack's)
    instance_type: str
    instance_count: int
    max_payload_mb: int
    max_concurrent_transforms: int
    invocation_timeout_s: int
    invocation_retries: int
    features_field: str
    store: bool  # whether completed runs load their predictions into the prediction store
    # None is written as no member at all (the stack's JSON: jsii hands None to JavaScript as undefined)
    id_field: str | None = None
    store_ttl_days: int | None = None


@dataclass
class Deployed:
    """One model of a deployment, as its registry parameter describes it."""

    model: str
    runtime: str
    version: str  # the model version (artifact hash) this deploy made
    api_url: str
    alarms: list[str]
    shadow_parameter: str
    lambda_: LambdaTopology | None = None
    sagemaker: SageMakerTopology | None = None
    batch_bucket: str | None = None
    batch: BatchTopology | None = None  # None: the model takes no batch files
    api_auth: str = "iam"  # iam (SigV4), api_key or cognito: how `mdk predict` authenticates
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lambda"] = data.pop("lambda_")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployed:
        fn = data.get("lambda")
        sm = data.get("sagemaker")
        batch = data.get("batch")
        return cls(
            model=data["model"],
            runtime=data["runtime"],
            version=data.get("version", ""),
            api_url=data.get("api_url", ""),
            alarms=list(data.get("alarms") or []),
            shadow_parameter=data.get("shadow_parameter", ""),
            lambda_=LambdaTopology(**fn) if fn else None,
            sagemaker=SageMakerTopology(**sm) if sm else None,
            batch_bucket=data.get("batch_bucket"),
            batch=BatchTopology(**batch) if batch else None,
            api_auth=data.get("api_auth", "iam"),
            schema=int(data.get("schema", SCHEMA)),
        )

    @classmethod
    def parse(cls, text: str) -> Deployed:
        return cls.from_json(json.loads(text))
