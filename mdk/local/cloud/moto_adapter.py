"""Every dependency of the local cloud on moto's internals, in one place (moto is pinned in constraints.txt).

The local cloud runs moto's server in this process (:class:`LocalAws`) and fills four gaps of moto 5.2.5,
each by wrapping one moto function:

* Lambda ``Invoke`` (the API, and whatever moto invokes itself) goes to the kit's function runner instead
  of moto's Docker path or its canned answer;
* EventBridge rules deliver to Lambda targets (moto delivers only to logs, SQS, buses and archives);
* CodeDeploy answers ``PutLifecycleEventHookExecutionStatus`` and ``StopDeployment`` (moto has neither),
  and deployments' status can be set by the local CodeDeploy (:func:`set_deployment`);
* S3 bucket policies are evaluated without their conditioned statements (moto ignores conditions, so
  the stacks' TLS-only deny would refuse every request to the plain-HTTP loopback endpoint);
* ``CreateTransformJob`` leaves the job ``InProgress`` and hands it to the local transform runner,
  which ends it with :func:`finish_transform_job` (moto marks every job Completed at once).

It also resolves CloudFormation intrinsics against a deployed stack with moto's own resolver
(:func:`resolve`), which the deployer needs for the resources moto's CloudFormation skips, and reads
what the local API Gateway authorizes with: the owner of an access key and its policies (moto's IAM and
STS, :func:`access_key_owner`) and the key moto's Cognito signs tokens with (:func:`cognito_signing_key`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import re
import socket
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import moto
from joserfc.jwk import RSAKey
from moto.apigateway.models import apigateway_backends
from moto.apigateway.utils import ApigwApiKeyIdentifier, ApigwAuthorizerIdentifier, ApigwUsagePlanIdentifier
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaVersion, LayerVersion
from moto.awslambda.utils import get_backend as lambda_backend
from moto.cloudformation.models import cloudformation_backends
from moto.cloudformation.parsing import clean_json
from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, cloudwatch_backends
from moto.codedeploy import responses as codedeploy_responses
from moto.codedeploy.models import codedeploy_backends
from moto.codedeploy.responses import CodeDeployResponse
from moto.cognitoidp.models import CognitoResourceServer, cognitoidp_backends
from moto.core.common_models import BaseModel
from moto.core.responses import ActionResult
from moto.events.models import Rule
from moto.iam.access_control import AssumedRoleAccessKey, IAMPolicy, IAMUserAccessKey
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import FakeBucket
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sts.models import sts_backends
from moto.utilities.id_generator import moto_id_manager
from moto.utilities.utils import load_resource
from werkzeug.serving import BaseWSGIServer, make_server

from mdk.local.cloud.services.gateway_access import Identity
from mdk.local.cloud.services.lambda_quotas import InvokeRefused, check_request

log = logging.getLogger("mdk.local")
MOTO_VERSION = "5.2.5"
MOTO_S3_SEQUENCER = "617f08299329d189"  # what moto 5.2.5 puts in every S3 EventBridge notification
ACCOUNT = "123456789012"  # moto's default account: ARNs in the local cloud carry it

#: (function name or ARN, qualifier or None, payload, asynchronous) -> (payload, function errored)
Invoker = Callable[[str, str | None, bytes, bool], tuple[bytes, bool]]
#: (function ARN, event) -> None; called on a thread of its own
EventTarget = Callable[[str, dict[str, Any]], None]
#: (transform job description as DescribeTransformJob returns it) -> None; called on a thread of its own
TransformRunner = Callable[[dict[str, Any]], None]
#: (deployment id, execution id, status) -> None
HookReporter = Callable[[str, str, str], None]
#: (deployment id, auto rollback) -> None
DeploymentStopper = Callable[[str, bool], None]
#: (endpoint name, body, request headers) -> (status, response headers, body): InvokeEndpoint
EndpointInvoker = Callable[[str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]


class _Hooks:
    """What the local cloud plugs in. With ``active`` false (no local cloud running in this process) every
    patch behaves as moto does, so other users of moto in the process see moto unchanged."""

    active: bool = False
    invoker: Invoker | None = None
    event_target: EventTarget | None = None
    transform: TransformRunner | None = None
    hook_status: HookReporter | None = None
    stop_deployment: DeploymentStopper | None = None
    endpoint_invoker: EndpointInvoker | None = None


HOOKS = _Hooks()
_lock = threading.Lock()


def _background(target: Callable[..., Any], *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True, name="mdk-local-async").start()


# ----------------------------------------------------------------------------------------- patches


_ORIGINAL: dict[str, Any] = {}


def _invoke(  # noqa: PLR0917 - moto's LambdaBackend.invoke signature
    self: LambdaBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> bytes | None:
    """Lambda Invoke: the kit's runner (RequestResponse answers; Event is answered 202 at once)."""
    if not HOOKS.active or HOOKS.invoker is None:
        return _ORIGINAL["invoke"](self, function_name, qualifier, body, headers, response_headers)  # type: ignore[no-any-return]
    self.get_function(function_name, qualifier)  # raises moto's ResourceNotFound
    payload = body.encode() if isinstance(body, str) else (body or b"{}")
    asynchronous = (headers or {}).get("x-amz-invocation-type") == "Event"
    try:
        check_request(payload, asynchronous=asynchronous)  # refused before anything runs, as on AWS
        if asynchronous:
            _background(HOOKS.invoker, function_name, qualifier, payload, True)
            response_headers["status"] = 202
            return b""
        result, errored = HOOKS.invoker(function_name, qualifier, payload, False)
    except InvokeRefused as refused:
        raise _InvokeError(refused) from None
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["Content-Length"] = str(len(result))
    return result


