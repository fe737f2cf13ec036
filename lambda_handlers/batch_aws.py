"""What the batch functions share: their settings, their AWS clients, the manifest in S3 and the alert topic.

Zip-packaged with the batch handlers; ``mdk_runtime`` (standard-library parts only) and Powertools come
from the kit's Lambda layer, boto3 from the Lambda runtime. The clients are typed by the mypy-boto3
stubs (for the checker only: nothing here imports them at run time) and injected as Powertools takes a
``boto3_client=``: every function that calls AWS takes ``aws=`` (default: :func:`clients`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import boto3
from aws_lambda_powertools import Logger, Metrics
from botocore.config import Config
from botocore.exceptions import ClientError

from mdk_runtime.batch import (
    ALERTING,
    DEPLOYMENT_ENV,
    FOREIGN_EVENTS,
    MODEL_NAME,
    NAMESPACE,
    REGISTRY_ENV,
    RESULTS,
    SERVICE,
    BatchInputError,
)
from mdk_runtime.manifest import Manifest, decode, encode

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

T = TypeVar("T")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


UNSET_AS_ABSENT = frozenset({"id_field", "store_ttl_days"})


@dataclass(frozen=True)
class BatchModel:
    """One model's batch settings, as its registry entry holds them (``mdk.registry.BatchTopology``,
    written by the model's stack): the SageMaker model its jobs run, and how they run."""

    name: str
    version: str
    sagemaker_model: str
    instance_type: str
    instance_count: int
    max_payload_mb: int
    max_concurrent_transforms: int
    invocation_timeout_s: int
    invocation_retries: int
    id_field: str | None
    features_field: str
    store: bool
    store_ttl_days: int | None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> BatchModel | None:
        """The model's batch settings from its registry entry (None: the model takes no batch files).
        Members a later kit adds to the entry are ignored; a member missing is a broken entry."""
        settings = entry.get("batch")
        if not isinstance(settings, Mapping):
            return None
        given = {f.name for f in fields(cls)} - {"name", "version", "sagemaker_model"}
        # an unset setting is no member (the stack writes the entry with JavaScript's JSON.stringify)
        values: dict[str, Any] = {
            name: settings.get(name) if name in UNSET_AS_ABSENT else settings[name] for name in given
        }
        return cls(
            name=str(entry["model"]),
            version=str(entry.get("version", "")),
            sagemaker_model=str(settings["transform_model"]),
            **values,
        )


@dataclass(frozen=True)
class BatchEnv:
    bucket: str
    deployment: str  # <project>-<stage>: job names start with its job prefix
    registry: str  # /mdk/<project>/<stage>/models/: a model's entry is this and its name
    idempotency_table: str
    topic_arn: str
    data_key_arn: str | None
    store_table: str | None
    self_bus: str = "default"

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> BatchEnv:
        return cls(
            bucket=environ["MDK_BATCH_BUCKET"],
            deployment=environ[DEPLOYMENT_ENV],
            registry=environ[REGISTRY_ENV],
            idempotency_table=environ["MDK_IDEMPOTENCY_TABLE"],
            topic_arn=environ["MDK_ALERT_TOPIC_ARN"],
            data_key_arn=environ.get("MDK_DATA_KEY_ARN") or None,
            store_table=environ.get("MDK_STORE_TABLE") or None,
        )


@lru_cache(maxsize=1)
def env() -> BatchEnv:
    return BatchEnv.load()


#: How long a container keeps what it read of a model's registry entry. A deploy of the model (a new
#: artifact: a new SageMaker model, named in its new entry) reaches runs started this long after it at
#: the latest; the entry and the SageMaker model it names are read together, so a job runs the model
#: version its manifest and tags say. A job refused because its SageMaker model is gone (the deploy's
#: clean-up deleted the old one) reads the entry again at once (``ModelRegistry.fresh``).
REGISTRY_TTL_S = 60.0


class ModelRegistry:
    """The batch settings of the deployment's models, read from their registry entries in SSM
    (``<registry><model>``, one GetParameter each) when first asked for, then kept for ``ttl_s``: the
    shared stack lists no model, so a model's batch parts (and their changes) are its own stack's.
    An absent entry, or one without batch settings, is kept as absent for as long."""

    def __init__(
        self, prefix: str, *, ttl_s: float = REGISTRY_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.clock = clock
        self._read: dict[str, tuple[float, bool, BatchModel | None]] = {}

    def find(self, name: str, *, aws: Clients | None = None, fresh: bool = False) -> BatchModel | None:
        """The model's batch settings (None: no such model in this deployment, or it takes no batch files)."""
        return self._lookup(name, aws, fresh)[1]

    def model(self, name: str, *, aws: Clients | None = None) -> BatchModel:
        """The model's batch settings, or the ``unknown_model`` refusal of a file uploaded for it."""
        found, model = self._lookup(name, aws, False)
        if model is not None:
            return model
        where = f"incoming/<model>/<file>, <model> one with batch on (its entry: {self.prefix}<model>)"
        if found:
            message = f"model {name!r} takes no batch files (batch.enabled is false in its config); "
        else:
            message = f"no model named {name[:64]!r} takes batch files in this deployment; "
        raise BatchInputError("unknown_model", "key", message + f"upload to {where}")

    def _lookup(self, name: str, aws: Clients | None, fresh: bool) -> tuple[bool, BatchModel | None]:
        if not MODEL_NAME.match(name):
            return False, None  # no model has that name: nothing to look up
        now = self.clock()
        kept = self._read.get(name)
        if kept is not None and not fresh and now - kept[0] < self.ttl_s:
            return kept[1], kept[2]
        try:
            text = (aws or clients()).ssm.get_parameter(Name=self.prefix + name)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ParameterNotFound":
                raise  # throttled, refused: Lambda retries the event
            found, model = False, None
        else:
            found, model = True, BatchModel.from_entry(json.loads(text))
        self._read[name] = (now, found, model)
        return found, model


@lru_cache(maxsize=1)
def registry() -> ModelRegistry:
    """This container's view of the registry (kept across invocations, as the clients are)."""
    return ModelRegistry(env().registry)


#: AWS SDK retries: the standard mode's exponential backoff with jitter on throttling and transient
#: errors (connection refused or reset included), four attempts in all (up to ~7 s of backoff), before
#: Lambda's own asynchronous retries (then the dead-letter queue) take over.
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 4}, connect_timeout=5, read_timeout=60)


