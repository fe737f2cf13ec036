"""The batch functions find a model in its registry entry (SSM), not in a list the shared stack holds.

Each model's stack writes ``/mdk/<project>/<stage>/models/<model>`` with its batch member (the SageMaker
model its transform jobs run, and their settings); the trigger reads it when a file arrives for the
model and keeps it for a while per container. Here the entries are in moto's SSM, written by the code
the stacks write them with (tests/batch/conftest.py ``register``).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambda_handlers import batch_aws
from lambda_handlers.batch_aws import BatchModel, ModelRegistry
from mdk.config import NAME_PATTERN
from mdk.registry import Deployed, model_parameter
from mdk_runtime import batch
from tests.batch.conftest import (
    PROJECT,
    REGION,
    REGISTRY,
    STAGE,
    Pipeline,
    create_transform_model,
    entry,
    register,
    transform_model,
)
from tests.batch.test_trigger import ROWS, _Refusal, jsonl


def test_the_job_runs_the_sagemaker_model_its_entry_names(pipeline: Pipeline) -> None:
    create_transform_model(pipeline.sagemaker, "iris-from-its-stack")
    register(pipeline.config, iris="iris-from-its-stack")

    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))

    job = pipeline.sagemaker.describe_transform_job(TransformJobName=result["job"])
    assert job["ModelName"] == "iris-from-its-stack"
    manifest = pipeline.manifest(result["manifest"])
    assert manifest["job"]["sagemaker_model"] == "iris-from-its-stack"
    assert manifest["model_version"] == entry(pipeline.config.model("iris")).version


def test_an_upload_for_a_model_without_an_entry_is_refused_as_unknown(pipeline: Pipeline) -> None:
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=model_parameter(PROJECT, STAGE, "iris"))

    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))

    assert result["state"] == batch.REJECTED
    [error] = pipeline.manifest(result["manifest"])["errors"]
    assert error["code"] == "unknown_model"
    assert "no model named 'iris' takes batch files" in error["message"]
    assert f"{REGISTRY}<model>" in error["message"]
    assert pipeline.jobs() == []
    [alert] = pipeline.alerts()
    assert alert["MessageAttributes"]["state"]["Value"] == batch.REJECTED


def _count_reads(client: Any) -> list[str]:
    """The names of the GetParameter calls ``client`` makes (to moto), as they are made."""
    read: list[str] = []
    client.meta.events.register(
        "before-call.ssm.GetParameter", lambda params, **_: read.append(json.loads(params["body"])["Name"])
    )
    return read


def test_a_container_reads_a_models_entry_once_per_ttl(pipeline: Pipeline) -> None:
    now = [1000.0]
    registry = ModelRegistry(REGISTRY, ttl_s=60, clock=lambda: now[0])
    aws = batch_aws.Clients()
    read = _count_reads(aws.ssm)

    first = registry.model("iris", aws=aws)
    assert registry.model("iris", aws=aws) == first
    assert registry.find("nosuch", aws=aws) is None
    assert registry.find("nosuch", aws=aws) is None  # an absent entry is kept as absent too
    assert read == [f"{REGISTRY}iris", f"{REGISTRY}nosuch"]

    create_transform_model(pipeline.sagemaker, "iris-v2")
    register(pipeline.config, iris="iris-v2")  # a deploy of iris: its stack rewrites its entry
    now[0] += 59.9
    assert registry.model("iris", aws=aws).sagemaker_model == transform_model("iris")  # still kept
    now[0] += 0.1
    assert registry.model("iris", aws=aws).sagemaker_model == "iris-v2"  # read again
    assert registry.find("iris", aws=aws, fresh=True) == registry.model("iris", aws=aws)
    assert read == [f"{REGISTRY}iris", f"{REGISTRY}nosuch", f"{REGISTRY}iris", f"{REGISTRY}iris"]


def test_names_no_model_could_have_are_not_looked_up(pipeline: Pipeline) -> None:
    """SSM refuses parameter names with spaces or other characters (ValidationException): a key that
    names no possible model is refused as unknown without a call."""
    aws = batch_aws.Clients()
    read = _count_reads(aws.ssm)
    registry = ModelRegistry(REGISTRY)
    for name in ("No Such", "iris/../digits", "-iris", "a" * 33, "caf\u00e9"):
        assert registry.find(name, aws=aws) is None, name
    assert read == []
    # the config's own pattern for model names, which the function (no mdk package there) repeats
    assert batch.MODEL_NAME.pattern == NAME_PATTERN.pattern


def refuse_missing_models_as_aws_does(client: Any, sagemaker: Any) -> None:
    """Make ``client``'s CreateTransformJob answer as SageMaker does for a model that does not exist
    (moto starts the job whatever the model): ``ValidationException``, "Could not find model"."""

    def check(params: dict[str, Any], **_: Any) -> Any:
        name = json.loads(params["body"])["ModelName"]
        try:
            sagemaker.describe_model(ModelName=name)
        except ClientError:
            arn = f"arn:aws:sagemaker:{REGION}:123456789012:model/{name}"
            error = {"Error": {"Code": "ValidationException", "Message": f'Could not find model "{arn}".'}}
            return _Refusal(), {**error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None  # on to moto

    client.meta.events.register("before-call.sagemaker.CreateTransformJob", check)


def test_a_run_after_a_deploy_replaced_the_sagemaker_model_runs_the_new_one(pipeline: Pipeline) -> None:
    """The container kept iris's entry; a deploy of iris then replaced its SageMaker model (a new
    artifact is a new model; CloudFormation deleted the old one): the next run reads the entry again."""
    refuse_missing_models_as_aws_does(batch_aws.client("sagemaker"), pipeline.sagemaker)
    first = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))
    assert first["state"] == batch.IN_PROGRESS

    create_transform_model(pipeline.sagemaker, "iris-v2")
    register(pipeline.config, iris="iris-v2")
    pipeline.sagemaker.delete_model(ModelName=transform_model("iris"))
    second = pipeline.trigger(pipeline.put("incoming/iris/b.jsonl", jsonl(ROWS)))

    assert second["state"] == batch.IN_PROGRESS, pipeline.manifest(second["manifest"])
    job = pipeline.sagemaker.describe_transform_job(TransformJobName=second["job"])
    assert job["ModelName"] == "iris-v2"
    manifest = pipeline.manifest(second["manifest"])
    assert manifest["state"] == batch.IN_PROGRESS
    assert manifest["job"]["sagemaker_model"] == "iris-v2"
    assert pipeline.alerts() == []


def test_a_missing_sagemaker_model_the_entry_still_names_is_a_refused_run(pipeline: Pipeline) -> None:
    refuse_missing_models_as_aws_does(batch_aws.client("sagemaker"), pipeline.sagemaker)
    pipeline.sagemaker.delete_model(ModelName=transform_model("iris"))

    result = pipeline.trigger(pipeline.put("incoming/iris/a.jsonl", jsonl(ROWS)))

    assert result["state"] == batch.FAILED
    manifest = pipeline.manifest(result["manifest"])
    assert "Could not find model" in manifest["job"]["failure_reason"]
    [alert] = pipeline.alerts()
    assert alert["MessageAttributes"]["state"]["Value"] == batch.FAILED


def test_a_registry_that_cannot_be_read_is_retried_not_refused(pipeline: Pipeline) -> None:
    """Throttled (or any error but a missing entry): raised, so Lambda retries the event."""
    aws = batch_aws.Clients()

    def throttled(**_: Any) -> Any:
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return _Refusal(), {**error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    aws.ssm.meta.events.register("before-call.ssm.GetParameter", throttled)
    with pytest.raises(ClientError, match="ThrottlingException"):
        ModelRegistry(REGISTRY).find("iris", aws=aws)


def test_entries_of_a_later_kit_are_read(pipeline: Pipeline) -> None:
    data = entry(pipeline.config.model("iris-ids")).to_json()
    data["batch"]["a_later_setting"] = 1
    data["a_later_member"] = {"x": 1}
    model = BatchModel.from_entry(data)
    assert model is not None
    assert (model.name, model.sagemaker_model, model.store, model.store_ttl_days) == (
        "iris-ids",
        transform_model("iris-ids"),
        True,
        30,
    )
    assert Deployed.from_json(entry(pipeline.config.model("iris")).to_json()).batch is not None
    assert BatchModel.from_entry(entry(pipeline.config.model("iris-off")).to_json()) is None
