"""The local Lambda: functions run for real (one Runtime Interface Emulator process per version, started
on the version's first invocation), and the CloudFormation types of Lambda that moto's CloudFormation
skips (aliases, permissions, event invoke configs).

Image functions are staged from the recipe their Dockerfile renders (:mod:`mdk.images`); zip functions
from the zip-function recipe (layers, then the code, on the Lambda base image). Both get the boto3 that
Lambda's Python runtime and base image provide, in the runtime dir (the stager puts it there).
Each process gets the version's configuration from the local
AWS (environment, memory, timeout) with ``AWS_ENDPOINT_URL`` pointing back at it. An invocation through an
alias picks the version by the alias's routing weights, per request, as Lambda does.

Like Lambda, the runner enforces the synchronous payload limits (Lambda quotas, "Invocation payload
(request and response)": 6 MB synchronous, 1 MB asynchronous,
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): a request over the limit is
refused before any function runs (:class:`InvokeRefused`, as the Invoke API's 413
``RequestEntityTooLargeException``), and a response over 6,291,556 bytes fails the invocation with Lambda's
``Function.ResponseSizeTooLarge`` function error instead of being delivered. A sandbox whose emulator died
is replaced: the invocation in flight fails as ``Runtime.ExitError`` and the next one cold-starts a new
sandbox, as Lambda replaces a failed execution environment.

Like Lambda, the runner reports ``AWS/Lambda`` metrics per invocation (Invocations, Errors, Duration by
function, by alias and by executed version) and turns the functions' embedded-metric-format log lines
into metrics (:mod:`mdk.local.cloud.services.cloudwatch`), so alarms see what they would see on AWS.
Each version's log is a file under ``<work>/logs``.

At deploy time (:mod:`mdk.local.cloud.deploy`) this module records which code each function version runs
(:func:`record_code`), applies a function's new configuration before moto publishes its new version
(:func:`configure_functions`), and completes the aliases: a changed alias that a CodeDeploy deployment
group manages is handed to the local CodeDeploy instead of moved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import re
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mdk.images import Recipe, StagedImage, recipe_for, stage, zip_function
from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import AliasChange, Completion, DeployError, completes
from mdk.local.cloud.services.cloudwatch import Metrics, emf_data
from mdk.local.cloud.services.lambda_quotas import (
    ASYNC_REQUEST_LIMIT,
    RESPONSE_LIMIT,
    RESPONSE_TOO_LARGE,
    SYNC_REQUEST_LIMIT,
    InvokeRefused,
    check_request,
)
from mdk.local.cloud.template import Prepared
from mdk.local.rie import LambdaProcess

__all__ = [  # the quotas are the runner's too
    "ASYNC_REQUEST_LIMIT",
    "LAMBDA_BASE",
    "RESPONSE_LIMIT",
    "SYNC_REQUEST_LIMIT",
    "FunctionCode",
    "FunctionRunner",
    "Invocation",
    "InvokeRefused",
    "configure_functions",
    "current_aliases",
    "record_code",
    "split_function",
]
log = logging.getLogger("mdk.local")
_HASH = re.compile(r"([0-9a-f]{64})")
LAMBDA_BASE = "public.ecr.aws/lambda/python:3.12"


@dataclass(frozen=True)
class FunctionCode:
    """What a function version runs: an image build context, or zip code with its layers."""

    key: str  # content identity (asset hashes): one staged copy per key
    kind: str  # "image" or "zip"
    context: Path  # image: the build context; zip: the code directory
    build_args: tuple[tuple[str, str], ...] = ()
    dockerfile: str = "Dockerfile"
    handler: str = ""
    layers: tuple[Path, ...] = ()
    recipe: Recipe | None = None  # image: the recipe itself (else the kit recipe its Dockerfile renders)


@dataclass
class Invocation:
    function: str
    version: str
    payload: bytes
    errored: bool
    duration_ms: float
    status: int = 200


@dataclass
class _Running:
    process: LambdaProcess
    lock: threading.Lock = field(default_factory=threading.Lock)
    tail: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class FunctionRunner:
    """Invokes the local cloud's functions; see the module docstring."""

    def __init__(
        self,
        *,
        work: Path,
        rie: Path,
        lambda_client: Any,
        metrics: Metrics,
        endpoint_url: str,
        region: str,
        layer_cache: Path | None = None,
    ) -> None:
        self.work = work
        self.layer_cache = layer_cache or work / "layers"  # pip installs, cached like Docker layers
        self.rie = rie
        self.lambda_client = lambda_client
        self.metrics = metrics
        self.endpoint_url = endpoint_url
        self.region = region
        self.code: dict[tuple[str, str], FunctionCode] = {}  # (function, version) -> code; "$LATEST" too
        self._staged: dict[str, StagedImage] = {}
        self._running: dict[tuple[str, str], _Running] = {}
        self._lock = threading.Lock()
        self._stage_locks: dict[str, threading.Lock] = {}
        self._start_locks: dict[tuple[str, str], threading.Lock] = {}  # one start at a time per version
        self.observers: list[Callable[[Invocation, str | None], None]] = []
        self._stopped = False

    # ---------------------------------------------------------------------------------- invoking

    def resolve_version(self, function: str, qualifier: str | None) -> tuple[str, str | None]:
        """(version to run, alias or None) for ``function:qualifier``; an alias picks by its weights."""
        if qualifier in (None, "", "$LATEST"):
            return "$LATEST", None
        assert qualifier is not None
        if qualifier.isdigit():
            return qualifier, None
        alias = self.lambda_client.get_alias(FunctionName=function, Name=qualifier)
        weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        draw = random.random()  # noqa: S311 - traffic splitting, not security
        for version, weight in weights.items():
            if draw < weight:
                return str(version), qualifier
            draw -= weight
        return str(alias["FunctionVersion"]), qualifier

    def invoke(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        *,
        timeout: float | None = None,
        asynchronous: bool = False,
    ) -> Invocation:
        """Run one invocation; raises :class:`InvokeRefused` when Lambda would not run the function at all."""
        check_request(payload, asynchronous=asynchronous)
        name, qualifier = split_function(function, qualifier)
        version, alias = self.resolve_version(name, qualifier)
        started = time.perf_counter()
        running = self.process(name, version)
        if not running.process.alive():  # died while idle: this invocation cold-starts a new sandbox
            self._discard(name, version, running)
            running = self.process(name, version)
        with running.lock:  # one sandbox per version: its invocations queue up, as with concurrency 1
            status, body = self._call(running, payload, timeout)
        duration_ms = (time.perf_counter() - started) * 1000
        if not running.process.alive():
            self._discard(name, version, running)  # the next invocation starts a new sandbox
        errored = status != 200 or _is_error_payload(body)
        result = Invocation(name, version, body, errored, duration_ms, status)
        self._report(result, alias)
        for observer in self.observers:
            observer(result, alias)
        return result

    def _call(self, running: _Running, payload: bytes, timeout: float | None) -> tuple[int, bytes]:
        process = running.process
        status, body = self._post(process, payload, timeout or process.timeout_s + 5)
        if status == 502 and b"Function.ResponseSizeTooLarge" in body:
            # The emulator refused the runtime's answer (its runtime then exits); Invoke reports that as a
            # function error with status 200, not as a service error.
            return 200, json.dumps(RESPONSE_TOO_LARGE).encode()
        if status == 200 and len(body) > RESPONSE_LIMIT:
            return 200, json.dumps(RESPONSE_TOO_LARGE).encode()  # never delivered, whoever answered it
        if status == _DISCONNECTED:
            # The emulator hung up: a dying sandbox drops the connection a moment before its process
            # can be reaped, so give it that moment before calling the sandbox alive (and this a 504).
            deadline = time.monotonic() + 2.0
            while process.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if process.alive():
                return 504, body
            # The sandbox died under the invocation (kill -9, OOM): Lambda reports the runtime's exit.
            message = (
                f"RequestId: {uuid.uuid4()} Error: Runtime exited with error: "
                f"{_exit_reason(process.returncode())}"
            )
            return 200, json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
        return status, body

    def _discard(self, function: str, version: str, running: _Running) -> None:
        with self._lock:
            if self._running.get((function, version)) is running:
                del self._running[(function, version)]
        running.stop.set()
        with contextlib.suppress(Exception):
            running.process.stop()
        log.warning(
            "the sandbox of %s version %s died (%s); the next invocation starts a new one",
            function,
            version,
            _exit_reason(running.process.returncode()),
        )

    def invoke_for_moto(
        self, function: str, qualifier: str | None, payload: bytes, asynchronous: bool
    ) -> tuple[bytes, bool]:
        """What moto's Invoke hook wants; :class:`InvokeRefused` propagates (the adapter answers it)."""
        try:
            result = self.invoke(function, qualifier, payload, asynchronous=asynchronous)
        except InvokeRefused:
            raise
        except Exception as exc:
            log.exception("invoking %s:%s failed", function, qualifier)
            body = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
            return body, True
        if asynchronous and result.errored:
            log.warning(
                "asynchronous invocation of %s:%s failed: %s", function, result.version, result.payload[:500]
            )
        return result.payload, result.errored

    @staticmethod
    def _post(process: LambdaProcess, payload: bytes, timeout: float) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 - loopback emulator only
            process.url, data=payload or b"{}", headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:  # a timeout: Lambda answers Task timed out
            if "timed out" in str(exc):
                message = f"Task timed out after {timeout:.2f} seconds"
                return 504, json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode()
            return _DISCONNECTED, json.dumps(
                {"errorType": "Sandbox.Failure", "errorMessage": str(exc)}
            ).encode()

    def _report(self, result: Invocation, alias: str | None) -> None:
        now = datetime.now(UTC)
        dimension_sets = [[{"Name": "FunctionName", "Value": result.function}]]
        if alias:
            resource = [
                {"Name": "FunctionName", "Value": result.function},
                {"Name": "Resource", "Value": f"{result.function}:{alias}"},
            ]
            dimension_sets.append(resource)
            dimension_sets.append([*resource, {"Name": "ExecutedVersion", "Value": result.version}])
        for dimensions in dimension_sets:
            for name, value, unit in (
                ("Invocations", 1.0, "Count"),
                ("Errors", float(result.errored), "Count"),
                ("Duration", result.duration_ms, "Milliseconds"),
            ):
                self.metrics.put(
                    "AWS/Lambda",
                    {
                        "MetricName": name,
                        "Dimensions": dimensions,
                        "Value": value,
                        "Unit": unit,
                        "Timestamp": now,
                    },
                )

    # ------------------------------------------------------------------------------- processes

    def process(self, function: str, version: str) -> _Running:
        """The version's running sandbox, started now when this is its first use (staging included).

        Sandboxes start on first use, as Lambda's execution environments do: a deploy starts none, and
        ``LocalCloud.warm`` starts only what it is asked to. Each version starts under a lock of its own,
        so invocations of versions that already run go on while another one starts."""
        key = (function, version)
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running
            if self._stopped:
                raise LookupError("the local cloud is stopping")
            code = self.code.get(key)
            if code is None:
                raise LookupError(f"no code recorded for {function} version {version}")
            start_lock = self._start_locks.setdefault(key, threading.Lock())
        with start_lock:
            with self._lock:
                running = self._running.get(key)
                if running is not None:  # started while this call waited for the lock
                    return running
            return self._start(function, version, code)

    def _start(self, function: str, version: str, code: FunctionCode) -> _Running:
        started = time.perf_counter()
        config = self.lambda_client.get_function_configuration(FunctionName=function, Qualifier=version)
        image = self.stage(code)
        env = dict(config.get("Environment", {}).get("Variables", {}))
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_LAMBDA_FUNCTION_VERSION": version,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
            }
        )
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        process = LambdaProcess(
            image,
            self.rie,
            log_path=logs / f"{function}-{version.replace('$', '')}.log",
            function_name=function,
            memory_mb=int(config.get("MemorySize", 128)),
            timeout_s=int(config.get("Timeout", 3)),
            region=self.region,
            env=env,
            version=version,
            ephemeral_storage_mb=int(config.get("EphemeralStorage", {}).get("Size", 512)),
        )
        process.start()
        try:
            process.wait_ready(30)
        except BaseException:
            with contextlib.suppress(Exception):
                process.stop()
            raise
        running = _Running(process)
        if not self._keep((function, version), running):  # stop() ran meanwhile: it must not outlive it
            with contextlib.suppress(Exception):
                process.stop()
            raise LookupError("the local cloud is stopping")
        running.tail = threading.Thread(
            target=self._tail, args=(running,), daemon=True, name=f"mdk-tail-{function}"
        )
        running.tail.start()
        log.info(
            "started %s version %s in %.1f s (pid %d, log %s)",
            function,
            version,
            time.perf_counter() - started,
            process.pid,
            process.log_path,
        )
        return running

    def _keep(self, key: tuple[str, str], running: _Running) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._running[key] = running
            return True

    def _tail(self, running: _Running) -> None:
        """Send the function's EMF lines to CloudWatch as they are written."""
        path = running.process.log_path
        while not path.exists() and not running.stop.is_set():
            time.sleep(0.05)
        with contextlib.suppress(OSError), path.open("r", encoding="utf-8", errors="replace") as handle:
            pending = ""
            while not running.stop.is_set():
                chunk = handle.readline()
                if not chunk:
                    time.sleep(0.05)
                    continue
                pending += chunk
                if not pending.endswith("\n"):
                    continue
                for namespace, datum in emf_data(pending.strip()):
                    self.metrics.put(namespace, datum)
                pending = ""

    def stage(self, code: FunctionCode) -> StagedImage:
        with self._lock:
            stage_lock = self._stage_locks.setdefault(code.key, threading.Lock())
        with stage_lock:
            return self._stage(code)

    def _stage(self, code: FunctionCode) -> StagedImage:
        staged = self._staged.get(code.key)
        if staged is not None:
            return staged
        target = self.work / "stage" / code.key
        shutil.rmtree(target, ignore_errors=True)
        log.info("staging %s function %s", code.kind, code.key)
        if code.kind == "image":
            recipe = code.recipe or recipe_for(code.context / code.dockerfile)
            staged = stage(recipe, code.context, target, dict(code.build_args), cache_dir=self.layer_cache)
        else:
            recipe, contexts = zip_function(code.handler, code.layers)
            staged = stage(recipe, code.context, target, {}, cache_dir=self.layer_cache, contexts=contexts)
        self._staged[code.key] = staged
        return staged

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            running = list(self._running.values())
            self._running.clear()
        for item in running:
            item.stop.set()
            with contextlib.suppress(Exception):
                item.process.stop()

    def retire_unpublished(self, functions: Collection[str] | None = None) -> None:
        """Stop the ``$LATEST`` processes of ``functions`` (every function's when None): a deploy of their
        stack may have changed their code or configuration, and Lambda serves a changed function from new
        sandboxes (the next invocation starts one). Another stack's functions are left running: its
        rollout's pre-traffic hook may be answering CodeDeploy while the next stack deploys."""
        with self._lock:
            stale = [
                key
                for key in self._running
                if key[1] == "$LATEST" and (functions is None or key[0] in functions)
            ]
            retired = [self._running.pop(key) for key in stale]
        for item in retired:
            item.stop.set()
            with contextlib.suppress(Exception):
                item.process.stop()

    def processes(self) -> dict[tuple[str, str], LambdaProcess]:
        with self._lock:
            return {key: item.process for key, item in self._running.items()}


