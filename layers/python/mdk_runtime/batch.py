"""Batch transform, the parts every side shares: the bucket layout, run and job names, the metric and
event names, the check of an input file, the tally of an output file, the run states and times (the
manifest itself is :mod:`mdk_runtime.manifest`).

The trigger and status functions (Lambda, with this package as a layer), the local transform runner
(``mdk batch run``) and the tests all use these, so a line is counted the same way everywhere: one
record per line, a final newline does not start another record (as :func:`mdk_runtime.records.split_lines`
reads a request body). Standard library only: the batch functions carry no numpy or onnxruntime.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal

from mdk_runtime.media import CSV, JSONL

INCOMING = "incoming/"
RESULTS = "results/"
STAGING = "staging/"
MANIFEST = "_status.json"
MANIFEST_VERSION = 1
OUTPUT_DIR = "output/"
OUTPUT_SUFFIX = ".out"  # SageMaker names each output after its input: <input name>.out
JOINED_OUTPUT = "SageMakerOutput"  # where SageMaker puts the prediction when it joins input and output
JOB_NAME_MAX = 63
MiB = 1024 * 1024
CHUNK = MiB
# SageMaker does not say whether MaxPayloadInMB counts 10^6 or 2^20 bytes: a record is checked against
# the smaller, and the container accepts the larger (plus slack) so no request of the job is refused.
MB = 1_000_000

FORMATS = {".jsonl": JSONL, ".ndjson": JSONL, ".csv": CSV}
GZIP_SUFFIX = ".gz"

# Run states, as the manifest reports them.
REJECTED = "Rejected"  # preflight refused the file; no job was started
IN_PROGRESS = "InProgress"  # the job is running
COMPLETED = "Completed"  # every input line has an output line (predictions or per-record errors)
INCOMPLETE = "Incomplete"  # SageMaker said Completed, but output lines are missing (or extra)
FAILED = "Failed"
STOPPED = "Stopped"
ALERTING = frozenset({REJECTED, INCOMPLETE, FAILED, STOPPED})
TERMINAL_JOB_STATES = ("Completed", "Failed", "Stopped")

# What the batch functions tell CloudWatch and EventBridge, shared with the stack's dashboard, alarms and
# rules (so the stack reads them here, not from the handlers): Powertools' service and namespace, the
# metric names (dimension Model), and the store load's hand-over event.
SERVICE = "mdk-batch"
NAMESPACE = "mdk"
RUNS_STARTED = "BatchRunsStarted"
RUNS_REJECTED = "BatchRunsRejected"
RUNS_COMPLETED = "BatchRunsCompleted"
RUNS_INCOMPLETE = "BatchRunsIncomplete"
RUNS_FAILED = "BatchRunsFailed"
RECORDS_IN = "BatchRecordsIn"
RECORDS_OUT = "BatchRecordsOut"
RECORD_ERRORS = "BatchRecordErrors"
RUN_SECONDS = "BatchRunSeconds"
STORED = "PredictionsStored"
FOREIGN_EVENTS = "BatchForeignEvents"  # events about another deployment's buckets or jobs (ignored)
LOG_RETENTION_FAILED = "TransformLogRetentionFailed"
STORE_SOURCE = "mdk.batch"
STORE_DETAIL_TYPE = "Prediction Store Load"


class BatchInputError(ValueError):
    """A file the pipeline refuses before starting a job; ``field`` names what was wrong."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code = code
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


# -- names ---------------------------------------------------------------------------------------


def parse_inbox_key(key: str) -> tuple[str, str]:
    """``incoming/<model>/<name>`` -> ``(model, name)``; the name may contain folders."""
    if not key.startswith(INCOMING):
        raise BatchInputError("bad_key", "key", f"expected a key under {INCOMING!r}")
    parts = key[len(INCOMING) :].split("/", 1)
    if len(parts) != 2 or not parts[0] or not parts[1] or parts[1].endswith("/"):
        raise BatchInputError(
            "bad_key", "key", "expected incoming/<model>/<file>, e.g. incoming/iris/2026-11-29.jsonl"
        )
    return parts[0], parts[1]


def input_format(name: str) -> tuple[str, bool]:
    """The content type and whether the file is gzip-compressed, from the file name's suffixes."""
    lower = name.lower()
    gzipped = lower.endswith(GZIP_SUFFIX)
    stem = lower[: -len(GZIP_SUFFIX)] if gzipped else lower
    for suffix, content_type in FORMATS.items():
        if stem.endswith(suffix):
            return content_type, gzipped
    allowed = ", ".join(sorted(FORMATS)) + f" (each optionally {GZIP_SUFFIX})"
    raise BatchInputError("unsupported_format", "key", f"expected a file ending in {allowed}")