class _InvokeError(LambdaClientError):
    """An Invoke the local Lambda refused (e.g. 413 RequestEntityTooLargeException), as AWS answers it."""

    def __init__(self, refused: InvokeRefused) -> None:
        super().__init__(refused.error_type, refused.message)
        self.code = refused.status


def _send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
    """EventBridge delivery, Lambda targets included (asynchronously, as EventBridge invokes them)."""
    if not HOOKS.active:
        _ORIGINAL["send_to_targets"](self, original_event, transform_input)
        return
    try:
        targets = self.targets
        functions = [t for t in targets if ":lambda:" in t["Arn"]]
        self.targets = [t for t in targets if ":lambda:" not in t["Arn"]]
        try:  # moto raises NotImplementedError on a Lambda target, before delivering to the rest
            _ORIGINAL["send_to_targets"](self, original_event, transform_input)
        finally:
            self.targets = targets
        _sequence(original_event)
        if HOOKS.event_target is None or not self.event_pattern.matches_event(original_event):
            return
        for target in functions:
            event = json.loads(target["Input"]) if "Input" in target else dict(original_event)
            _background(HOOKS.event_target, target["Arn"], event)
    except Exception:  # callers (S3 notifications) swallow errors: log them here
        log.exception("EventBridge rule %s could not deliver an event", self.name)
        raise