def split_function(function: str, qualifier: str | None = None) -> tuple[str, str | None]:
    """(name, qualifier) of a function name, ``name:qualifier`` or ARN."""
    name = function.rsplit("function:", 1)[-1]
    if ":" in name:
        name, embedded = name.split(":", 1)
        qualifier = qualifier or embedded
    return name, qualifier


_DISCONNECTED = -1  # _post's status when the emulator could not be reached or hung up


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "unknown"
    if returncode < 0:
        # Worded as Lambda words it (Go's): "signal: killed", "signal: segmentation fault".
        return f"signal: {(signal.strsignal(-returncode) or str(-returncode)).lower()}"
    return f"exit status {returncode}"


def _is_error_payload(body: bytes) -> bool:
    if not body.startswith(b'{"errorMessage"') and not body.startswith(b'{"errorType"'):
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and "errorType" in payload and "errorMessage" in payload


# ------------------------------------------------------------------ at deploy: code and configuration


def current_aliases(lam: Any, prepared: Prepared) -> dict[tuple[str, str], str]:
    """(function, alias) -> the version each of the template's aliases is on now, before the deploy."""
    current = {}
    for resource in prepared.deferred.values():
        if resource["Type"] != "AWS::Lambda::Alias":
            continue
        props = resource["Properties"]
        function = props["FunctionName"]
        if isinstance(function, dict):
            function = prepared.names.get(function.get("Ref", ""), "")
        try:
            alias = lam.get_alias(FunctionName=function, Name=props["Name"])
            current[(function, props["Name"])] = alias["FunctionVersion"]
        except ClientError:
            pass
    return current