def run_id(bucket: str, key: str, sequencer: str, created: datetime) -> str:
    """``<UTC time of the object>-<hash>``: sortable, and the same for every delivery of one S3 event.

    The hash covers bucket, key and S3's sequencer, so an overwrite of the same key (a new sequencer)
    is a new run, and a repeated event is the same run.
    """
    digest = hashlib.sha256(f"{bucket}\0{key}\0{sequencer}".encode()).hexdigest()[:12]
    return f"{created.astimezone(UTC):%Y%m%dT%H%M%SZ}-{digest}"


PREFIX_HEAD = 11  # letters and digits of the deployment name kept for people reading job lists
PREFIX_HASH = 8  # hex digits of SHA-256 over the whole deployment name


#: What the batch functions are told by their environment (the shared stack sets it): the deployment
#: (``<project>-<stage>``, whose job prefix scopes its jobs) and where its models' registry entries are
#: (``/mdk/<project>/<stage>/models/``, :func:`mdk.registry.model_parameter` less the model's name).
DEPLOYMENT_ENV = "MDK_DEPLOYMENT"
REGISTRY_ENV = "MDK_REGISTRY_PREFIX"
#: A model's name, as the config allows it (``mdk.config.NAME_PATTERN``): anything else in an inbox key
#: names no model, and is refused without a look-up.
MODEL_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")


#: The one log group SageMaker writes every transform job's logs to, per account and region, shared by
#: every deployment (so no stack can own it): the status function sets its retention.
TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"
TRANSFORM_LOG_RETENTION_ENV = "MDK_TRANSFORM_LOG_RETENTION_DAYS"


def job_prefix(deployment: str) -> str:
    """What every job name of a deployment starts with: ``<head>-<hash>-``, e.g. ``customerchu-1a2b3c4d-``.

    The status rule (an EventBridge ``prefix`` match), the IAM grants (``transform-job/<prefix>*``) and
    the transform log streams are scoped by it, so it must be unique per deployment whatever the
    length of the name, and no job name of one deployment may start with another's prefix. ``head``
    is the name's first letters and digits (no hyphen) and ``hash`` is fixed-length hex of the whole
    name: a string starting with a prefix has its first hyphen right after that prefix's head, so two
    prefixes of which one starts a name of the other share head and hash, hence (but for a SHA-256
    collision in 32 bits) the deployment. At most 21 characters: with the model's 12 and the run's
    29, a job name fits SageMaker's 63.
    """
    head = "".join(c for c in deployment.lower() if c in _ALNUM)[:PREFIX_HEAD] or "mdk"
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:PREFIX_HASH]
    return f"{head}-{digest}-"


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def is_own_job(deployment: str, job: str) -> bool:
    """Whether a transform job name is one of this deployment's (what its status rule matches)."""
    return job.startswith(job_prefix(deployment))


def job_name(deployment: str, model: str, run: str) -> str:
    """A transform job name, deterministic per run: SageMaker refuses a second job of the same name
    (``ResourceInUse``), which is how a repeated event finds its job already started."""
    name = f"{job_prefix(deployment)}{model[:12].rstrip('-')}-{run}"
    assert len(name) <= JOB_NAME_MAX, name
    return name


def uploads_pattern(bucket: Any) -> dict[str, Any]:
    """The EventBridge pattern of the uploads rule: files created under ``incoming/`` of the inbox.

    Every key under incoming/ (the trigger, not the rule, refuses other suffixes, so a file of the wrong
    type gets a manifest and an alert instead of silence). ``bucket``: its name (a token in the stack).
    """
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": INCOMING}]}},
    }


