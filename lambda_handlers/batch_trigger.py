"""Batch trigger: a file created under ``incoming/<model>/`` starts exactly one SageMaker transform job.

S3 events are at-least-once and unordered, and EventBridge's asynchronous invoke may repeat too. Two
guards make a repeat harmless: Powertools idempotency (DynamoDB) keyed on bucket, key and sequencer,
and a job name derived from the same three, so SageMaker itself answers ``ResourceInUse`` for a job
that already exists. An overwrite of the key has a new sequencer, so it is a new run.

Before a job starts, the file is checked (model, format, empty, a record larger than a request) in
one streaming pass that also counts its lines; a refused file gets a ``_status.json`` manifest with
the reasons in its results folder and an SNS alert. The exact object version is copied to
``staging/`` so the job scores what was uploaded even if the key is overwritten meanwhile.

The model's batch settings and the SageMaker model its jobs run come from the model's registry entry
(``/mdk/<project>/<stage>/models/<model>``, written by the model's own stack; see
``batch_aws.ModelRegistry``): a model without an entry, or whose entry has no batch settings, takes no
files ("unknown model"), and the shared stack that deploys this function names no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from lambda_handlers import batch_aws
from lambda_handlers.batch_aws import BatchModel, Clients, clients, env, logger, metrics, registry
from mdk_runtime import batch
from mdk_runtime.batch import BatchInputError
from mdk_runtime.instances import takes_volume_key
from mdk_runtime.manifest import Job, Manifest, Source
from mdk_runtime.media import JSONL

IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="[bucket, key, sequencer]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=7 * 24 * 3600,  # longer than any redelivery of an S3 event
)
# Errors worth a retry by Lambda's asynchronous invoke (then the dead-letter queue): the same request
# may succeed a minute later. Anything else from CreateTransformJob is a refusal to report.
RETRYABLE = frozenset(
    {"ThrottlingException", "InternalFailure", "ServiceUnavailable", "RequestLimitExceeded"}
)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    notification = S3EventBridgeNotificationEvent(event)
    obj = event.get("detail", {}).get("object", {})
    ref = {
        "bucket": notification.detail.bucket.name,
        "key": notification.detail.object.key,  # URL-decoded by Powertools
        "version_id": obj.get("version-id"),  # absent if the bucket is not versioned
        "sequencer": obj.get("sequencer"),
        "size": obj.get("size"),
        "etag": obj.get("etag"),
        "event_time": event.get("time"),
    }
    logger.append_keys(key=ref["key"], sequencer=ref["sequencer"])
    if ref["bucket"] != env().bucket:
        # Only the inbox's uploads start runs: never read, stage or write a manifest in another bucket.
        return batch_aws.not_ours(f"bucket {ref['bucket'][:63]!r} is not its inbox", bucket=ref["bucket"])
    if ref["key"].endswith("/") and not ref["size"]:
        logger.info("a folder marker, not a file: nothing to score")
        return {"state": "Ignored", "reason": "folder marker"}
    result: dict[str, Any] = _start_once()(ref=ref)
    return result


@lru_cache(maxsize=1)
def _start_once() -> Any:
    """``start_run`` behind the idempotency guard (built on first use, so tests can switch tables)."""
    return batch_aws.once(start_run, key_argument="ref", config=IDEMPOTENCY)


def start_run(ref: dict[str, Any], *, aws: Clients | None = None) -> dict[str, Any]:
    """Check the file, then start its job; every outcome leaves a manifest. A run whose SageMaker model
    a deploy replaced meanwhile starts over once, checked against and run with the model's new entry."""
    aws = aws or clients()
    try:
        return _run(ref, aws)
    except ModelReplaced as replaced:
        logger.info(
            "the model's entry changed since it was read: the run starts over", extra={"model": str(replaced)}
        )
        return _run(ref, aws)