def _create_transform_job(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
    """CreateTransformJob: the job stays InProgress until the local runner ends it."""
    job = _ORIGINAL["create_transform_job"](self, *args, **kwargs)
    if not HOOKS.active:
        return job
    name = kwargs.get("transform_job_name") or args[0]
    record = self.transform_jobs[name]
    record.transform_job_status = "InProgress"
    setattr(record, "transform_end_time", None)  # noqa: B010 - moto types it as always set
    if HOOKS.transform is not None:
        _background(HOOKS.transform, record.response_object)
    return job


def _put_lifecycle_event_hook_execution_status(self: CodeDeployResponse) -> str:
    if not HOOKS.active:
        raise NotImplementedError("PutLifecycleEventHookExecutionStatus")  # as moto without the local cloud
    params = json.loads(self.body)
    if HOOKS.hook_status is not None:
        HOOKS.hook_status(params["deploymentId"], params["lifecycleEventHookExecutionId"], params["status"])
    return json.dumps({"lifecycleEventHookExecutionId": params["lifecycleEventHookExecutionId"]})


def _stop_deployment(self: CodeDeployResponse) -> str:
    if not HOOKS.active:
        raise NotImplementedError("StopDeployment")  # as moto without the local cloud
    params = json.loads(self.body)
    deployment_id = params["deploymentId"]
    self.codedeploy_backend.get_deployment(deployment_id)  # raises DeploymentDoesNotExist
    if HOOKS.stop_deployment is not None:
        HOOKS.stop_deployment(deployment_id, bool(params.get("autoRollbackEnabled")))
    return json.dumps({"status": "Succeeded", "statusMessage": "stopped by request"})


def _create_version(
    cls: type[LambdaVersion], /, name: str, json_: dict[str, Any], account_id: str, region: str, **kw: Any
) -> LambdaVersion:
    """A Version resource: always published, and with AWS's Ref (ARN) and attributes.

    moto's stack update adds resources before it modifies others, so a new version would be published
    before its function's new code and moto would hand back the old version; the deployer applies the
    configuration first, and a new Version resource always publishes. moto's version also resolves Ref
    to the Python object and has no attributes.
    """
    fn = lambda_backend(account_id, region).get_function(json_["Properties"]["FunctionName"])
    fn.code_or_config_updated = fn.code_or_config_updated or HOOKS.active
    version = _ORIGINAL["create_version"](cls, name, json_, account_id, region, **kw)
    version.arn = f"{fn.function_arn}:{version.version}"
    if HOOKS.active and "Description" in json_["Properties"]:  # moto copies the function's description
        published = lambda_backend(account_id, region).get_function(fn.function_name, str(version.version))
        published.description = json_["Properties"]["Description"]
    return version  # type: ignore[no-any-return]


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    """moto ignores a statement's Condition, so the stacks' TLS-only statement (Deny s3:* when
    aws:SecureTransport is false) would deny every request; the local endpoint is plain HTTP on loopback:
    evaluate the statements without conditions only."""
    if self.policy is None or not HOOKS.active:
        return _ORIGINAL["get_permission"](self, action, resource)
    document = json.loads(self.policy)
    kept = [s for s in document.get("Statement", []) if "Condition" not in s]
    saved, self.policy = self.policy, json.dumps({**document, "Statement": kept}).encode()
    try:
        return _ORIGINAL["get_permission"](self, action, resource)
    finally:
        self.policy = saved


def _deployment_group_info(group: Any) -> dict[str, Any]:
    """GetDeploymentGroup with the alarm configuration it was created with (moto answers {})."""
    info: dict[str, Any] = _ORIGINAL["deployment_group_info"](group)
    if HOOKS.active and group.alarm_configuration:
        info["alarmConfiguration"] = group.alarm_configuration
    return info


#: Structures moto answers as ``{}`` when they were never configured; AWS leaves such keys out, and strict
#: clients (the SageMaker Python SDK v3's pydantic shapes: ``Endpoint.get``, ``Transformer``) refuse ``{}``.
_UNSET_WHEN_EMPTY = ("DataCaptureConfig", "VpcConfig")


def _describe_as_aws(operation: str) -> Callable[[SageMakerResponse], ActionResult]:
    def describe(self: SageMakerResponse) -> ActionResult:
        result: ActionResult = _ORIGINAL[operation](self)
        if not HOOKS.active or not isinstance(result.result, dict):
            return result
        return ActionResult(
            {k: v for k, v in result.result.items() if not (k in _UNSET_WHEN_EMPTY and not v)}
        )

    describe.__name__ = operation
    return describe


_SAGEMAKER_DESCRIBES = (
    "describe_model",
    "describe_endpoint_config",
    "describe_endpoint",
    "describe_transform_job",
)


def _model_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """moto appends every model object it ever creates to ``<class>.instances_tracked`` (for its web
    dashboard and its reset), and only a reset empties those lists: every CloudWatch data point of a
    long-running local cloud (several per request) would stay in memory for good, pruned or not. Data
    points hold no resource a reset must release (S3 keys do: those stay tracked)."""
    if HOOKS.active and issubclass(cls, (MetricDatum, MetricAggregatedDatum)):
        return object.__new__(cls)
    return _ORIGINAL["model_new"](cls, *args, **kwargs)


def _install() -> None:
    with _lock:
        if _ORIGINAL:
            return
        if moto.__version__ != MOTO_VERSION:
            raise RuntimeError(
                f"the local cloud was written against moto {MOTO_VERSION}, found {moto.__version__}: "
                "install the pinned version (make setup) or check mdk/local/cloud/moto_adapter.py against it"
            )
        _ORIGINAL.update(
            invoke=LambdaBackend.invoke,
            send_to_targets=Rule.send_to_targets,
            create_transform_job=SageMakerModelBackend.create_transform_job,
            create_version=LambdaVersion.create_from_cloudformation_json.__func__,  # type: ignore[attr-defined]
            get_permission=FakeBucket.get_permission,
            deployment_group_info=codedeploy_responses._deployment_group_info,
            model_new=BaseModel.__new__,
            **{name: getattr(SageMakerResponse, name) for name in _SAGEMAKER_DESCRIBES},
        )
        for name in _SAGEMAKER_DESCRIBES:
            setattr(SageMakerResponse, name, _describe_as_aws(name))
        BaseModel.__new__ = staticmethod(_model_new)  # type: ignore[method-assign]
        codedeploy_responses._deployment_group_info = _deployment_group_info  # type: ignore[assignment]
        LambdaBackend.invoke = _invoke  # type: ignore[method-assign]
        Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign]
        SageMakerModelBackend.create_transform_job = _create_transform_job  # type: ignore[method-assign]
        CodeDeployResponse.put_lifecycle_event_hook_execution_status = (  # type: ignore[attr-defined]
            _put_lifecycle_event_hook_execution_status
        )
        CodeDeployResponse.stop_deployment = _stop_deployment  # type: ignore[attr-defined]
        LambdaVersion.create_from_cloudformation_json = classmethod(_create_version)  # type: ignore[method-assign,assignment]
        LambdaVersion.physical_resource_id = property(lambda self: self.arn)  # type: ignore[attr-defined]
        LambdaVersion.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Version", "FunctionArn"))  # type: ignore[method-assign,assignment]
        setattr(  # noqa: B010 - moto's class has no such attribute to assign to
            LambdaVersion,
            "get_cfn_attribute",
            lambda self, attr: self.version if attr == "Version" else self.arn.rsplit(":", 1)[0],
        )
        # A layer's Ref is its version ARN; moto resolves it to the Python object, which breaks updates.
        LayerVersion.physical_resource_id = property(lambda self: self.arn)  # type: ignore[attr-defined]
        # moto names endpoints at random: AWS (and the kit's registry) use the template's EndpointName.
        FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")  # type: ignore[method-assign]
        FakeBucket.get_permission = _get_permission  # type: ignore[method-assign]


