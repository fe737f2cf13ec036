"""Batch status: a transform job reached Completed, Failed or Stopped; tell the run's manifest, and people.

SageMaker's "Completed" is not proof: a job can complete with missing output. So the output is read
back and reconciled with the line count the trigger measured: every input line must have its output
line (a prediction or a per-record error). Failed, stopped or short runs alert through SNS. A run of a
model with a prediction store then loads its predictions into DynamoDB, in pages; when the function's
time runs short it hands the rest to itself through an EventBridge event, so no file is too large.
SageMaker may send an event more than once: the work is idempotent on job name and state. Whether a
model keeps a store, and for how long, is read from its registry entry (``batch_aws.ModelRegistry``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_handlers import batch_aws
from lambda_handlers.batch_aws import Clients, clients, env, logger, metrics, registry
from mdk_runtime import batch
from mdk_runtime.batch import STORE_DETAIL_TYPE, STORE_SOURCE
from mdk_runtime.manifest import STORE_LOADED, Job, Manifest, Store

STORE_PAGE = 500  # lines between checks of the remaining time
STORE_RESERVE_MS = 60_000  # hand over when less than this is left
MAX_ITEM_BYTES = 350_000  # DynamoDB's item limit is 400 KB; leave room for the other attributes

IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="[name, status]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=7 * 24 * 3600,
)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    if event.get("source") == STORE_SOURCE and event.get("detail-type") == STORE_DETAIL_TYPE:
        return continue_store(event["detail"], context)
    detail = event.get("detail") or {}
    status = detail.get("TransformJobStatus")
    if status not in batch.TERMINAL_JOB_STATES:
        return {"state": "Ignored", "reason": f"job state {status!r} is not final"}
    name = detail.get("TransformJobName")
    if not isinstance(name, str) or not batch.is_own_job(env().deployment, name):
        # Another deployment's job (or SageMaker's documented example): its rule should not have sent it.
        return batch_aws.not_ours(f"job {str(name)[:63]!r}", job=name)
    output_path = (detail.get("TransformOutput") or {}).get("S3OutputPath")
    if output_path is not None and not batch_aws.owns_output(output_path):
        return batch_aws.not_ours(f"job {name!r} writes outside its results/", job=name, output=output_path)
    job = {
        "name": name,
        "status": status,
        "arn": detail.get("TransformJobArn"),
        "failure_reason": detail.get("FailureReason"),
        "output_path": output_path,
        "created": batch.iso(detail.get("CreationTime"), epoch="ms"),
        "started": batch.iso(detail.get("TransformStartTime"), epoch="ms"),
        "ended": batch.iso(detail.get("TransformEndTime"), epoch="ms"),
    }
    logger.append_keys(job=job["name"], job_status=status)
    result: dict[str, Any] = _finish_once()(job=job, context=context)
    return result


@lru_cache(maxsize=1)
def _finish_once() -> Any:
    return batch_aws.once(finish_run, key_argument="job", config=IDEMPOTENCY)


def finish_run(job: dict[str, Any], context: LambdaContext, *, aws: Clients | None = None) -> dict[str, Any]:
    aws = aws or clients()
    if not job.get("output_path"):
        describe = aws.sagemaker.describe_transform_job(TransformJobName=job["name"])
        job["output_path"] = describe["TransformOutput"]["S3OutputPath"]
        if not batch_aws.owns_output(job["output_path"]):
            return batch_aws.not_ours(f"job {job['name']!r} writes outside its results/", job=job["name"])
    bucket, output_prefix = batch.parse_s3_uri(job["output_path"])
    output_prefix = output_prefix if output_prefix.endswith("/") else output_prefix + "/"
    results = output_prefix.removesuffix(batch.OUTPUT_DIR)
    manifest_key = results + batch.MANIFEST
    manifest = batch_aws.read_manifest(bucket, manifest_key, aws=aws) or _lost_manifest(results, job)

    reported = Job(name=job["name"], arn=job["arn"])
    if job.get("failure_reason"):
        reported["failure_reason"] = job["failure_reason"]
    manifest = manifest.job_reported(
        reported, created=job.get("created"), started=job.get("started"), ended=job.get("ended")
    )

    files = _output_files(bucket, output_prefix, aws)
    tally = batch.OutputTally()
    for key in files:
        tally.add(_tally(bucket, key, aws))
    manifest = manifest.reconcile(tally, files=[f"s3://{bucket}/{k}" for k in files])
    if job["status"] == "Failed":
        manifest = manifest.settle(
            batch.FAILED, f"SageMaker: {job.get('failure_reason') or 'the job failed (no reason given)'}"
        )
    elif job["status"] == "Stopped":
        manifest = manifest.settle(
            batch.STOPPED, "the job was stopped before it finished; output may be partial"
        )
    state = manifest.state
    model = registry().find(manifest.model, aws=aws)  # the model's entry: whether it keeps a store
    if state == batch.COMPLETED and model is not None and model.store:
        manifest = manifest.loading(env().store_table)
    manifest = batch_aws.write_manifest(bucket, manifest_key, manifest, aws=aws)
    alerted = batch_aws.publish_outcome(manifest, f"s3://{bucket}/{manifest_key}", aws=aws)
    _emit(manifest, tally, state)
    logger.info("batch run finished", extra={"state": state, "run_id": manifest.run_id, "alerted": alerted})
    result: dict[str, Any] = {
        "state": state,
        "run_id": manifest.run_id,
        "manifest": manifest_key,
        "alerted": alerted,
    }
    keep_transform_logs(aws)
    if manifest.store:
        result["store"] = load_store(bucket, manifest_key, manifest, files, 0, context, aws=aws)
    return result


_RETENTION_SET: list[int] = []  # the days this sandbox already set (once per sandbox)


def keep_transform_logs(aws: Clients | None = None) -> str:
    """Give SageMaker's shared ``/aws/sagemaker/TransformJobs`` log group the kit's retention.

    SageMaker creates that group, without retention, for the first transform job of an account and region
    ("Log Amazon SageMaker AI events with Amazon CloudWatch",
    https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html); every deployment shares
    it, so no stack can create it (a second deployment's create would fail). After a job has ended the
    group exists, and PutRetentionPolicy is idempotent: once per sandbox. A failure is logged and
    counted (``TransformLogRetentionFailed``), never the run's failure.
    """
    days = int(os.environ.get(batch.TRANSFORM_LOG_RETENTION_ENV) or 0)
    if not days or days in _RETENTION_SET:
        return "kept"
    try:
        (aws or clients()).logs.put_retention_policy(logGroupName=batch.TRANSFORM_LOGS, retentionInDays=days)
    except Exception as exc:  # noqa: BLE001 - a missing group or a refused call must not fail the run
        logger.warning("transform log retention not set", extra={"error": type(exc).__name__})
        metrics.add_metric(name=batch.LOG_RETENTION_FAILED, unit="Count", value=1)
        return "failed"
    _RETENTION_SET.append(days)
    return "set"


def _lost_manifest(results: str, job: dict[str, Any]) -> Manifest:
    """A job of ours without a manifest (deleted by hand?): report what the job itself tells."""
    parts = results.rstrip("/").split("/")
    model, run = (parts[1], parts[2]) if len(parts) >= 3 else ("_unsorted", job["name"])
    manifest = Manifest(run_id=run, model=model, state=batch.INCOMPLETE, message="", input={})
    return manifest.missing(
        {"code": "manifest_missing", "field": "manifest", "message": "the run's manifest was not found"}
    )


def _output_files(bucket: str, prefix: str, aws: Clients) -> list[str]:
    paginator = aws.s3.get_paginator("list_objects_v2")
    keys = [
        obj["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(batch.OUTPUT_SUFFIX)
    ]
    return sorted(keys)


def _tally(bucket: str, key: str, aws: Clients) -> batch.OutputTally:
    with aws.s3.get_object(Bucket=bucket, Key=key)["Body"] as body:
        return batch.tally_output(batch.chunks(body))


def _emit(manifest: Manifest, tally: batch.OutputTally, state: str) -> None:
    metrics.add_dimension(name="Model", value=manifest.model[:64])
    name = {
        batch.COMPLETED: batch.RUNS_COMPLETED,
        batch.INCOMPLETE: batch.RUNS_INCOMPLETE,
    }.get(state, batch.RUNS_FAILED)
    metrics.add_metric(name=name, unit="Count", value=1)
    metrics.add_metric(name=batch.RECORDS_OUT, unit="Count", value=tally.lines)
    metrics.add_metric(name=batch.RECORD_ERRORS, unit="Count", value=tally.error_lines)
    seconds = manifest.timings.get("seconds")
    if seconds is not None:
        metrics.add_metric(name=batch.RUN_SECONDS, unit="Seconds", value=seconds)


# -- the prediction store ------------------------------------------------------------------------


def continue_store(
    detail: dict[str, Any], context: LambdaContext, *, aws: Clients | None = None
) -> dict[str, Any]:
    """The next pages of a store load, handed over by an earlier invocation."""
    aws = aws or clients()
    bucket, manifest_key = str(detail.get("bucket")), str(detail.get("manifest"))
    if bucket != env().bucket or not manifest_key.startswith(batch.RESULTS):
        logger.warning("store continuation for another bucket or prefix: ignored", extra={"detail": detail})
        return {"state": "Ignored"}
    manifest = batch_aws.read_manifest(bucket, manifest_key, aws=aws)
    if manifest is None or not manifest.store:
        return {"state": "Ignored", "reason": "no store load in this manifest"}
    if manifest.store.get("state") == STORE_LOADED:
        return {"state": STORE_LOADED, "stored": manifest.store["stored"]}  # a repeated event
    files = [batch.parse_s3_uri(uri)[1] for uri in (manifest.output or {})["files"]]
    return load_store(
        bucket, manifest_key, manifest, files, int(detail.get("next_line", 0)), context, aws=aws
    )


def load_store(  # noqa: PLR0917 - one load's coordinates, always passed in this order
    bucket: str,
    manifest_key: str,
    manifest: Manifest,
    files: list[str],
    start: int,
    context: LambdaContext,
    *,
    aws: Clients | None = None,
) -> dict[str, Any]:
    """Put each scored record under (model, id), from output line ``start`` on (0-based).

    Writing an item again writes the same item, so a page repeated after a crash is harmless.
    """
    aws = aws or clients()
    settings = env()
    model = registry().find(manifest.model, aws=aws)
    if model is None or not model.store:
        # The model was removed, or its store turned off, by a deploy since the load began.
        logger.warning("the model keeps no prediction store any more: load stopped", extra={"line": start})
        return {"state": "Ignored", "reason": f"model {manifest.model!r} keeps no prediction store"}
    assert settings.store_table is not None
    assert manifest.store is not None
    store = Store(**manifest.store)  # this load's counts, into the manifest at each write
    if start != store.get("next_line", 0):
        logger.warning("continuation out of step with the manifest", extra={"start": start, "store": store})
        start = int(store.get("next_line", 0))
    expires = int(time.time()) + model.store_ttl_days * 86400 if model.store_ttl_days else None
    table = aws.table(settings.store_table)
    line = 0
    handed_over = False
    # Leaving the block flushes the writer: a page is in the table before the manifest counts it.
    with table.batch_writer(overwrite_by_pkeys=["model", "id"]) as writer:
        for raw in _output_lines(bucket, files, aws):
            if line >= start:
                _store_line(writer, raw, model, manifest, store, expires)
            line += 1
            page_done = line > start and line % STORE_PAGE == 0
            if page_done and context.get_remaining_time_in_millis() < STORE_RESERVE_MS:
                handed_over = True
                break
    store["next_line"] = line
    if handed_over:
        batch_aws.write_manifest(bucket, manifest_key, manifest.with_store(store), aws=aws)
        _hand_over(bucket, manifest_key, line, aws)
        return {"state": "Loading", "next_line": line, "stored": store["stored"]}
    store["state"] = STORE_LOADED
    batch_aws.write_manifest(bucket, manifest_key, manifest.with_store(store), aws=aws)
    metrics.add_dimension(name="Model", value=model.name)
    metrics.add_metric(name=batch.STORED, unit="Count", value=store["stored"])
    logger.info("predictions stored", extra={"store": store})
    return {"state": STORE_LOADED, "stored": store["stored"]}


def _output_lines(bucket: str, files: list[str], aws: Clients) -> Iterator[bytes]:
    """The non-blank lines of the output files, in order (the numbering the manifest's counts use)."""
    for key in files:
        with aws.s3.get_object(Bucket=bucket, Key=key)["Body"] as body:
            for raw in batch.iter_lines(batch.chunks(body)):
                if raw.strip():
                    yield raw


def _store_line(  # noqa: PLR0917 - called from one loop
    writer: Any,  # the table's batch writer (boto3.dynamodb.table.BatchWriter)
    raw: bytes,
    model: batch_aws.BatchModel,
    manifest: Manifest,
    store: Store,
    expires: int | None,
) -> None:
    try:
        record = json.loads(raw)
    except ValueError:
        store["skipped_errors"] += 1
        return
    answer = record.get(batch.JOINED_OUTPUT) if isinstance(record, dict) else None
    record_id = record.get(model.id_field) if isinstance(record, dict) else None
    if answer is None or batch.error_of(answer) is not None:
        store["skipped_errors"] += 1
        return
    if isinstance(record_id, bool) or not isinstance(record_id, str | int) or str(record_id) == "":
        store["missing_id"] += 1
        return
    prediction = json.dumps(answer, separators=(",", ":"))
    if len(prediction) > MAX_ITEM_BYTES or len(str(record_id).encode()) > 1024:
        store["too_large"] += 1
        return
    item: dict[str, Any] = {
        "model": model.name,
        "id": str(record_id),
        "prediction": prediction,
        "model_version": manifest.model_version or model.version,
        "run_id": manifest.run_id,
        "stored_at": batch.now_iso(),
    }
    if expires is not None:
        item["expires_at"] = expires
    writer.put_item(Item=item)
    store["stored"] += 1


def _hand_over(bucket: str, manifest_key: str, next_line: int, aws: Clients) -> None:
    response = aws.events.put_events(
        Entries=[
            {
                "Source": STORE_SOURCE,
                "DetailType": STORE_DETAIL_TYPE,
                "Detail": json.dumps({"bucket": bucket, "manifest": manifest_key, "next_line": next_line}),
                "EventBusName": env().self_bus,
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"could not hand the store load over: {response['Entries']}")
    logger.info("store load handed over", extra={"next_line": next_line})
