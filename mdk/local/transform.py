"""Batch transform on this machine: what SageMaker does with a file, against the kit's own container.

The trigger configures jobs as ``SplitType=Line``, ``BatchStrategy=MultiRecord``, ``AssembleWith=Line``:
SageMaker packs whole lines into requests of at most ``MaxPayloadInMB``, keeps
``MaxConcurrentTransforms`` of them in flight, and writes the answers back line by line. With an id
field it also filters the input (``$.<features>``) and joins each answer to its record
(``{"<id>": ..., "SageMakerOutput": ...}``). :func:`transform` does the same against a running
container (``python -m sagemaker_endpoints.serve``), streaming, so memory stays bounded by the requests
in flight whatever the file's size. ``mdk batch run`` and the tests use it; the benchmark measures it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast
from urllib.parse import urlsplit

from mdk.config import ModelConfig
from mdk.local.processes import spawn
from mdk_runtime import batch
from mdk_runtime.manifest import Manifest, Source, encode
from mdk_runtime.media import JSONL

MiB = 1024 * 1024


@dataclass(frozen=True)
class TransformSettings:
    """The job's settings, as the trigger passes them to CreateTransformJob."""

    content_type: str
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1
    id_field: str | None = None
    features_field: str = "features"
    gzipped: bool = False


@dataclass
class TransformResult:
    input_lines: int
    requests: int
    tally: batch.OutputTally
    seconds: float


class _Client(threading.local):
    """One keep-alive HTTP connection per worker thread, as SageMaker's agent keeps one per slot."""

    def __init__(self, url: str, opened: list[http.client.HTTPConnection]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 8080
        self.conn: http.client.HTTPConnection | None = None
        self.opened = opened  # every thread's connection, closed when the transform ends

    def post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                self.opened.append(self.conn)
            try:
                self.conn.request(
                    "POST",
                    "/invocations",
                    body=body,
                    headers={"Content-Type": content_type, "Accept": JSONL},
                )
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _requests(lines: Iterable[bytes], limit: int) -> Iterator[list[bytes]]:
    """Whole lines packed into requests of at most ``limit`` bytes (newlines included)."""
    pending: list[bytes] = []
    size = 0
    for line in lines:
        cost = len(line) + 1
        if pending and size + cost > limit:
            yield pending
            pending, size = [], 0
        pending.append(line)
        size += cost
    if pending:
        yield pending


def _filter(record: bytes, settings: TransformSettings) -> tuple[bytes, object]:
    """SageMaker's InputFilter: the instance to send, and the id to join back (or an error)."""
    try:
        value = json.loads(record)
        return json.dumps(value[settings.features_field]).encode(), value[settings.id_field]
    except (ValueError, KeyError, TypeError):
        return b"", None


class TransformFailed(RuntimeError):
    """The container refused a whole request: SageMaker fails the job then (after its retries)."""


def _answers(status: int, body: bytes, count: int) -> list[bytes]:
    """The container's answer lines for ``count`` records (blank lines between requests dropped)."""
    if status != 200:
        raise TransformFailed(f"the container answered HTTP {status}: {body[:300].decode(errors='replace')}")
    lines = [line for line in batch.iter_lines([body]) if line.strip()]
    if len(lines) != count:
        raise TransformFailed(f"the container answered {len(lines)} lines for {count} records")
    return lines


def transform(
    source: IO[bytes], sink: IO[bytes], *, url: str, settings: TransformSettings
) -> TransformResult:
    """Score every line of ``source`` into ``sink`` (one output line per input line)."""
    started = time.perf_counter()
    opened: list[http.client.HTTPConnection] = []
    client = _Client(url, opened)
    joined = settings.id_field is not None
    limit = settings.max_payload_mb * batch.MB
    tally = batch.OutputTally()
    counts = {"lines": 0, "requests": 0}

    def send(records: list[bytes]) -> list[bytes]:
        if not joined:
            status, body = client.post(b"\n".join(records) + b"\n", settings.content_type)
            return _answers(status, body, len(records))
        filtered = [_filter(r, settings) for r in records]
        status, body = client.post(b"\n".join(f for f, _ in filtered) + b"\n", settings.content_type)
        answers = _answers(status, body, len(records))
        return [
            json.dumps({settings.id_field: rid, batch.JOINED_OUTPUT: json.loads(answer)}).encode()
            for (_, rid), answer in zip(filtered, answers, strict=True)
        ]

    def lines() -> Iterator[bytes]:
        for line in batch.iter_lines(batch.chunks(source, gzipped=settings.gzipped)):
            counts["lines"] += 1
            yield line

    window = max(1, settings.max_concurrent_transforms)
    in_flight: deque[Future[list[bytes]]] = deque()
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="transform") as pool:

        def drain(keep: int) -> None:
            while len(in_flight) > keep:
                out = b"\n".join(in_flight.popleft().result()) + b"\n"
                tally.add(batch.tally_output([out]))
                sink.write(out)

        try:
            for records in _requests(lines(), limit):
                counts["requests"] += 1
                in_flight.append(pool.submit(send, records))
                drain(window)
            drain(0)
        finally:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
            for conn in opened:
                conn.close()
    return TransformResult(
        input_lines=counts["lines"],
        requests=counts["requests"],
        tally=tally,
        seconds=time.perf_counter() - started,
    )