_sequenced: deque[dict[str, Any]] = deque(maxlen=1000)
_sequencer = itertools.count(int(time.time() * 1000) << 16)


def _sequence(event: dict[str, Any]) -> None:
    """moto gives every S3 event the same ``sequencer``; S3's grow per key. Give each event its own."""
    detail = event.get("detail") if event.get("source") == "aws.s3" else None
    if not isinstance(detail, dict) or not isinstance(detail.get("object"), dict):
        return
    if detail["object"].get("sequencer") != MOTO_S3_SEQUENCER:
        return  # not moto's S3 notification (e.g. PutEvents by a client): leave it as sent
    if any(seen is event for seen in _sequenced):
        return  # the same event seen by another rule keeps its sequencer
    detail["object"]["sequencer"] = f"{next(_sequencer):020X}"
    _sequenced.append(event)


# ------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Faults:
    """Errors the local AWS answers instead of moto: fault injection for tests and ``make reliability``.

    ``throttle("SageMaker.CreateTransformJob", times=3)`` makes the next three such calls fail as AWS
    throttles (HTTP 400 ``ThrottlingException``), whoever makes them: the functions' SDKs must retry with
    backoff. Operations are named as the JSON protocols' ``X-Amz-Target`` (SageMaker, DynamoDB, EventBridge,
    SSM) or the query protocols' ``Action`` (``Publish`` for SNS, ``PutMetricData``). Every matched call
    is counted in :attr:`calls`, refused or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttle: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    def throttle(self, operation: str, times: int) -> None:
        with self._lock:
            self._throttle[operation] = times
            self.calls[operation] = self.refused[operation] = 0

    def clear(self) -> None:
        with self._lock:
            self._throttle.clear()

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if self._throttle:
                operation = _operation(environ)
                with self._lock:
                    left = self._throttle.get(operation)
                    if left is not None:
                        self.calls[operation] += 1
                        if left > 0:
                            self._throttle[operation] = left - 1
                            self.refused[operation] += 1
                            return _throttled(environ, start_response)
            return app(environ, start_response)

        return middleware


def _operation(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target)
    if environ.get("REQUEST_METHOD") == "POST" and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        # Peek at the form's Action and put the body back for moto.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        for pair in body.split(b"&"):
            if pair.startswith(b"Action="):
                return pair[len(b"Action=") :].decode()
    return ""


_INVOKE_ENDPOINT = re.compile(r"^/endpoints/(?P<endpoint>[^/]+)/invocations$")


def _sagemaker_runtime(app: Callable[..., Any]) -> Callable[..., Any]:
    """``sagemaker-runtime:InvokeEndpoint`` (``POST /endpoints/<name>/invocations``) to the local endpoints
    (moto answers a canned body for every request, and an HTML 500 for a body that is not UTF-8): the raw
    body and headers go to :data:`HOOKS`.endpoint_invoker, its answer back as is."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = _INVOKE_ENDPOINT.match(environ.get("PATH_INFO", ""))
        invoker = HOOKS.endpoint_invoker
        if match is None or environ.get("REQUEST_METHOD") != "POST" or not HOOKS.active or invoker is None:
            return app(environ, start_response)
        length = environ.get("CONTENT_LENGTH") or "0"
        body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        try:
            status, out_headers, payload = invoker(unquote(match.group("endpoint")), body, headers)
        except Exception as exc:  # the service's own failure: InternalFailure, never a traceback page
            log.exception("InvokeEndpoint failed")
            status, out_headers = (
                500,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalFailure"},
            )
            payload = json.dumps({"Message": f"An internal failure occurred: {type(exc).__name__}"}).encode()
        out_headers = {
            **out_headers,
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Content-Length": str(len(payload)),
        }
        start_response(f"{status} {HTTPStatus(status).phrase}", list(out_headers.items()))
        return [payload]

    return middleware


