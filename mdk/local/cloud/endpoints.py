"""SageMaker in the local cloud: endpoints and transform jobs served by the kit's own serving container.

A SageMaker model of the local AWS names an image (one of the deployed image assets, by its tag) and a
``model.tar.gz`` in the local S3. :class:`Containers` runs that image's code (``sagemaker_endpoints`` and
the runtime from the asset's build context) with this machine's Python, on CPU, on a free loopback port,
with the model unpacked as SageMaker would unpack it into ``/opt/ml/model``: one process per
(image, model data, environment), started on first use.

:class:`Endpoints` answers ``InvokeEndpoint`` for the API: it picks a production variant by the endpoint's
current weights, per request, and forwards the body to that variant's container.

:class:`TransformJobs` runs what ``CreateTransformJob`` asked for: every object under the input prefix is
split into lines, sent in requests of at most ``MaxPayloadInMB`` (``MaxConcurrentTransforms`` in flight)
and the answers written to ``<S3OutputPath>/<name>.out`` (:func:`mdk.local.transform.transform`, the same
code ``mdk batch run`` uses); then the job ends Completed or Failed and the "SageMaker Transform Job State
Change" event goes to EventBridge, as on AWS.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mdk.local.cloud import moto_adapter
from mdk.local.processes import spawn
from mdk.local.transform import TransformFailed, TransformSettings, _wait_ready, free_port, transform
from mdk_runtime import batch

log = logging.getLogger("mdk.local")
_TAG = re.compile(r":([0-9a-f]{64})$")


@dataclass
class _Container:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


class Containers:
    def __init__(self, *, work: Path, s3: Any, sagemaker: Any, images: dict[str, Path]) -> None:
        self.work = work
        self.s3 = s3
        self.sagemaker = sagemaker
        self.images = images  # image asset hash -> build context (filled by the deployer)
        self._running: dict[str, _Container] = {}
        self._models: dict[str, dict[str, Any]] = {}  # SageMaker models are immutable: described once
        self._lock = threading.Lock()

    def url(self, model_name: str, extra_env: dict[str, str] | None = None) -> str:
        model = self._models.get(model_name)
        if model is None:
            model = self._models[model_name] = self.sagemaker.describe_model(ModelName=model_name)
        container = model["PrimaryContainer"]
        env = {**container.get("Environment", {}), **(extra_env or {})}
        key = json.dumps([container["Image"], container.get("ModelDataUrl"), sorted(env.items())])
        with self._lock:
            running = self._running.get(key)
            if running is not None and running.process.poll() is None:
                return running.url
            running = self._start(model_name, container, env)
            self._running[key] = running
            return running.url

    def _start(self, model_name: str, container: dict[str, Any], env: dict[str, str]) -> _Container:
        match = _TAG.search(container["Image"])
        if match is None or match.group(1) not in self.images:
            raise RuntimeError(
                f"model {model_name}: image {container['Image']} is not one of the deployed image assets"
            )
        context = self.images[match.group(1)]
        model_dir = self._model_dir(container.get("ModelDataUrl"))
        port = free_port()
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"sagemaker-{model_name}-{port}.log"
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **env,
            "PYTHONPATH": os.pathsep.join([str(context / "layers" / "python"), str(context)]),
            "PYTHONUNBUFFERED": "1",
            "MDK_MODEL_DIR": str(model_dir),
            "MDK_DEVICE": "cpu",  # no GPU here: the container's CPU path (as the GPU image's fallback)
            "MDK_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(port),
        }
        with log_path.open("wb") as sink:
            # Ends with this process however it ends (a parent-death signal: mdk.local.processes).
            process = spawn(
                [sys.executable, "-m", "sagemaker_endpoints.serve", "serve"],
                env=environ,
                cwd=context,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, 120)
        except RuntimeError as exc:
            _stop(process)
            raise RuntimeError(f"{exc}; log: {log_path}") from exc
        log.info("serving container for %s at %s (pid %d, log %s)", model_name, url, process.pid, log_path)
        return _Container(url, process, log_path)

    def _model_dir(self, url: str | None) -> Path:
        if not url:
            raise RuntimeError("the model has no ModelDataUrl")
        parts = urlsplit(url)
        digest = re.sub(r"[^A-Za-z0-9]", "_", parts.netloc + parts.path)[-120:]
        target = self.work / "models" / digest
        if target.is_dir():
            return target
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            archive = Path(tmp) / "model.tar.gz"
            self.s3.download_file(parts.netloc, parts.path.lstrip("/"), str(archive))
            unpacked = Path(tmp) / "model"
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
            target.parent.mkdir(parents=True, exist_ok=True)
            unpacked.rename(target)
        return target

    def running(self) -> list[_Container]:
        with self._lock:
            return [c for c in self._running.values() if c.process.poll() is None]

    def stop(self) -> None:
        with self._lock:
            running = list(self._running.values())
            self._running.clear()
        for item in running:
            _stop(item.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Endpoints:
    """InvokeEndpoint, locally: a production variant by weight, then its container's /invocations."""

    def __init__(self, containers: Containers, sagemaker: Any) -> None:
        self.containers = containers
        self.sagemaker = sagemaker
        self._configs: dict[str, dict[str, Any]] = {}  # endpoint configs are immutable: described once

    def pick_variant(self, endpoint: str) -> tuple[str, str]:
        """(variant name, model name) for one request; the weights are read per request (they change)."""
        described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        name = described["EndpointConfigName"]
        config = self._configs.get(name)
        if config is None:
            config = self._configs[name] = self.sagemaker.describe_endpoint_config(EndpointConfigName=name)
        models = {v["VariantName"]: v["ModelName"] for v in config["ProductionVariants"]}
        variants = described.get("ProductionVariants") or config["ProductionVariants"]
        weights = [
            (v["VariantName"], float(v.get("CurrentWeight", v.get("InitialVariantWeight", 1.0))))
            for v in variants
        ]
        total = sum(w for _, w in weights)
        if total <= 0:
            raise RuntimeError(f"endpoint {endpoint}: every variant has weight 0")
        draw = random.uniform(0, total)  # noqa: S311 - traffic splitting, not security
        for name, weight in weights:
            if draw < weight:
                return name, models[name]
            draw -= weight
        return weights[-1][0], models[weights[-1][0]]

    def invoke(
        self, endpoint: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes, str]:
        """(status, headers, body, variant) of the chosen variant's container."""
        variant, model = self.pick_variant(endpoint)
        status, answer_headers, answer = _post(self.containers.url(model), "/invocations", body, headers)
        answer_headers["x-amzn-invoked-production-variant"] = variant
        return status, answer_headers, answer, variant