def _run(ref: dict[str, Any], aws: Clients) -> dict[str, Any]:
    bucket, key = ref["bucket"], ref["key"]
    source = Source(
        bucket=bucket,
        key=key,
        version_id=ref.get("version_id"),
        sequencer=ref["sequencer"],
        size=ref.get("size"),
        etag=ref.get("etag"),
    )
    model_name, name = _model_and_name(key)
    created = [_event_time(ref.get("event_time"))]  # the object's LastModified, once read

    @contextmanager
    def open_version() -> Iterator[IO[bytes]]:
        """The exact version the event names (a vanished one is the file's problem, not a retry)."""
        args = {
            "Bucket": bucket,
            "Key": key,
            **({"VersionId": ref["version_id"]} if ref.get("version_id") else {}),
        }
        try:
            response = aws.s3.get_object(**args)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "NoSuchVersion", "404"):
                raise BatchInputError(
                    "object_gone", "key", "the object (this version) was deleted before it could be read"
                ) from None
            raise
        created[0] = response.get("LastModified", created[0])
        with response["Body"] as body:
            yield body

    try:
        model_name, name = batch.parse_inbox_key(key)
        model = registry().model(model_name, aws=aws)
    except BatchInputError as exc:
        return _reject(
            bucket, model_name, batch.run_id(bucket, key, ref["sequencer"], created[0]), source, [exc], aws
        )
    check = batch.check_file(
        name,
        open_version,
        max_payload_mb=model.max_payload_mb,
        id_field=model.id_field,
        features_field=model.features_field,
    )
    source.update(check.fields)  # type: ignore[typeddict-item]
    run = batch.run_id(bucket, key, ref["sequencer"], created[0])
    if check.problems or check.content_type is None:
        return _reject(bucket, model_name, run, source, check.problems, aws)
    return _start_job(bucket, model, name, run, source, check.content_type, check.gzipped, aws)


def _model_and_name(key: str) -> tuple[str, str]:
    """Best effort for a manifest's location when the key itself is refused."""
    parts = key[len(batch.INCOMING) :].split("/", 1) if key.startswith(batch.INCOMING) else []
    if len(parts) == 2 and parts[0]:
        return parts[0], parts[1]
    return "_unsorted", key.rsplit("/", 1)[-1] or "file"