def configure_functions(lam: Any, stack: str, prepared: Prepared, region: str) -> None:
    """Apply functions' new configuration before moto's update publishes their new versions."""
    for logical, resource in prepared.template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        try:
            resolved = moto_adapter.resolve(
                stack,
                {k: props[k] for k in ("Environment", "MemorySize", "Timeout") if k in props},
                region,
            )
            lam.update_function_configuration(FunctionName=props["FunctionName"], **_int_fields(resolved))
        except Exception as exc:  # noqa: BLE001 - a new function, or a reference to a new resource
            log.debug("configuration of %s left to the stack update: %s", logical, exc)


def record_code(
    runner: FunctionRunner,
    stack: str,
    *,
    template: dict[str, Any],
    prepared: Prepared,
    assets: dict[str, dict[str, Any]],
    region: str,
) -> None:
    """Tell the runner which code each function version of the deployed stack runs (by asset hash)."""
    resources = template["Resources"]
    codes: dict[str, FunctionCode] = {}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        code = props["Code"]
        name = prepared.names[logical]
        if "ImageUri" in code:
            digest = _digest(code["ImageUri"])
            asset = assets[digest]
            codes[logical] = FunctionCode(
                key=f"image-{digest[:16]}",
                kind="image",
                context=asset["path"],
                build_args=tuple(sorted(asset["build_args"].items())),
                dockerfile=asset["dockerfile"],
            )
        elif "S3Key" in code:
            digest = _digest(code["S3Key"])
            layers = []
            for layer in props.get("Layers", []):
                layer_resource = resources[layer["Ref"]]
                layers.append(assets[_digest(layer_resource["Properties"]["Content"]["S3Key"])]["path"])
            identity = json.dumps([digest, [str(p) for p in layers], props["Handler"]])
            codes[logical] = FunctionCode(
                key=f"zip-{hashlib.sha256(identity.encode()).hexdigest()[:16]}",
                kind="zip",
                context=assets[digest]["path"],
                handler=props["Handler"],
                layers=tuple(layers),
            )
        else:
            raise DeployError(f"{stack}: function {logical}: only image and S3 zip code run locally")
        runner.code[(name, "$LATEST")] = codes[logical]
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Version":
            continue
        function = resource["Properties"]["FunctionName"]["Ref"]
        arn = moto_adapter.resolve(stack, {"Ref": logical}, region)
        version = str(arn).rsplit(":", 1)[-1]
        runner.code.setdefault((prepared.names[function], version), codes[function])