def _throttled(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    request_id = str(uuid.uuid4())
    if environ.get("HTTP_X_AMZ_TARGET"):
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", "ThrottlingException"),
            ("x-amzn-RequestId", request_id),
        ]
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded"
            f"</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    start_response("400 Bad Request", [*headers, ("Content-Length", str(len(body)))])
    return [body]


class LocalAws:
    """moto's server on ``127.0.0.1:<port>``, in this process (so the patches above apply to it), behind
    :class:`Faults`. :meth:`restart` takes the endpoint down and up again on the same port, the state
    kept (what a client sees of an AWS endpoint's outage; AWS keeps its state through one)."""

    def __init__(self, port: int = 0, region: str = "us-east-1") -> None:
        self.port = port or free_port()
        self.region = region
        self.faults = Faults()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start empty: moto's state is per process, and whatever used moto here before is not ours."""
        _install()
        self._serve()
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30):
            pass

    def _serve(self) -> None:
        app = self.faults.wrap(_sagemaker_runtime(DomainDispatcherApplication(create_backend_app)))
        server = make_server("127.0.0.1", self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="mdk-local-aws")
        self._thread.start()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop answering (connections refused) for ``down_s`` seconds, then serve again, state kept."""
        self.stop()
        time.sleep(down_s)
        self._serve()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


# ---------------------------------------------------------------------------------- state access


def resolve(stack_name: str, fragment: Any, region: str) -> Any:
    """``fragment`` with Ref, Fn::GetAtt, Fn::Join, Fn::Sub... resolved against the deployed stack."""
    backend = cloudformation_backends[ACCOUNT][region]
    stack = next(s for s in backend.stacks.values() if s.name == stack_name and s.status != "DELETE_COMPLETE")
    return _plain(clean_json(fragment, stack.resource_map))


def _plain(value: Any) -> Any:
    """moto resolves Ref to its model object for some types: the id AWS would return instead."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, BaseModel):
        for attribute in ("physical_resource_id", "id", "name", "arn"):
            if (found := getattr(value, attribute, None)) is not None:
                return found
        raise ValueError(f"cannot resolve a {type(value).__name__} to an identifier")
    return value