def _event_time(value: Any) -> datetime:
    parsed = batch.event_time(value) if value else None
    if parsed:
        try:
            return datetime.fromisoformat(parsed.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def _reject(  # noqa: PLR0917 - the run's coordinates, from start_run only
    bucket: str, model: str, run: str, source: Source, problems: list[BatchInputError], aws: Clients
) -> dict[str, Any]:
    manifest = Manifest(run_id=run, model=model, state=batch.REJECTED, message="", input=source)
    manifest = manifest.reject(problems)
    key = batch.manifest_key(model, run)
    manifest = batch_aws.write_manifest(bucket, key, manifest, aws=aws)
    batch_aws.publish_outcome(manifest, f"s3://{bucket}/{key}", aws=aws)
    metrics.add_dimension(name="Model", value=model[:64])
    metrics.add_metric(name=batch.RUNS_REJECTED, unit="Count", value=1)
    errors = [dict(e) for e in manifest.errors]
    logger.warning("batch file refused", extra={"run_id": run, "errors": errors})
    return {"state": batch.REJECTED, "run_id": run, "manifest": key, "errors": errors}


def _start_job(  # noqa: PLR0917 - the run's coordinates, from start_run only
    bucket: str,
    model: BatchModel,
    name: str,
    run: str,
    source: Source,
    content_type: str,
    gzipped: bool,
    aws: Clients,
) -> dict[str, Any]:
    settings = env()
    staged = batch.staging_key(model.name, run, name)
    copy_source = {"Bucket": bucket, "Key": source["key"]}
    if source.get("version_id"):
        copy_source["VersionId"] = str(source["version_id"])
    aws.s3.copy(copy_source, bucket, staged)  # type: ignore[arg-type] # managed copy: multipart above 8 MB

    job_name = batch.job_name(settings.deployment, model.name, run)
    results = batch.results_prefix(model.name, run)
    manifest_key = results + batch.MANIFEST
    job: Job = {
        "name": job_name,
        "arn": None,
        "sagemaker_model": model.sagemaker_model,
        "instance_type": model.instance_type,
        "instance_count": model.instance_count,
        "max_payload_mb": model.max_payload_mb,
        "max_concurrent_transforms": model.max_concurrent_transforms,
        "staged_input": f"s3://{bucket}/{staged}",
    }
    manifest = Manifest(
        run_id=run,
        model=model.name,
        state=batch.IN_PROGRESS,
        message=f"transform job {job_name} started for {source['lines']} lines",
        input=source,
        job=job,
        output={"prefix": f"s3://{bucket}/{results}{batch.OUTPUT_DIR}"},
        model_version=model.version,
    )
    # The manifest exists before the job: the status function always finds what to reconcile against.
    manifest = batch_aws.write_manifest(bucket, manifest_key, manifest, aws=aws)

    request = transform_job_request(
        model, job_name=job_name, run=run, bucket=bucket, staged=staged, results=results,
        content_type=content_type, gzipped=gzipped, data_key_arn=settings.data_key_arn,
    )  # fmt: skip
    try:
        arn = aws.sagemaker.create_transform_job(**request)["TransformJobArn"]
        logger.info("transform job started", extra={"job": job_name, "run_id": run})
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if _replaced(exc, model, aws):
            raise ModelReplaced(model.name) from exc
        if code == "ResourceInUse":
            # A repeated event whose first delivery started the job: the job is the proof.
            arn = aws.sagemaker.describe_transform_job(TransformJobName=job_name)["TransformJobArn"]
            logger.info("transform job already started", extra={"job": job_name})
        elif code in RETRYABLE:
            raise  # Lambda retries the event; after the last retry it lands in the dead-letter queue
        else:
            manifest = manifest.refused(
                f"SageMaker refused to start the job: {code}",
                exc.response["Error"].get("Message", code)[:1024],
            )
            manifest = batch_aws.write_manifest(bucket, manifest_key, manifest, aws=aws)
            batch_aws.publish_outcome(manifest, f"s3://{bucket}/{manifest_key}", aws=aws)
            metrics.add_dimension(name="Model", value=model.name)
            metrics.add_metric(name=batch.RUNS_FAILED, unit="Count", value=1)
            logger.error("transform job refused", extra={"job": job_name, "code": code})
            return {"state": batch.FAILED, "run_id": run, "manifest": manifest_key, "job": job_name}
    manifest = manifest.started({**job, "arn": arn})
    batch_aws.write_manifest(bucket, manifest_key, manifest, aws=aws)
    metrics.add_dimension(name="Model", value=model.name)
    metrics.add_metric(name=batch.RUNS_STARTED, unit="Count", value=1)
    metrics.add_metric(name=batch.RECORDS_IN, unit="Count", value=source["lines"])
    return {"state": batch.IN_PROGRESS, "run_id": run, "manifest": manifest_key, "job": job_name}


class ModelReplaced(Exception):
    """The SageMaker model a run was about to use is gone, and the model's entry names another: the run
    starts over with the entry as it is now (see :func:`start_run`)."""


def _replaced(exc: ClientError, model: BatchModel, aws: Clients) -> bool:
    """Whether SageMaker refused the job because the SageMaker model it named is gone
    (``ValidationException`` "Could not find model ...": CreateTransformJob's ``ModelName`` "must be the
    name of an existing Amazon SageMaker model", Amazon SageMaker API Reference,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html) while the
    model's entry, read again now, names another: a deploy of the model replaced it (a new artifact is
    a new SageMaker model) after this container read the entry. Else the refusal stands."""
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    if error.get("Code") != "ValidationException" or "could not find model" not in message:
        return False
    newer = registry().find(model.name, aws=aws, fresh=True)
    return newer is not None and newer.sagemaker_model != model.sagemaker_model


def transform_job_request(
    model: BatchModel,
    *,
    job_name: str,
    run: str,
    bucket: str,
    staged: str,
    results: str,
    content_type: str,
    gzipped: bool,
    data_key_arn: str | None,
) -> dict[str, Any]:
    """CreateTransformJob's arguments: one record per line, as many per request as fit the payload."""
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model.sagemaker_model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": model.max_payload_mb,
        "MaxConcurrentTransforms": model.max_concurrent_transforms,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": model.invocation_timeout_s,
            "InvocationsMaxRetries": model.invocation_retries,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{staged}"}},
            "ContentType": content_type,
            "CompressionType": "Gzip" if gzipped else "None",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{bucket}/{results}{batch.OUTPUT_DIR}",
            "Accept": JSONL,
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": model.instance_type,
            "InstanceCount": model.instance_count,
        },
        "Tags": [
            {"Key": "mdk:model", "Value": model.name},
            {"Key": "mdk:model-version", "Value": model.version},
            {"Key": "mdk:run-id", "Value": run},
        ],
    }
    if data_key_arn:
        request["TransformOutput"]["KmsKeyId"] = data_key_arn
        # No volume key for instance types with local NVMe storage (g4dn, g5, p4d, c5d, ...): SageMaker
        # refuses one ("You can't request a VolumeKmsKeyId when using an instance type with local
        # storage", TransformResources, Amazon SageMaker API Reference,
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html); the
        # hardware encrypts their instance store. The same rule as the endpoint configs' KmsKeyId.
        if takes_volume_key(model.instance_type):
            request["TransformResources"]["VolumeKmsKeyId"] = data_key_arn
    if model.id_field is not None:
        # The container sees only the instance; SageMaker joins each answer back to its record and
        # keeps the id next to it: {"<id_field>": ..., "SageMakerOutput": <answer>}.
        request["DataProcessing"] = {
            "InputFilter": f"$.{model.features_field}",
            "JoinSource": "Input",
            "OutputFilter": f"$['{model.id_field}','{batch.JOINED_OUTPUT}']",
        }
    return request