class _Client(Generic[T]):
    """A client attribute of :class:`Clients`, typed by its annotation, named after its service."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.service = name

    def __get__(self, clients: Clients, owner: type) -> T:
        return cast(T, clients.client(self.service))


class Clients:
    """The batch functions' AWS clients, each made on first use with :data:`RETRIES`, or given."""

    s3: _Client[S3Client] = _Client()
    sagemaker: _Client[SageMakerClient] = _Client()
    sns: _Client[SNSClient] = _Client()
    logs: _Client[CloudWatchLogsClient] = _Client()
    events: _Client[EventBridgeClient] = _Client()
    ssm: _Client[Any] = _Client()  # GetParameter only (no stubs in requirements-dev.txt for SSM)

    def __init__(self, **given: Any) -> None:
        self._made: dict[str, Any] = dict(given)

    def client(self, service: str) -> Any:
        made = self._made.get(service)
        if made is None:
            made = self._made[service] = boto3.client(service, config=RETRIES)
        return made

    def table(self, name: str) -> Table:
        """A DynamoDB table (the prediction store), through the resource API's batch writer."""
        resource = self._made.get("dynamodb")
        if resource is None:
            resource = self._made["dynamodb"] = boto3.resource("dynamodb")
        return cast("Table", resource.Table(name))


@lru_cache(maxsize=1)
def clients() -> Clients:
    """The functions' own clients, one set per sandbox."""
    return Clients()


def client(service: str) -> Any:
    """The function's own client of ``service`` (what a test stubs)."""
    return clients().client(service)


def not_ours(what: str, **details: Any) -> dict[str, Any]:
    """The outcome of an event about something that is not this deployment's (another bucket, another
    deployment's job): logged and counted, nothing read or written, no alert, no retry."""
    reason = f"not this deployment's: {what}"
    logger.warning(reason, extra={"ignored": details})
    metrics.add_metric(name=FOREIGN_EVENTS, unit="Count", value=1)
    return {"state": "Ignored", "reason": reason}


def owns_output(uri: Any) -> bool:
    """Whether a job's output path is under this deployment's ``results/`` (what its trigger writes)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return False
    bucket, _, key = uri[5:].partition("/")
    return bucket == env().bucket and key.startswith(RESULTS)


def reset() -> None:
    """Forget settings and clients (tests switch environments between cases)."""
    env.cache_clear()
    clients.cache_clear()
    registry.cache_clear()


def once(function: Any, *, key_argument: str, config: Any) -> Any:
    """``function`` behind Powertools idempotency on the batch table (built on first use, after the
    environment is read, so tests can point it at another table)."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent_function

    persistence = DynamoDBPersistenceLayer(table_name=env().idempotency_table, boto_config=RETRIES)
    return idempotent_function(
        data_keyword_argument=key_argument, config=config, persistence_store=persistence
    )(function)


def read_manifest(bucket: str, key: str, *, aws: Clients | None = None) -> Manifest | None:
    try:
        body = (aws or clients()).s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return decode(body)


def write_manifest(bucket: str, key: str, manifest: Manifest, *, aws: Clients | None = None) -> Manifest:
    """Write the manifest, updated now; returns what was written."""
    written = manifest.touched()
    (aws or clients()).s3.put_object(
        Bucket=bucket, Key=key, Body=encode(written), ContentType="application/json"
    )
    return written


def publish_outcome(manifest: Manifest, manifest_uri: str, *, aws: Clients | None = None) -> bool:
    """An SNS alert for a run that needs a person (rejected, failed, stopped, incomplete)."""
    state = manifest.state
    if state not in ALERTING:
        return False
    source = manifest.input
    subject = f"mdk batch {state}: {manifest.model} {source.get('key', '')}"
    lines = [
        f"Batch run {manifest.run_id} of model {manifest.model}: {state}.",
        manifest.message,
        "",
        f"Input:    s3://{source.get('bucket', '?')}/{source.get('key', '?')}",
        f"Manifest: {manifest_uri}",
    ]
    lines += [f"- {e['field']}: {e['message']}" for e in manifest.errors]
    job = manifest.job or {}
    if job.get("failure_reason"):
        lines.append(f"SageMaker: {job['failure_reason']}")
    (aws or clients()).sns.publish(
        TopicArn=env().topic_arn,
        Subject=_subject(subject),
        Message="\n".join(lines),
        MessageAttributes={
            "model": {"DataType": "String", "StringValue": manifest.model},
            "state": {"DataType": "String", "StringValue": state},
        },
    )
    return True


def _subject(text: str) -> str:
    """SNS subjects: ASCII, no line breaks, at most 100 characters."""
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return clean[:100]