# -- the container, as SageMaker starts it --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def container(
    model_dir: Path, *, max_batch_size: int = 256, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m sagemaker_endpoints.serve`` on a free loopback port, until /ping answers 200.

    Yields the base URL and the process; on exit it gets SIGTERM (a graceful stop) as SageMaker sends.
    """
    repo = Path(__file__).resolve().parents[2]
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo / "layers" / "python"), str(repo)]),
        "MDK_MODEL_DIR": str(model_dir),
        "MDK_DEVICE": "cpu",
        "MDK_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MDK_MAX_BATCH_SIZE": str(max_batch_size),
        **(env or {}),
    }
    # Ends with this process however it ends (a parent-death signal: mdk.local.processes).
    process = spawn(
        [sys.executable, "-m", "sagemaker_endpoints.serve", "serve"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, timeout)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
            raise RuntimeError(f"the serving container exited with {process.returncode}: {err}")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            conn.request("GET", "/ping")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200:
                return
            last = f"HTTP {response.status}: {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"the serving container did not become ready in {timeout:.0f} s ({last})")


# -- a whole run, as the deployed pipeline does it -----------------------------------------------------


@dataclass(frozen=True)
class LocalRun:
    manifest: Manifest
    path: Path  # where its _status.json is


def run_file(model: ModelConfig, path: Path, out_dir: Path, *, bundle_dir: Path) -> LocalRun:
    """Check, score and reconcile one file the way trigger, job and status function do in AWS.

    Writes ``<out_dir>/<model>/<run>/output/<name>.out`` and ``_status.json`` next to it; its manifest's
    state is ``Rejected``, ``Completed``, ``Incomplete`` or ``Failed``.
    """
    from mdk.bundle import write_bundle

    settings = model.batch
    stat = path.stat()
    created = datetime.fromtimestamp(stat.st_mtime, UTC)
    run = batch.run_id("local", str(path.resolve()), f"{stat.st_mtime_ns}-{stat.st_size}", created)
    results = out_dir / model.name / run
    source = Source(bucket=None, key=str(path), size=stat.st_size)
    manifest = Manifest(run_id=run, model=model.name, state=batch.IN_PROGRESS, message="", input=source)
    check = batch.check_file(
        path.name,
        lambda: path.open("rb"),
        max_payload_mb=settings.max_payload_mb,
        id_field=settings.id_field,
        features_field=settings.features_field,
    )
    manifest = manifest.with_input(cast(Source, {**source, **check.fields}))
    if check.problems or check.content_type is None:
        return _write(results, manifest.reject(check.problems))

    job = TransformSettings(
        content_type=check.content_type,
        max_payload_mb=settings.max_payload_mb,
        max_concurrent_transforms=settings.max_concurrent_transforms,
        id_field=settings.id_field,
        features_field=settings.features_field,
        gzipped=check.gzipped,
    )
    output = results / batch.OUTPUT_DIR / (path.name + batch.OUTPUT_SUFFIX)
    output.parent.mkdir(parents=True, exist_ok=True)
    manifest = manifest.started({"name": f"local-{run}", "max_payload_mb": job.max_payload_mb})
    body_limit = str(settings.max_payload_mb * MiB + 1024)
    result: TransformResult | None = None
    failure = ""
    with (
        container(
            write_bundle(model, bundle_dir),
            # as SageMaker sets it in a transform job's container (no 6 MB response limit there)
            env={"MDK_MAX_BODY_BYTES": body_limit, "SAGEMAKER_BATCH": "true"},
        ) as (url, _),
        path.open("rb") as fh,
        output.open("wb") as sink,
    ):
        try:
            result = transform(fh, sink, url=url, settings=job)
        except TransformFailed as exc:
            failure = str(exc)
    manifest = manifest.ended_now()
    with output.open("rb") as fh:
        tally = batch.tally_output(batch.chunks(fh))
    manifest = manifest.reconcile(tally, files=[str(output)])
    if result is None:
        manifest = manifest.settle(batch.FAILED, failure, failure_reason=failure)
    return _write(results, manifest)


def _write(results: Path, manifest: Manifest) -> LocalRun:
    results.mkdir(parents=True, exist_ok=True)
    path = results / batch.MANIFEST
    written = manifest.touched()
    path.write_bytes(encode(written))
    return LocalRun(written, path)