def _post(
    url: str, path: str, body: bytes, headers: dict[str, str], timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _epoch_ms(value: Any) -> Any:
    """Datetimes as AWS's events carry them: epoch milliseconds."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return str(value)


class TransformJobs:
    """Runs the local AWS's transform jobs (handed over by moto_adapter's CreateTransformJob hook)."""

    def __init__(self, *, containers: Containers, s3: Any, events: Any, region: str, work: Path) -> None:
        self.containers = containers
        self.s3 = s3
        self.events = events
        self.region = region
        self.work = work
        self.finished: list[dict[str, Any]] = []
        #: Fault injection for the next jobs, in order: "fail" (the job ends Failed, as on an algorithm
        #: error) or "short" (Completed, but the output lacks its last line): what the pipeline must catch.
        self.faults: deque[str] = deque()

    def run(self, job: dict[str, Any]) -> None:
        name = job["TransformJobName"]
        status, reason = "Completed", ""
        try:
            self._run(job)
        except (TransformFailed, RuntimeError, OSError, ValueError) as exc:
            status, reason = "Failed", f"{type(exc).__name__}: {exc}"[:1024]
            log.warning("transform job %s failed: %s", name, reason)
        except Exception as exc:
            status, reason = "Failed", f"local transform runner: {type(exc).__name__}: {exc}"[:1024]
            log.exception("transform job %s failed", name)
        moto_adapter.finish_transform_job(name, self.region, status=status, failure_reason=reason)
        self._emit(name)

    def _run(self, job: dict[str, Any]) -> None:
        fault = self.faults.popleft() if self.faults else None
        if fault == "fail":
            raise RuntimeError("ClientError: injected fault: the algorithm container exited with code 1")
        source = job["TransformInput"]
        uri = urlsplit(source["DataSource"]["S3DataSource"]["S3Uri"])
        bucket, prefix = uri.netloc, uri.path.lstrip("/")
        output = urlsplit(job["TransformOutput"]["S3OutputPath"])
        processing = job.get("DataProcessing") or {}
        id_field = None
        features = "features"
        if processing.get("JoinSource") == "Input":
            features = processing.get("InputFilter", "$.features").removeprefix("$.")
            match = re.match(r"\$\['([^']+)'", processing.get("OutputFilter", ""))
            id_field = match.group(1) if match else None
        payload_mb = int(job.get("MaxPayloadInMB", 6))
        settings = TransformSettings(
            content_type=source.get("ContentType", "application/jsonlines"),
            max_payload_mb=payload_mb,
            max_concurrent_transforms=int(job.get("MaxConcurrentTransforms", 1)),
            id_field=id_field,
            features_field=features,
            gzipped=source.get("CompressionType") == "Gzip",
        )
        url = self.containers.url(
            job["ModelName"],
            # as SageMaker sets it in a transform job's container (no 6 MB response limit there)
            {
                **job.get("Environment", {}),
                "MDK_MAX_BODY_BYTES": str(payload_mb * 1024 * 1024 + 1024),
                "SAGEMAKER_BATCH": "true",
            },
        )
        keys = [
            item["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        if not keys:
            raise RuntimeError(f"no input objects under s3://{bucket}/{prefix}")
        for key in keys:
            relative = key[len(prefix) :].lstrip("/") if key != prefix else key.rsplit("/", 1)[-1]
            with tempfile.TemporaryDirectory(dir=self.work) as tmp:
                local_in, local_out = Path(tmp) / "in", Path(tmp) / "out"
                self.s3.download_file(bucket, key, str(local_in))
                with local_in.open("rb") as fh, local_out.open("wb") as sink:
                    transform(fh, sink, url=url, settings=settings)
                if fault == "short":
                    answers = local_out.read_bytes().splitlines(keepends=True)
                    local_out.write_bytes(b"".join(answers[:-1]))
                out_key = f"{output.path.strip('/')}/{relative}{batch.OUTPUT_SUFFIX}".lstrip("/")
                self.s3.upload_file(str(local_out), output.netloc, out_key)

    def _emit(self, name: str) -> None:
        described = self.containers.sagemaker.describe_transform_job(TransformJobName=name)
        described.pop("ResponseMetadata", None)
        self.finished.append(described)
        self.events.put_events(
            Entries=[
                {
                    "Source": "aws.sagemaker",
                    "DetailType": "SageMaker Transform Job State Change",
                    "Detail": json.dumps(described, default=_epoch_ms),
                    "Resources": [described["TransformJobArn"]],
                }
            ]
        )