def event_invoke_config(function: str, region: str) -> dict[str, Any]:
    """A function's asynchronous-invocation settings as Lambda holds them, read in process: Lambda's
    service needs no API call to know them, so the local cloud needs none while its endpoint is down.
    The latest put wins (moto's own Get answers the first one)."""
    try:
        fn = lambda_backend(ACCOUNT, region).get_function(function)
    except Exception:  # noqa: BLE001 - no such function: Lambda's defaults
        return {}
    configs = fn.event_invoke_config
    return dict(configs[-1].response()) if configs else {}


def set_deployment(deployment_id: str, region: str, *, status: str, message: str | None = None) -> None:
    """Move a CodeDeploy deployment of the local cloud to ``status`` (moto leaves them all "Created")."""
    deployment = codedeploy_backends[ACCOUNT][region].get_deployment(deployment_id)
    deployment.status = status
    now = datetime.now(UTC)
    if status == "InProgress":
        deployment.start_time = now
    if status in ("Succeeded", "Failed", "Stopped"):
        deployment.complete_time = now
    if message:
        deployment.deployment_status_messages.append(message)


def finish_transform_job(name: str, region: str, *, status: str, failure_reason: str = "") -> None:
    job = sagemaker_backends[ACCOUNT][region].transform_jobs[name]
    now = datetime.now(UTC)
    job.transform_job_status = status
    job.failure_reason = failure_reason
    job.transform_end_time = now
    job.last_modified_time = now


def metric_points(
    region: str, namespace: str, name: str, dimensions: dict[str, str], since: datetime
) -> Iterator[float | tuple[float, float, float, float]]:
    """The data points of one metric (exact dimension set) stored since ``since``: a raw value, or a
    statistic set as (sum, sample count, minimum, maximum)."""
    backend = cloudwatch_backends[ACCOUNT][region]
    for datum in backend.metric_data:  # no copy: puts only append, prune_metrics deletes in place
        if datum.namespace != namespace or datum.name != name:
            continue
        stamp = datum.timestamp if datum.timestamp.tzinfo else datum.timestamp.replace(tzinfo=UTC)
        if stamp < since or {d.name: d.value for d in datum.dimensions} != dimensions:
            continue
        if isinstance(datum, MetricDatum):
            yield float(datum.value)
        elif isinstance(datum, MetricAggregatedDatum):
            yield (datum.sum, datum.sample_count, datum.min, datum.max)


def prune_metrics(region: str, older_than: datetime) -> int:
    """Drop data points stamped before ``older_than`` from the local CloudWatch; returns how many.

    moto keeps every data point forever, and the local cloud stores several per request: without this
    its memory grows with the traffic. Data points arrive about in time order: the old ones are a prefix
    of the list, deleted in place (a put appending meanwhile is never lost, no list is copied).
    """
    data = cloudwatch_backends[ACCOUNT][region].metric_data
    stale = 0
    for datum in data:
        stamp = datum.timestamp if datum.timestamp.tzinfo else datum.timestamp.replace(tzinfo=UTC)
        if stamp >= older_than:
            break
        stale += 1
    del data[:stale]
    return stale


def set_method_request(
    api_id: str,
    resource_id: str,
    verb: str,
    region: str,
    *,
    validator_id: str | None,
    models: dict[str, str] | None,
    parameters: dict[str, bool] | None,
    authorizer_id: str | None = None,
    scopes: list[str] | None = None,
) -> None:
    """A method's request validator, models and parameters, its authorizer and OAuth scopes, which moto's
    CloudFormation drops (its ``AWS::ApiGateway::Method`` keeps the auth type, the API key flag and the
    integration only) and moto has no UpdateMethod for."""
    method = apigateway_backends[ACCOUNT][region].get_method(api_id, resource_id, verb)
    method.request_validator_id = validator_id
    method.request_models = models
    method.request_parameters = parameters
    if authorizer_id is not None:
        method.authorizer_id = authorizer_id
    if scopes is not None:
        method.authorization_scopes = scopes


_APIGATEWAY_IDS = {
    "api_key": ApigwApiKeyIdentifier,
    "usage_plan": ApigwUsagePlanIdentifier,
    "authorizer": ApigwAuthorizerIdentifier,
}