def jobs_finished_pattern(deployment: str) -> dict[str, Any]:
    """The EventBridge pattern of the status rule: this deployment's transform jobs reaching a final state."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {
            "TransformJobName": [{"prefix": job_prefix(deployment)}],
            "TransformJobStatus": list(TERMINAL_JOB_STATES),
        },
    }


def results_prefix(model: str, run: str) -> str:
    return f"{RESULTS}{model}/{run}/"


def manifest_key(model: str, run: str) -> str:
    return results_prefix(model, run) + MANIFEST


def staging_key(model: str, run: str, name: str) -> str:
    """Where the trigger copies the exact object version a run scores (later overwrites cannot leak in)."""
    return f"{STAGING}{model}/{run}/{name.rsplit('/', 1)[-1]}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// URI, got {uri[:60]!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


# -- reading files -------------------------------------------------------------------------------


def chunks(stream: IO[bytes], *, gzipped: bool = False, size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a file (an S3 body or a local file), decompressed if gzipped, in ``size`` pieces."""
    if not gzipped:
        while piece := stream.read(size):
            yield piece
        return
    reader = gzip.GzipFile(fileobj=stream, mode="rb")
    while True:
        try:
            piece = reader.read(size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise BatchInputError(
                "bad_gzip", "key", f"the file ends in .gz but is not valid gzip ({exc})"
            ) from None
        if not piece:
            return
        yield piece


def iter_lines(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Records of a file, one per line without its newline (and ``\\r``); the final newline ends the
    last record rather than starting an empty one. Blank lines in the middle are records."""
    rest = b""
    for piece in pieces:
        data = rest + piece if rest else piece
        lines = data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if rest.strip():
        yield rest[:-1] if rest.endswith(b"\r") else rest


@dataclass
class LineScan:
    """What the trigger learns from one pass over an input file, before it starts a job."""

    lines: int = 0
    size: int = 0  # bytes, decompressed
    blank_lines: int = 0
    longest_bytes: int = 0
    longest_line: int = 0  # 1-based
    first_line: bytes = b""

    def to_json(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "bytes": self.size,
            "blank_lines": self.blank_lines,
            "longest_line_bytes": self.longest_bytes,
        }


def scan_lines(pieces: Iterable[bytes]) -> LineScan:
    scan = LineScan()
    for number, line in enumerate(iter_lines(_counted(pieces, scan)), start=1):
        size = len(line)
        if number == 1:
            scan.first_line = line[:4096]
        if size > scan.longest_bytes:
            scan.longest_bytes, scan.longest_line = size, number
        if not line.strip():
            scan.blank_lines += 1
        scan.lines = number
    return scan


def _counted(pieces: Iterable[bytes], scan: LineScan) -> Iterator[bytes]:
    for piece in pieces:
        scan.size += len(piece)
        yield piece


def preflight(
    scan: LineScan,
    content_type: str,
    *,
    max_payload_mb: int,
    id_field: str | None = None,
    features_field: str | None = None,
) -> list[BatchInputError]:
    """Every reason the file cannot become a job (empty list: start it)."""
    problems: list[BatchInputError] = []
    if scan.lines == scan.blank_lines:
        what = "no records" if scan.lines == 0 else f"no records, only {scan.lines} blank lines"
        problems.append(BatchInputError("empty_file", "file", f"the file holds {what}"))
        return problems
    limit = max_payload_mb * MB
    if scan.longest_bytes > limit:
        problems.append(
            BatchInputError(
                "record_too_large",
                f"line {scan.longest_line}",
                f"the record is {scan.longest_bytes} bytes; each record must fit in one request of "
                f"{max_payload_mb} MB (the model's batch.max_payload_mb, at most 100)",
            )
        )
    if content_type == CSV:
        if id_field is not None:
            problems.append(
                BatchInputError(
                    "id_needs_json_lines",
                    "file",
                    f"this model's batch.id_field ({id_field!r}) needs JSON Lines records "
                    f'({{"{id_field}": ..., "{features_field}": [...]}}); CSV rows carry no id',
                )
            )
        elif _looks_like_header(scan.first_line):
            problems.append(
                BatchInputError(
                    "csv_header",
                    "line 1",
                    "a field is not a number, so this looks like a header: batch CSV files hold data "
                    "rows only, one instance per line in the model's input order",
                )
            )
    elif id_field is not None:
        problems.extend(_check_joined_record(scan.first_line, id_field, features_field or "features"))
    return problems


def _looks_like_header(line: bytes) -> bool:
    for text in line.decode("utf-8", "replace").split(","):
        try:
            float(text)
        except ValueError:
            return True
    return False


def _check_joined_record(line: bytes, id_field: str, features_field: str) -> list[BatchInputError]:
    expected = (
        f'a JSON object with "{id_field}" and "{features_field}" (batch.id_field, batch.features_field)'
    )
    try:
        record = json.loads(line)
    except ValueError:
        return [BatchInputError("bad_record", "line 1", f"not valid JSON; expected {expected}")]
    if not isinstance(record, dict) or id_field not in record or features_field not in record:
        return [BatchInputError("bad_record", "line 1", f"expected {expected}")]
    return []


@dataclass(frozen=True)
class FileCheck:
    """The preflight of one file: what it is, what its pass counted, and every reason to refuse it."""

    content_type: str | None
    gzipped: bool
    scan: LineScan | None
    problems: list[BatchInputError]
    #: the manifest's ``input`` members it learnt: format and compression, then the counts
    fields: dict[str, Any]


def check_file(
    name: str,
    open_file: Callable[[], AbstractContextManager[IO[bytes]]],
    *,
    max_payload_mb: int,
    id_field: str | None = None,
    features_field: str | None = None,
) -> FileCheck:
    """Check a file before any job: its suffixes name a format, then one streaming pass (``open_file``
    opens it: an S3 body, a local file) counts its lines for :func:`preflight`. The trigger and the
    local runner both check files with this; a refusal on the way (bad gzip, a vanished object) is a
    problem, not an exception."""
    content_type: str | None = None
    gzipped = False
    scan: LineScan | None = None
    fields: dict[str, Any] = {}
    try:
        content_type, gzipped = input_format(name)
        fields.update(format=content_type, compression="gzip" if gzipped else None)
        with open_file() as stream:
            scan = scan_lines(chunks(stream, gzipped=gzipped))
        fields.update(scan.to_json())
        problems = preflight(
            scan,
            content_type,
            max_payload_mb=max_payload_mb,
            id_field=id_field,
            features_field=features_field,
        )
    except BatchInputError as exc:
        problems = [exc]
    return FileCheck(content_type, gzipped, scan, problems, fields)


# -- output ----------------------------------------------------------------------------------------


@dataclass
class OutputTally:
    """Output lines of a run, and which of them are per-record errors (by the container's error codes)."""

    lines: int = 0
    error_lines: int = 0
    unreadable_lines: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: OutputTally) -> None:
        offset = self.lines
        self.lines += other.lines
        self.error_lines += other.error_lines
        self.unreadable_lines += other.unreadable_lines
        for code, count in other.errors_by_code.items():
            self.errors_by_code[code] = self.errors_by_code.get(code, 0) + count
        for error in other.first_errors:
            if len(self.first_errors) < 10:
                self.first_errors.append({**error, "line": error["line"] + offset})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def answer_of(line: bytes) -> Any:
    """The container's answer on an output line (unwrapping SageMaker's join); raises ValueError."""
    value = json.loads(line)
    if isinstance(value, dict) and JOINED_OUTPUT in value:
        return value[JOINED_OUTPUT]
    return value


def error_of(answer: Any) -> dict[str, Any] | None:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict) and len(answer) == 1:
        error: dict[str, Any] = answer["error"]
        return error
    return None


def tally_output(pieces: Iterable[bytes]) -> OutputTally:
    """Count output lines and per-record errors. Blank lines are not records: SageMaker may put one
    between the answers of two requests when it assembles a file by line."""
    tally = OutputTally()
    for line in iter_lines(pieces):
        if not line.strip():
            continue
        tally.lines += 1
        if b'"error"' not in line:
            continue  # the fast path: a prediction (an error always has this key)
        try:
            error = error_of(answer_of(line))
        except ValueError:
            tally.unreadable_lines += 1
            error = {"code": "unreadable_output", "message": "the output line is not JSON"}
        if error is None:
            continue
        tally.error_lines += 1
        code = str(error.get("code", "unknown"))
        tally.errors_by_code[code] = tally.errors_by_code.get(code, 0) + 1
        if len(tally.first_errors) < 10:
            tally.first_errors.append(
                {"line": tally.lines, "code": code, "message": str(error.get("message", ""))[:300]}
            )
    return tally


# -- times, as events, APIs and the manifest give them ---------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


EPOCH_DIVISORS = {"s": 1, "ms": 1000}


def iso(value: Any, *, epoch: Literal["s", "ms"]) -> str | None:
    """A time from an event or an API as ISO 8601 UTC: ISO text, a datetime, or a number (or numeric
    text) since the epoch in the unit its source uses. Each call site names that unit; nothing is
    guessed from the magnitude:

    * SageMaker's "Transform Job State Change" events: ``CreationTime``, ``TransformStartTime``,
      ``TransformEndTime`` in epoch **milliseconds** ("Events that Amazon SageMaker AI sends to Amazon
      EventBridge", https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html).
    * SageMaker's JSON API (``DescribeTransformJob`` over the wire): epoch **seconds** with a fraction
      (the awsJson1_1 protocol's default timestamp format, https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html);
      boto3 parses them into datetimes.
    * EventBridge's envelope ``time``: ISO 8601 text on AWS (see :func:`event_time`).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / EPOCH_DIVISORS[epoch], UTC)
    else:
        text = str(value)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = datetime.fromtimestamp(float(text) / EPOCH_DIVISORS[epoch], UTC)
            except (ValueError, OverflowError, OSError):
                return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_time(value: Any) -> str | None:
    """An EventBridge event's ``time`` as ISO 8601 UTC.

    AWS sends ISO 8601 text ("time": "2021-11-12T00:00:00Z", in "Amazon EventBridge events",
    https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html, and in S3's "EventBridge
    event message structure", https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html).
    A number there comes only from moto (5.2.5's S3 notifications put ``unix_time()``: epoch seconds,
    with a fraction), which the local cloud runs: read as seconds, never as milliseconds.
    """
    return iso(value, epoch="s")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
            start.replace("Z", "+00:00")
        )
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)