def _int_fields(props: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if k in ("MemorySize", "Timeout") else v for k, v in props.items()}


def _digest(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    match = _HASH.search(text)
    if match is None:
        raise DeployError(f"no asset hash in {text[:200]}")
    return match.group(1)


# ------------------------------------------------------------ CloudFormation types moto's skips


@completes("AWS::Lambda::Alias")
def alias(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """Create the alias, or move it; a move that a deployment group manages goes to the local CodeDeploy."""
    lam = ctx.client("lambda")
    function, name, version = props["FunctionName"], props["Name"], str(props["FunctionVersion"])
    before = ctx.previous_aliases.get((function, name))
    if before is None:
        lam.create_alias(
            FunctionName=function,
            Name=name,
            FunctionVersion=version,
            Description=props.get("Description", ""),
        )
        return
    if before == version:
        return
    group = ctx.alias_groups.get(logical)
    change = AliasChange(function, name, before, version, *(group or (None, None, None)))
    on_alias_change = ctx.deployer.on_alias_change
    if group is not None and on_alias_change is not None:
        ctx.result.alias_changes.append(change)  # the local CodeDeploy shifts it
        on_alias_change(ctx.result, change)
    else:
        lam.update_alias(
            FunctionName=function,
            Name=name,
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": {}},
        )


@completes("AWS::Lambda::Permission")
def permission(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    function, qualifier = split_function(str(props["FunctionName"]))
    kwargs = {
        "FunctionName": function,
        "StatementId": logical[:100],
        "Action": props["Action"],
        "Principal": props["Principal"],
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    if "SourceArn" in props:
        kwargs["SourceArn"] = props["SourceArn"]
    try:
        ctx.client("lambda").add_permission(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ResourceConflictException", "ResourceNotFoundException"):
            raise


@completes("AWS::Lambda::EventInvokeConfig")
def event_invoke_config(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    kwargs = {
        k: v
        for k, v in props.items()
        if k
        in (
            "FunctionName",
            "Qualifier",
            "MaximumRetryAttempts",
            "MaximumEventAgeInSeconds",
            "DestinationConfig",
        )
    }
    ctx.client("lambda").put_function_event_invoke_config(**kwargs)
