"""The local SageMaker: endpoints and transform jobs served by the kit's own serving container.

moto runs the control plane (models, endpoint configs, endpoints, created by its CloudFormation: no type
to complete); this module serves the data plane.

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
    model: str  # the SageMaker model it serves


class Containers:
    """The serving containers, one per (image, model data, environment), each started on first use: the
    first InvokeEndpoint that picks a variant of its model, a transform job, or ``LocalCloud.warm``.
    (SageMaker runs an endpoint's instances from CreateEndpoint on; here a deployed endpoint costs no
    memory until it is called, so the local cloud grows with the models in use, not the models listed.)
    Each starts under a lock of its own, so requests to containers that already run go on meanwhile."""

    def __init__(self, *, work: Path, s3: Any, sagemaker: Any, images: dict[str, Path]) -> None:
        self.work = work
        self.s3 = s3
        self.sagemaker = sagemaker
        self.images = images  # image asset hash -> build context (filled by the deployer)
        self._running: dict[str, _Container] = {}
        self._models: dict[str, dict[str, Any]] = {}  # SageMaker models are immutable: described once
        self._lock = threading.Lock()
        self._start_locks: dict[str, threading.Lock] = {}
        self._stopped = False

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
            if self._stopped:
                raise RuntimeError("the local cloud is stopping")
            start_lock = self._start_locks.setdefault(key, threading.Lock())
        with start_lock:
            with self._lock:
                running = self._running.get(key)
                if running is not None and running.process.poll() is None:
                    return running.url  # started while this call waited for the lock
            running = self._start(model_name, container, env)
            if not self._keep(key, running):  # stop() ran while it started: it must not outlive the cloud
                _stop(running.process)
                raise RuntimeError("the local cloud is stopping")
            return running.url

    def _keep(self, key: str, running: _Container) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._running[key] = running
            return True

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
        return _Container(url, process, log_path, model_name)

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
            self._stopped = True
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


#: InvokeEndpoint's limits ("InvokeEndpoint", https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html:
#: "Maximum payload size 6 MB" for the request and the response, and "A customer's model containers must
#: respond to requests within 60 seconds"), and the BYOC health check ("Use Your Own Inference Code with
#: Hosting Services", https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html:
#: "your container must respond to /ping requests within 2 seconds").
MAX_INVOKE_BYTES = 6 * 1024 * 1024
INVOKE_TIMEOUT_S = 60.0
PING_TIMEOUT_S = 2.0
#: Headers of InvokeEndpoint that reach the container (SageMaker "strips all POST headers except those
#: supported by the API").
_FORWARDED = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")


class Endpoints:
    """InvokeEndpoint, locally: a production variant by weight, then its container's /invocations."""

    def __init__(self, containers: Containers, sagemaker: Any, region: str = "us-east-1") -> None:
        self.containers = containers
        self.sagemaker = sagemaker
        self.region = region
        self._configs: dict[str, dict[str, Any]] = {}  # endpoint configs are immutable: described once
        self._pinged: set[str] = set()  # container URLs that answered /ping in time
        # the local AWS's sagemaker-runtime answers InvokeEndpoint through this object (moto's is canned)
        moto_adapter.HOOKS.endpoint_invoker = self.invoke_endpoint

    def variants(self, endpoint: str) -> tuple[list[tuple[str, float]], dict[str, str]]:
        """([(variant, current weight)], {variant: model}) of an endpoint; weights are read per request."""
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
        return weights, models

    def pick_variant(self, endpoint: str, target: str | None = None) -> tuple[str, str]:
        """(variant name, model name) for one request: ``target`` (TargetVariant), else by weight."""
        weights, models = self.variants(endpoint)
        if target is not None:
            if target not in models:
                raise LookupError(f"variant {target!r} is not a production variant of endpoint {endpoint}")
            return target, models[target]
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
        self,
        endpoint: str,
        body: bytes,
        headers: dict[str, str],
        *,
        target_variant: str | None = None,
        timeout: float = INVOKE_TIMEOUT_S,
    ) -> tuple[int, dict[str, str], bytes, str]:
        """(status, headers, body, variant) of the chosen variant's container."""
        variant, model = self.pick_variant(endpoint, target_variant)
        url = self.containers.url(model)
        self.ping(url)
        forward = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        status, answer_headers, answer = _post(url, "/invocations", body, forward, timeout)
        answer_headers["x-amzn-invoked-production-variant"] = variant
        return status, answer_headers, answer, variant

    def ping(self, url: str, timeout: float = PING_TIMEOUT_S) -> None:
        """SageMaker's health check of a container: ``GET /ping`` answered 200 within 2 seconds, else the
        container is not healthy (SageMaker takes such an instance out of service; here the request
        fails). Checked once per container process (its first request), not on every request."""
        if url in self._pinged:
            return
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        try:
            conn.request("GET", "/ping")
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError as exc:  # a timeout included
            raise RuntimeError(f"the container at {url} did not answer /ping within {timeout:g} s") from exc
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"the container at {url} answered /ping with {status}, not 200")
        self._pinged.add(url)

    def invoke_endpoint(self, endpoint: str, body: bytes, headers: dict[str, str]) -> _Answer:
        """``sagemaker-runtime:InvokeEndpoint`` as SageMaker answers it: the container's status, body and
        ContentType with ``x-Amzn-Invoked-Production-Variant``; SageMaker's own error shapes otherwise:
        ValidationError (400) for an unknown endpoint or variant and a body over 6 MB (the container never
        sees it), ModelError (424) with ``OriginalStatusCode`` / ``OriginalMessage`` for a container's 4xx
        or 5xx (see the ModelError shape in the API reference above and
        https://docs.aws.amazon.com/botocore/latest/reference/services/sagemaker-runtime/client/exceptions/ModelError.html),
        ModelError for an answer over 6 MB or none within 60 s."""
        try:
            return self._invoke_endpoint(endpoint, body, headers)
        except _Refusal as refusal:
            return refusal.answer

    def _invoke_endpoint(self, endpoint: str, body: bytes, headers: dict[str, str]) -> _Answer:
        lowered = {k.lower(): v for k, v in headers.items()}
        if len(body) > MAX_INVOKE_BYTES:
            raise _Refusal(
                400,
                "ValidationError",
                f"Request body of {len(body)} bytes is over InvokeEndpoint's limit of {MAX_INVOKE_BYTES}"
                " bytes (6 MB): send fewer records per request, or use batch transform",
            )
        target = lowered.get("x-amzn-sagemaker-target-variant")
        try:
            variant, model = self.pick_variant(endpoint, target)
        except LookupError as exc:
            raise _Refusal(400, "ValidationError", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - DescribeEndpoint failed: no such endpoint
            log.info("InvokeEndpoint %s: %s", endpoint, exc)
            raise _Refusal(
                400, "ValidationError", f"Endpoint {endpoint} of account {moto_adapter.ACCOUNT} not found."
            ) from None
        log_group = f"/aws/sagemaker/Endpoints/{endpoint}"
        try:
            url = self.containers.url(model)
            self.ping(url)
            forward = {k: v for k, v in lowered.items() if k in _FORWARDED}
            status, answer_headers, answer = _post(url, "/invocations", body, forward, INVOKE_TIMEOUT_S)
        except TimeoutError:
            raise _Refusal(
                424,
                "ModelError",
                f"Your invocation timed out while waiting for a response from container {variant}. Review"
                f" the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try"
                f" again.",
            ) from None
        except (RuntimeError, OSError) as exc:
            log.warning("InvokeEndpoint %s: %s", endpoint, exc)
            raise _Refusal(500, "InternalFailure", f"An internal failure occurred: {exc}") from None
        if status >= 400:
            kind = "client" if status < 500 else "server"
            text = answer.decode("utf-8", "replace")
            raise _Refusal(
                424,
                "ModelError",
                f'Received {kind} error ({status}) from {variant} with message "{text}". See'
                f" https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
                f"#logEventViewer:group={log_group} in account {moto_adapter.ACCOUNT} for more information.",
                OriginalStatusCode=status,
                OriginalMessage=text,
                LogStreamArn=f"arn:aws:logs:{self.region}:{moto_adapter.ACCOUNT}:log-group:{log_group}",
            )
        if len(answer) > MAX_INVOKE_BYTES:
            raise _Refusal(
                424,
                "ModelError",
                f"Received server error from {variant}: the response of {len(answer)} bytes is over"
                f" InvokeEndpoint's limit of {MAX_INVOKE_BYTES} bytes (6 MB)",
            )
        out = {
            "Content-Type": answer_headers.get("content-type", "application/octet-stream"),
            "x-Amzn-Invoked-Production-Variant": variant,
        }
        if "x-amzn-sagemaker-custom-attributes" in answer_headers:
            out["X-Amzn-SageMaker-Custom-Attributes"] = answer_headers["x-amzn-sagemaker-custom-attributes"]
        return status, out, answer


#: (status, headers, body) of an HTTP answer
_Answer = tuple[int, dict[str, str], bytes]


class _Refusal(Exception):
    """An error of the sagemaker-runtime API (rest-json): the type in ``x-amzn-ErrorType`` and the body."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        body = json.dumps({"ErrorCode": code, "Message": message, **fields}).encode()
        headers = {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/",
        }
        self.answer: _Answer = (status, headers, body)


def _post(
    url: str, path: str, body: bytes, headers: dict[str, str], timeout: float = INVOKE_TIMEOUT_S
) -> tuple[int, dict[str, str], bytes]:
    """POST to a container; a ``TimeoutError`` when it does not answer within ``timeout`` seconds."""
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