@contextlib.contextmanager
def apigateway_id(resource: str, name: str, region: str, custom_id: str) -> Iterator[None]:
    """The API Gateway ``resource`` (api_key, usage_plan, authorizer) created meanwhile under ``name`` (an
    API key's value, a plan's or an authorizer's name) gets ``custom_id``, moto's custom id mechanism: the
    id a template's Ref of it was given before it existed (:mod:`mdk.local.cloud.template`)."""
    identifier = _APIGATEWAY_IDS[resource](ACCOUNT, region, name)
    moto_id_manager.set_custom_id(identifier, custom_id)
    try:
        yield
    finally:
        moto_id_manager.unset_custom_id(identifier)


def set_user_pool_client_id(pool_id: str, client_id: str, new_id: str, region: str) -> None:
    """Give an app client moto just created the id its template's Ref was given (moto's Cognito draws
    client ids at random, with no custom id mechanism)."""
    pool = cognitoidp_backends[ACCOUNT][region].describe_user_pool(pool_id)
    client = pool.clients.pop(client_id)
    client.id = new_id
    pool.clients[new_id] = client


def access_key_owner(access_key_id: str) -> Identity | None:
    """The IAM user or assumed-role session an access key belongs to, with the identity policies its
    requests are evaluated against, found and collected by moto's own access control (the user's inline
    and attached policies and its groups', or the role's); None for a key moto never issued."""
    iam = iam_backends[ACCOUNT]["aws"]
    for user in iam.list_users("/", None, None):
        for key in user.access_keys:
            if key.access_key_id == access_key_id:
                found = IAMUserAccessKey(ACCOUNT, "aws", access_key_id, {})
                return Identity(
                    kind="user",
                    arn=user.arn,
                    account=ACCOUNT,
                    access_key=access_key_id,
                    secret_key=key.secret_access_key,
                    user_id=user.id,
                    policies=tuple(_policy_json(p) for p in found.collect_policies()),
                    active=key.status == "Active",
                    principal_arn=user.arn,
                    username=user.name,
                )
    for role in sts_backends[ACCOUNT]["aws"].assumed_roles:
        if role.access_key_id == access_key_id:
            session = AssumedRoleAccessKey(
                ACCOUNT, "aws", access_key_id, {"X-Amz-Security-Token": role.session_token}
            )
            expires = role.expiration if role.expiration.tzinfo else role.expiration.replace(tzinfo=UTC)
            return Identity(
                kind="assumed-role",
                arn=role.arn,
                account=ACCOUNT,
                access_key=access_key_id,
                secret_key=role.secret_access_key,
                user_id=role.user_id,
                session_token=role.session_token,
                policies=tuple(_policy_json(p) for p in session.collect_policies()),
                session_policy=json.loads(role.policy) if role.policy else None,
                expires_at=expires,
                principal_arn=role.role_arn,
            )
    return None


def _policy_json(policy: Any) -> dict[str, Any]:
    document: dict[str, Any] = IAMPolicy(policy)._policy_json
    return document


def cognito_signing_key() -> RSAKey:
    """The private key moto's Cognito signs every user pool's tokens with (its JWKS serves the public
    half, ``kid`` "dummy"), so tokens the local token endpoint issues verify as moto's own do."""
    return RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))


def ensure_user_pool(pool_id: str, region: str) -> None:
    """A user pool with id ``pool_id`` in the local Cognito: the stacks import the user's pool by ARN
    (``api.cognito_user_pool_arn``), which the local AWS stands in for, empty, under the same id."""
    backend = cognitoidp_backends[ACCOUNT][region]
    if pool_id in backend.user_pools:
        return
    pool = backend.create_user_pool(pool_id, {})
    del backend.user_pools[pool.id]
    pool.id = pool_id
    pool.arn = f"arn:aws:cognito-idp:{region}:{ACCOUNT}:userpool/{pool_id}"
    backend.user_pools[pool_id] = pool


def put_resource_server(
    pool_id: str, identifier: str, name: str, scopes: list[dict[str, str]], region: str
) -> None:
    """Create or replace a resource server (moto's Cognito has no UpdateResourceServer)."""
    pool = cognitoidp_backends[ACCOUNT][region].describe_user_pool(pool_id)
    pool.resource_servers[identifier] = CognitoResourceServer(pool_id, identifier, name, scopes)
