"""The local API Gateway: the deployed REST API served on a loopback port the way API Gateway serves it,
and the API Gateway types moto's CloudFormation skips or drops settings of.

The routes, their auth and their integrations are read from the local AWS (the API the stack created),
so what is served is what was deployed:

* ``http://127.0.0.1:<port>/<stage>/<path>``: resources match literally or by ``{param}`` (``{proxy+}``
  greedily), a literal part before a parameter; no match is API Gateway's 403 "Missing Authentication
  Token"; path parameters reach a proxy function as the client sent them (percent-encoded), as on AWS;
* a method whose request validator checks bodies refuses a body off its model for the request's
  Content-Type (JSON Schema draft 4, ``application/json`` without a Content-Type) with the API's
  ``BAD_REQUEST_BODY`` gateway response before any integration runs
  (:mod:`mdk.local.cloud.request_validation`);
* access per method, as API Gateway decides it (:mod:`mdk.local.cloud.services.gateway_access`), each
  refusal in the API's gateway response of its type: ``AWS_IAM`` checks the SigV4 signature with the
  secret of the key that signed (the local credentials are the account's root user; an IAM user's or an
  assumed role's key is found in the local IAM and STS) and evaluates the caller's identity policies for
  ``execute-api:Invoke`` on the method ARN (403 ACCESS_DENIED); ``apiKeyRequired`` takes an enabled key in
  a usage plan listing the API stage (403 INVALID_API_KEY) and enforces the plan's throttles and quota
  per key (429 THROTTLED, QUOTA_EXCEEDED); ``COGNITO_USER_POOLS`` verifies the JWT against its pool's
  keys, issuer and expiry, and takes an access token with one of the method's scopes where it has any,
  an ID token where it has none (401 UNAUTHORIZED);
* each method has its own token bucket from the stage's method settings (``<path>/<METHOD>``, ``*/*``):
  one model's burst never throttles another's (429 THROTTLED);
* ``POST /oauth2/token`` is the Cognito token endpoint for the client credentials grant (an app client of
  the local Cognito, its secret in HTTP Basic), issuing access tokens with the scopes granted;
* ``AWS_PROXY`` (Lambda) integrations get API Gateway's REST proxy event (binary media types base64) and
  invoke the integration's function through its alias, so the alias's weights apply per request; a
  function error is a 502, a timeout a 504, both in the stack's gateway response shape;
* ``AWS`` integrations to ``runtime.sagemaker`` invoke the endpoint locally (variant weights apply) and
  pass the container's status and body through, as the stack's response templates do.

At deploy time: the stage (with its method settings), gateway responses, request validators and models,
authorizers, API keys, usage plans and their keys are created through the API (each under the id its
template's Ref was given), and a method's request validator, models, parameters, authorizer and OAuth
scopes and the API's binary media types (which moto's CloudFormation drops) are set on what moto
created. The Cognito types the access stack holds are :mod:`mdk.local.cloud.services.cognito`'s.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fnmatch
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.exceptions import ClientError

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import Completion, amends, completes
from mdk.local.cloud.request_validation import body_problems, match_path, model_for
from mdk.local.cloud.services import cognito as _cognito_types  # noqa: F401 - registers the Cognito types
from mdk.local.cloud.services import gateway_access, lambda_quotas
from mdk.local.cloud.services.gateway_access import (
    AccessRefused,
    CognitoTokens,
    Identity,
    MethodThrottles,
    UsagePlanLimits,
)
from mdk.local.cloud.services.lambda_ import FunctionRunner, split_function
from mdk.local.cloud.services.sagemaker import Endpoints

log = logging.getLogger("mdk.local")
#: The runner's refusal of an invocation Lambda would refuse (over 6 MB); the gateway measures the event
#: itself while the runner does not have it.
_INVOKE_REFUSED: type[Exception] | None = getattr(lambda_quotas, "InvokeRefused", None)
_LAMBDA_URI = re.compile(r":lambda:path/2015-03-31/functions/(?P<function>.+)/invocations$")
_SAGEMAKER_URI = re.compile(r":runtime\.sagemaker:path/endpoints/(?P<endpoint>[^/]+)/invocations$")
MAX_BODY = 10 * 1024 * 1024  # API Gateway REST payload limit
# "Quotas for configuring and running a REST API in API Gateway"
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html):
# the URL of a regional API is at most 10,240 characters, and the request line and the header values together
# at most 10,240 bytes. Python's http.server would answer its own HTML pages (414, 431) at 64 KiB instead.
MAX_URL = 10_240
MAX_HEADERS = 10_240
#: Lambda's synchronous invocation payload ("Lambda quotas", https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html):
#: Invoke answers 413 RequestEntityTooLargeException for a larger event, before any function code runs.
MAX_EVENT = 6_291_456


@dataclass
class Method:
    resource_path: str
    http_method: str
    authorization: str
    api_key_required: bool
    integration: dict[str, Any]
    authorizer_issuers: tuple[str, ...] = ()
    #: the OAuth scopes a COGNITO_USER_POOLS method requires (one of them), empty: it takes ID tokens
    authorization_scopes: tuple[str, ...] = ()
    #: The models a body is validated against, by content type (empty: the method validates no body).
    body_models: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Api:
    id: str
    stage: str
    binary_types: tuple[str, ...]
    methods: list[Method] = field(default_factory=list)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # gateway responses by type
    #: the stage's method throttling: a token bucket per method (its setting, or the stage's ``*/*``)
    throttles: MethodThrottles = field(default_factory=lambda: MethodThrottles({}))


class GatewayError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class Gateway:
    def __init__(
        self,
        *,
        apigateway: Any,
        runner: FunctionRunner,
        endpoints: Endpoints,
        region: str,
        credentials: tuple[str, str],
        port: int = 8080,
    ) -> None:
        self.apigateway = apigateway
        self.runner = runner
        self.endpoints = endpoints
        self.region = region
        self.credentials = credentials
        #: every deployed REST API (one per model), in the order loaded; their resource paths are disjoint
        self.apis: list[Api] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        self.requests = 0
        #: usage plans' throttles and quotas per API key, kept across requests and deploys
        self.usage = UsagePlanLimits()
        endpoint = str(apigateway.meta.endpoint_url)
        self.tokens = CognitoTokens(gateway_access.http_jwks(endpoint))
        self._cognito = boto3.client(
            "cognito-idp",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
        )

    @property
    def api(self) -> Api | None:
        """The first API (a deployment of one model has one)."""
        return self.apis[0] if self.apis else None

    def api_of(self, model: str) -> Api | None:
        """The API whose routes are ``/models/<model>/...``."""
        prefix = f"/models/{model}/"
        return next(
            (a for a in self.apis if any(m.resource_path.startswith(prefix) for m in a.methods)), None
        )

    @property
    def url(self) -> str:
        stage = self.apis[0].stage if self.apis else "dev"
        return f"http://127.0.0.1:{self.port}/{stage}/"

    def load_all(self, apis: list[tuple[str, str]]) -> None:
        """Read every deployed API (``(api id, stage)``, one per model stack); one port serves them all,
        as their paths (``/models/<name>/...``) never overlap. On AWS each has its own host."""
        self.apis = [self._read(api_id, stage) for api_id, stage in apis]

    def load(self, api_id: str, stage: str) -> None:
        """Read one API's routes, auth and integrations from the local AWS (after each deploy)."""
        self.apis = [self._read(api_id, stage)]

    def _read(self, api_id: str, stage: str) -> Api:
        described = self.apigateway.get_rest_api(restApiId=api_id)
        api = Api(api_id, stage, tuple(described.get("binaryMediaTypes", [])))
        authorizers = {a["id"]: a for a in self.apigateway.get_authorizers(restApiId=api_id).get("items", [])}
        validators = {
            v["id"]: v for v in self.apigateway.get_request_validators(restApiId=api_id).get("items", [])
        }
        schemas = {
            m["name"]: json.loads(m["schema"])
            for m in self.apigateway.get_models(restApiId=api_id, limit=500).get("items", [])
            if m.get("schema")
        }
        for resource in self.apigateway.get_resources(restApiId=api_id, embed=["methods"], limit=500)[
            "items"
        ]:
            for verb, method in (resource.get("resourceMethods") or {}).items():
                if not method.get("methodIntegration"):
                    method = self.apigateway.get_method(  # noqa: PLW2901 - the same method, in full
                        restApiId=api_id, resourceId=resource["id"], httpMethod=verb
                    )
                issuers: tuple[str, ...] = ()
                authorizer = authorizers.get(method.get("authorizerId", ""))
                if authorizer:
                    issuers = tuple(
                        gateway_access.issuer(*_pool(arn)) for arn in authorizer.get("providerARNs", [])
                    )
                api.methods.append(
                    Method(
                        resource_path=resource["path"],
                        http_method=verb,
                        authorization=method.get("authorizationType", "NONE"),
                        api_key_required=bool(method.get("apiKeyRequired")),
                        integration=method.get("methodIntegration", {}),
                        authorizer_issuers=issuers,
                        authorization_scopes=tuple(method.get("authorizationScopes") or ()),
                        body_models=_body_models(method, validators, schemas),
                    )
                )
        for response in self.apigateway.get_gateway_responses(restApiId=api_id).get("items", []):
            api.responses[response["responseType"]] = response
        settings = self.apigateway.get_stage(restApiId=api_id, stageName=stage).get("methodSettings", {})
        api.throttles = MethodThrottles(settings)
        return api

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="mdk-gateway")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---------------------------------------------------------------------------------- requests

    def handle(
        self, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request_id = str(uuid.uuid4())
        self.requests += 1
        api: Api | None = None  # the API the request reached: its gateway responses answer refusals
        try:
            if not self.apis:
                raise GatewayError(503, "DEFAULT_5XX", "the API is not deployed yet")
            parts = urlsplit(target)
            if parts.path == "/oauth2/token" and verb == "POST":
                return self._token(headers, body)
            stage, _, rest = parts.path.lstrip("/").partition("/")
            path = "/" + rest
            api, method, params = self._route(stage, verb, path)
            try:
                api.throttles.admit(method.resource_path, method.http_method)
                if len(body) > MAX_BODY:
                    raise GatewayError(413, "REQUEST_TOO_LARGE", "Request Too Long")
                identity, authorizer = self._authorize(
                    api, method, verb=verb, target=target, path=path, headers=headers, body=body
                )
            except AccessRefused as refused:
                raise GatewayError(refused.status, refused.kind, refused.message) from None
            self._validate(method, headers, body)
            integration = method.integration
            uri = str(integration.get("uri", ""))
            if match := _LAMBDA_URI.search(uri):
                event = self._event(
                    api,
                    method,
                    verb=verb,
                    path=path,
                    query=parts.query,
                    params=params,
                    headers=headers,
                    body=body,
                    request_id=request_id,
                    identity=identity,
                    authorizer=authorizer,
                )
                return self._lambda(match.group("function"), event, integration, api.binary_types)
            if match := _SAGEMAKER_URI.search(uri):
                return self._sagemaker(match.group("endpoint"), headers, body)
            raise GatewayError(
                500, "DEFAULT_5XX", f"integration {integration.get('type')} {uri} is not served locally"
            )
        except GatewayError as exc:
            return self._gateway_response(exc, request_id, api)

    def _route(self, stage: str, verb: str, path: str) -> tuple[Api, Method, dict[str, str]]:
        """The API (of those deployed at ``stage``) with a method for the path, and that method."""
        for api in self.apis:
            if api.stage != stage:
                continue
            try:
                return (api, *self._match(api, verb, path))
            except GatewayError:
                continue
        raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")

    def _match(self, api: Api, verb: str, path: str) -> tuple[Method, dict[str, str]]:
        """The method API Gateway picks: of the resources matching the path, the most literal one (a
        literal path part before a ``{param}``), then the verb's own method before ``ANY``. A path no
        resource matches, or a resource without the verb, is a 403 "Missing Authentication Token"."""
        candidates = []
        for method in api.methods:
            matched = match_path(method.resource_path, path)
            if matched is not None and method.http_method in (verb, "ANY"):
                candidates.append((matched[0], method.http_method == verb, method, matched[1]))
        if not candidates:
            raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
        _, _, method, params = max(candidates, key=lambda c: (c[0], c[1]))
        return method, params

    @staticmethod
    def _validate(method: Method, headers: dict[str, str], body: bytes) -> None:
        """The method's request validator on the body (see :mod:`mdk.local.cloud.request_validation`)."""
        schema = model_for(method.body_models, headers.get("content-type"))
        if schema is None:
            return
        problems = body_problems(schema, body)
        if problems:
            log.info("request body refused by the validator: %s", "; ".join(problems))
            raise GatewayError(400, "BAD_REQUEST_BODY", "Invalid request body")

    def _authorize(
        self,
        api: Api,
        method: Method,
        *,
        verb: str,
        target: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The request's ``requestContext.identity`` and ``authorizer`` once the method's auth admits it;
        a refusal raises :class:`~mdk.local.cloud.services.gateway_access.AccessRefused`."""
        identity: dict[str, Any] = {"sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent")}
        authorizer: dict[str, Any] | None = None
        if method.authorization == "AWS_IAM":
            caller = gateway_access.verify_sigv4(
                verb=verb,
                target=target,
                headers=headers,
                body=body,
                region=self.region,
                identities=self._identity,
            )
            resource = gateway_access.method_arn(
                region=self.region,
                account=moto_adapter.ACCOUNT,
                api_id=api.id,
                stage=api.stage,
                verb=verb,
                path=path,
            )
            context = gateway_access.condition_context(
                caller,
                region=self.region,
                source_ip=identity["sourceIp"],
                user_agent=headers.get("user-agent"),
                now=dt.datetime.now(dt.UTC),
            )
            gateway_access.authorize_invoke(caller, resource, context)
            identity.update(caller.request_context())
        elif method.authorization == "COGNITO_USER_POOLS":
            claims = self.tokens.verify(
                headers.get("authorization"),
                issuers=method.authorizer_issuers,
                scopes=method.authorization_scopes,
            )
            # API Gateway hands a Lambda proxy the token's claims as strings
            authorizer = {
                "claims": {k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()}
            }
        if method.api_key_required:
            grant = gateway_access.find_grant(
                self.apigateway, headers.get("x-api-key"), api_id=api.id, stage=api.stage
            )
            self.usage.admit(grant, method.resource_path, method.http_method)
            identity["apiKey"], identity["apiKeyId"] = grant.key_value, grant.key_id
        return identity, authorizer

    def _identity(self, access_key: str) -> Identity | None:
        """Who signed with ``access_key``: the local credentials are the account's root user; any other key
        is an IAM user's or an assumed role's in the local AWS."""
        key, secret = self.credentials
        if access_key == key:
            return Identity.root(moto_adapter.ACCOUNT, key, secret)
        return moto_adapter.access_key_owner(access_key)

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Cognito's token endpoint (client credentials grant), served on the gateway's port."""
        form = {
            k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        answer = gateway_access.client_credentials(
            cognito=self._cognito,
            form=form,
            authorization=headers.get("authorization"),
            region=self.region,
            signing_key=moto_adapter.cognito_signing_key(),
        )
        return answer.encoded()

    def _event(
        self,
        api: Api,
        method: Method,
        *,
        verb: str,
        path: str,
        query: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        request_id: str,
        identity: dict[str, Any],
        authorizer: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        binary = _binary(content_type, api.binary_types) if body else False
        multi_query = dict(parse_qs(query, keep_blank_values=True)) if query else None
        now = time.time()
        return {
            "resource": method.resource_path,
            "path": path,
            "httpMethod": verb,
            "headers": dict(headers) or None,
            "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} if multi_query else None,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": method.resource_path,
                "resourcePath": method.resource_path,
                "httpMethod": verb,
                "extendedRequestId": request_id,
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": f"/{api.stage}{path}",
                "accountId": "123456789012",
                "protocol": "HTTP/1.1",
                "stage": api.stage,
                "domainPrefix": api.id,
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": identity,
                **({"authorizer": authorizer} if authorizer else {}),
                "domainName": f"{api.id}.execute-api.{self.region}.amazonaws.com",
                "apiId": api.id,
            },
            "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"))
            if body
            else None,
            "isBase64Encoded": binary,
        }

    def _lambda(
        self,
        function_arn: str,
        event: dict[str, Any],
        integration: dict[str, Any],
        binary_types: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, str], bytes]:
        name, qualifier = split_function(function_arn)
        timeout = int(integration.get("timeoutInMillis", 29000)) / 1000
        payload = json.dumps(event).encode()
        # An event over Lambda's 6 MB synchronous limit (a body between ~6 MB and API Gateway's own 10 MB):
        # Lambda's Invoke API refuses it (413 RequestEntityTooLargeException) before any function code runs,
        # so the function records no Invocation and no Error (nothing a rollback alarm can count). What API
        # Gateway answers then is documented in "Handling Lambda errors with an API Gateway API"
        # (https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html): "If the Lambda API
        # rejects the invocation request, API Gateway returns a 500 error code" with the message "Internal
        # server error", the DEFAULT_5XX gateway response (no specific type is documented for it: see "Gateway
        # response types for API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
        # API Gateway REST cannot measure the event before invoking (no request validator or mapping can
        # inspect a proxy integration's size), so that 500 in the stack's DEFAULT_5XX shape is what AWS gives
        # the caller, and what the local gateway gives; the local runner refuses the invocation as Lambda
        # does.
        refused = _INVOKE_REFUSED is None and len(payload) > MAX_EVENT
        try:
            if refused:
                raise GatewayError(500, "DEFAULT_5XX", "Internal server error")
            result = self.runner.invoke(name, qualifier, payload, timeout=timeout)
        except LookupError as exc:
            raise GatewayError(502, "DEFAULT_5XX", f"Internal server error ({exc})") from exc
        except Exception as exc:
            if _INVOKE_REFUSED is not None and isinstance(exc, _INVOKE_REFUSED):
                log.info("Lambda refused to invoke %s: %s", name, exc)
                raise GatewayError(500, "DEFAULT_5XX", "Internal server error") from exc
            raise
        if result.status == 504:
            raise GatewayError(504, "INTEGRATION_TIMEOUT", "Endpoint request timed out")
        if result.errored:
            raise GatewayError(502, "DEFAULT_5XX", "Internal server error")
        try:
            answer = json.loads(result.payload)
            status = int(answer["statusCode"])
        except (ValueError, KeyError, TypeError):
            raise GatewayError(
                502, "DEFAULT_5XX", "Internal server error (malformed Lambda proxy response)"
            ) from None
        out_headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
        for key, values in (answer.get("multiValueHeaders") or {}).items():
            out_headers[str(key)] = ", ".join(str(v) for v in values)
        raw = answer.get("body") or ""
        # "Return binary media from a Lambda proxy integration in API Gateway"
        # (https://docs.aws.amazon.com/apigateway/latest/developerguide/lambda-proxy-integration-with-proxy-resource.html
        # and "Content type conversions in API Gateway", .../api-gateway-payload-encodings-workflow.html):
        # a body flagged isBase64Encoded is decoded to binary when the request's (first) Accept media type
        # is one of the API's binary media types; otherwise the client gets the base64 text.
        accept = (event.get("headers") or {}).get("accept", "").split(",")[0].split(";")[0].strip()
        decode = bool(answer.get("isBase64Encoded")) and _binary(accept, binary_types)
        body_out = base64.b64decode(raw) if decode else str(raw).encode()
        out_headers["x-amzn-requestid"] = event["requestContext"]["requestId"]
        return status, out_headers, body_out

    def _sagemaker(
        self, endpoint: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        forward = {k: v for k, v in headers.items() if k in ("content-type", "accept")}
        try:
            status, answer_headers, answer, _variant = self.endpoints.invoke(endpoint, body, forward)
        except (RuntimeError, OSError) as exc:
            log.warning("endpoint %s: %s", endpoint, exc)
            raise GatewayError(503, "DEFAULT_5XX", f"the model endpoint is unavailable: {exc}") from exc
        keep = {
            k: v
            for k, v in answer_headers.items()
            if k in ("content-type", "x-amzn-invoked-production-variant")
        }
        return status, keep, answer

    def _gateway_response(
        self, exc: GatewayError, request_id: str, api: Api | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        api = api or self.api  # a path no API has: every model API answers in the same shape
        default = "DEFAULT_4XX" if exc.status < 500 else "DEFAULT_5XX"
        response = (api.responses.get(exc.kind) or api.responses.get(default)) if api else None
        template = ((response or {}).get("responseTemplates") or {}).get("application/json")
        if template:
            body = (
                template.replace("$context.error.messageString", json.dumps(exc.message))
                .replace("$context.error.message", exc.message)
                .replace("$context.requestId", request_id)
            )
        else:
            body = json.dumps({"message": exc.message})
        status = int((response or {}).get("statusCode") or exc.status)
        return (
            status,
            {
                "content-type": "application/json",
                "x-amzn-errortype": exc.kind,
                "x-amzn-requestid": request_id,
            },
            body.encode(),
        )


def _binary(media_type: str, binary_types: tuple[str, ...]) -> bool:
    """Whether ``media_type`` is one of the API's binary media types (``*/*`` style wildcards allowed)."""
    media_type = media_type.lower()
    return bool(media_type) and any(fnmatch.fnmatchcase(media_type, p.lower()) for p in binary_types)


def _body_models(
    method: dict[str, Any], validators: dict[str, dict[str, Any]], schemas: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """A method's request models by content type, where its request validator checks bodies."""
    validator = validators.get(method.get("requestValidatorId") or "")
    if not validator or not validator.get("validateRequestBody"):
        return {}
    return {
        str(content_type): schemas[name]
        for content_type, name in (method.get("requestModels") or {}).items()
        if name in schemas
    }


def _pool(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], arn.rsplit("/", 1)[-1]


#: a JWT's payload, unverified (kept for importers; the gateway verifies tokens with CognitoTokens)
_jwt_claims = gateway_access.unverified_claims


class _BadRequest(Exception):
    def __init__(self, error: GatewayError, *, close: bool = True) -> None:
        super().__init__(error.message)
        self.error, self.close = error, close


def _handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mdk-local-apigateway"

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            size = len(self.raw_requestline) + sum(len(k) + len(v) + 4 for k, v in self.headers.items())
            if len(self.path) > MAX_URL:
                self._refuse(GatewayError(414, "DEFAULT_4XX", "Request-URI Too Long"))
                return False
            if size > MAX_HEADERS:
                self._refuse(GatewayError(431, "DEFAULT_4XX", "Request Header Fields Too Large"))
                return False
            return True

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a bad request line, a header line over 64 KiB, over 100 headers)
            in API Gateway's JSON shape instead of its HTML pages."""
            phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Bad Request"
            if code in (431, 414):
                phrase = {431: "Request Header Fields Too Large", 414: "Request-URI Too Long"}[code]
            self._refuse(GatewayError(code, "DEFAULT_4XX" if code < 500 else "DEFAULT_5XX", phrase))

        def _refuse(self, error: GatewayError) -> None:
            status, out_headers, payload = gateway._gateway_response(error, str(uuid.uuid4()))
            self.close_connection = True
            self._write(status, {**out_headers, "connection": "close"}, payload)

        def _body(self) -> bytes:
            """The request's body: by Content-Length, or chunked (RFC 9112 section 7.1); both, or a length
            that is not a number, is a malformed request (400); a body over API Gateway's 10 MB is a 413."""
            length = self.headers.get("content-length")
            encoding = (self.headers.get("transfer-encoding") or "").strip().lower()
            if encoding:
                if length is not None or encoding != "chunked":
                    raise _BadRequest(GatewayError(400, "DEFAULT_4XX", "Bad Request"))
                return self._chunked()
            if length is None:
                return b""
            text = length.strip()
            if not text.isdigit() or "," in length:
                raise _BadRequest(
                    GatewayError(400, "DEFAULT_4XX", "Bad Request: Content-Length must be a number of bytes")
                )
            size = int(text)
            if size > MAX_BODY:
                self._discard(size)  # read what the client sends (up to a bound) so it reads the answer
                raise _BadRequest(GatewayError(413, "REQUEST_TOO_LARGE", "Request Too Long"))
            body = self.rfile.read(size) if size else b""
            if len(body) < size:
                raise _BadRequest(GatewayError(400, "DEFAULT_4XX", "Bad Request: the body ended early"))
            return body

        def _discard(self, size: int) -> None:
            left = min(size, 8 * MAX_BODY)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)

        def _chunked(self) -> bytes:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1026)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _BadRequest(
                        GatewayError(400, "DEFAULT_4XX", "Bad Request: malformed chunked body")
                    ) from None
                if size < 0:
                    raise _BadRequest(GatewayError(400, "DEFAULT_4XX", "Bad Request: malformed chunked body"))
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BadRequest(GatewayError(413, "REQUEST_TOO_LARGE", "Request Too Long"))
                chunk = self.rfile.read(size)
                if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise _BadRequest(GatewayError(400, "DEFAULT_4XX", "Bad Request: malformed chunked body"))
                chunks.append(chunk)

        def _serve(self) -> None:
            try:
                body = self._body()
            except _BadRequest as exc:
                self._refuse(exc.error)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers.pop("transfer-encoding", None)  # what reaches the integration is the whole body
            try:
                status, out_headers, payload = gateway.handle(self.command, self.path, headers, body)
            except Exception:
                log.exception("the local gateway failed on %s %s", self.command, self.path)
                status, out_headers, payload = (
                    500,
                    {"content-type": "application/json"},
                    b'{"message": "Internal server error"}',
                )
            self._write(status, out_headers, payload)

        def _write(self, status: int, out_headers: dict[str, str], payload: bytes) -> None:
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            for key, value in out_headers.items():
                if key.lower() not in ("content-length", "transfer-encoding"):
                    if key.lower() == "connection" and value != "close":
                        continue
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has headers only
                self.wfile.write(payload)

        def __getattr__(self, name: str) -> Any:
            # every method (TRACE, CONNECT, made-up ones) reaches the gateway's routing, as on API Gateway,
            # instead of http.server's HTML 501
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("gateway: " + format, *args)

    return Handler


# ------------------------------------------------------------ CloudFormation types moto's skips


@completes("AWS::ApiGateway::Stage")
def stage(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    apigw = ctx.client("apigateway")
    try:
        apigw.create_stage(
            restApiId=props["RestApiId"], stageName=props["StageName"], deploymentId=props["DeploymentId"]
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConflictException":
            raise
        apigw.update_stage(
            restApiId=props["RestApiId"],
            stageName=props["StageName"],
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": props["DeploymentId"]}],
        )
    # Method settings (throttling, metrics, logging), as the console's stage editor patches them.
    settings = {
        "throttling/rateLimit": "ThrottlingRateLimit",
        "throttling/burstLimit": "ThrottlingBurstLimit",
        "metrics/enabled": "MetricsEnabled",
        "logging/loglevel": "LoggingLevel",
        "logging/dataTrace": "DataTraceEnabled",
    }
    operations = []
    for setting in props.get("MethodSettings", []):
        resource = setting.get("ResourcePath", "/*")
        method = (
            f"{'*' if resource == '/*' else resource.replace('/', '~1')}/{setting.get('HttpMethod', '*')}"
        )
        for path, key in settings.items():
            if key in setting:
                value = setting[key]
                text = str(value).lower() if isinstance(value, bool) else str(value)
                operations.append({"op": "replace", "path": f"/{method}/{path}", "value": text})
    if operations:
        apigw.update_stage(
            restApiId=props["RestApiId"], stageName=props["StageName"], patchOperations=operations
        )


@completes("AWS::ApiGateway::GatewayResponse")
def gateway_response(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"restApiId": props["RestApiId"], "responseType": props["ResponseType"]}
    if "StatusCode" in props:
        kwargs["statusCode"] = str(props["StatusCode"])
    if "ResponseParameters" in props:
        kwargs["responseParameters"] = props["ResponseParameters"]
    if "ResponseTemplates" in props:
        kwargs["responseTemplates"] = props["ResponseTemplates"]
    ctx.client("apigateway").put_gateway_response(**kwargs)


@completes("AWS::ApiGateway::Authorizer")
def authorizer(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """A Cognito (or Lambda) authorizer, under the id its methods' AuthorizerId names (a redeploy
    replaces it)."""
    apigw = ctx.client("apigateway")
    api_id, authorizer_id = str(props["RestApiId"]), ctx.prepared.names[logical]
    name = str(props.get("Name") or logical)
    with contextlib.suppress(ClientError):
        apigw.delete_authorizer(restApiId=api_id, authorizerId=authorizer_id)
    kwargs: dict[str, Any] = {"restApiId": api_id, "name": name, "type": str(props["Type"])}
    for key, arg in (
        ("ProviderARNs", "providerARNs"),
        ("IdentitySource", "identitySource"),
        ("IdentityValidationExpression", "identityValidationExpression"),
        ("AuthorizerUri", "authorizerUri"),
        ("AuthorizerCredentials", "authorizerCredentials"),
        ("AuthorizerResultTtlInSeconds", "authorizerResultTtlInSeconds"),
    ):
        if key in props:
            kwargs[arg] = props[key]
    with moto_adapter.apigateway_id("authorizer", name, ctx.region, authorizer_id):
        apigw.create_authorizer(**kwargs)


@completes("AWS::ApiGateway::ApiKey")
def api_key(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """An API key under the id its Ref was given; a redeploy updates its name, description and state
    and keeps its value (API Gateway generates a value once; here the local cloud draws it)."""
    apigw = ctx.client("apigateway")
    key_id = ctx.prepared.names[logical]
    enabled = str(props.get("Enabled", False)).lower() == "true"
    try:
        apigw.get_api_key(apiKey=key_id)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFoundException":
            raise
        value = str(props.get("Value") or secrets.token_urlsafe(30)[:40])
        with moto_adapter.apigateway_id("api_key", value, ctx.region, key_id):
            apigw.create_api_key(
                name=str(props.get("Name") or logical),
                description=str(props.get("Description", "")),
                enabled=enabled,
                value=value,
            )
        return
    operations = [{"op": "replace", "path": "/enabled", "value": str(enabled).lower()}]
    for key, path in (("Name", "/name"), ("Description", "/description")):
        if key in props:
            operations.append({"op": "replace", "path": path, "value": str(props[key])})
    apigw.update_api_key(apiKey=key_id, patchOperations=operations)


def _throttle(settings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "RateLimit" in settings:
        out["rateLimit"] = float(settings["RateLimit"])
    if "BurstLimit" in settings:
        out["burstLimit"] = int(settings["BurstLimit"])
    return out


@completes("AWS::ApiGateway::UsagePlan")
def usage_plan(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """A usage plan (its API stages with their per-method throttles, its throttle and quota) under the id
    its Ref was given; a redeploy replaces its settings and keeps its keys."""
    apigw = ctx.client("apigateway")
    plan_id = ctx.prepared.names[logical]
    name = str(props.get("UsagePlanName") or logical)
    payload: dict[str, Any] = {"name": name, "description": str(props.get("Description", ""))}
    payload["apiStages"] = [
        {
            "apiId": str(stage["ApiId"]),
            "stage": str(stage["Stage"]),
            **(
                {"throttle": {str(k): _throttle(v) for k, v in stage["Throttle"].items()}}
                if stage.get("Throttle")
                else {}
            ),
        }
        for stage in props.get("ApiStages", [])
    ]
    if props.get("Throttle"):
        payload["throttle"] = _throttle(props["Throttle"])
    if props.get("Quota"):
        quota = props["Quota"]
        payload["quota"] = {
            "limit": int(quota["Limit"]),
            "period": str(quota["Period"]),
            "offset": int(quota.get("Offset", 0)),
        }
    with contextlib.suppress(ClientError):  # moto keeps a deleted plan's keys: recreated, it has them
        apigw.delete_usage_plan(usagePlanId=plan_id)
    with moto_adapter.apigateway_id("usage_plan", name, ctx.region, plan_id):
        apigw.create_usage_plan(**payload)


@completes("AWS::ApiGateway::UsagePlanKey")
def usage_plan_key(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    ctx.client("apigateway").create_usage_plan_key(
        usagePlanId=str(props["UsagePlanId"]), keyId=str(props["KeyId"]), keyType=str(props["KeyType"])
    )


@completes("AWS::ApiGateway::RequestValidator")
def request_validator(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    apigw = ctx.client("apigateway")
    existing = apigw.get_request_validators(restApiId=props["RestApiId"]).get("items", [])
    if any(v.get("name") == props.get("Name") for v in existing):
        return
    apigw.create_request_validator(
        restApiId=props["RestApiId"],
        name=props.get("Name", logical),
        validateRequestBody=bool(props.get("ValidateRequestBody")),
        validateRequestParameters=bool(props.get("ValidateRequestParameters")),
    )


@completes("AWS::ApiGateway::Model")
def model(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """A request model (JSON Schema draft 4), named as the template's methods refer to it (Ref)."""
    apigw = ctx.client("apigateway")
    name = str(props.get("Name") or ctx.prepared.names[logical])
    schema = props.get("Schema", {})
    text = schema if isinstance(schema, str) else json.dumps(schema)
    with contextlib.suppress(ClientError):  # a redeploy: the new schema
        apigw.delete_model(restApiId=props["RestApiId"], modelName=name)
    apigw.create_model(
        restApiId=props["RestApiId"],
        name=name,
        contentType=str(props.get("ContentType", "application/json")),
        schema=text,
        **({"description": str(props["Description"])} if props.get("Description") else {}),
    )


# ----------------------------------------------------------- what moto's CloudFormation drops


@amends("AWS::ApiGateway::Method")
def method_request(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """A method's request validator, models and parameters, its authorizer and OAuth scopes, which moto's
    CloudFormation drops: without them the local gateway would hand a function a body API Gateway's
    validator refuses (400 BAD_REQUEST_BODY), or a caller without the model's scope. The template names
    the validator by its physical name; moto gave it an id."""
    wanted = props.get("RequestValidatorId")
    models = props.get("RequestModels")
    parameters = props.get("RequestParameters")
    authorizer = props.get("AuthorizerId")
    scopes = props.get("AuthorizationScopes")
    if not (wanted or models or parameters or authorizer or scopes):
        return
    validator_id = None
    if wanted:
        names = {
            ctx.prepared.names[validator]: r["Properties"].get("Name", validator)
            for validator, r in ctx.prepared.deferred.items()
            if r["Type"] == "AWS::ApiGateway::RequestValidator"
        }
        existing = ctx.client("apigateway").get_request_validators(restApiId=props["RestApiId"])
        validator_id = next(
            (v["id"] for v in existing.get("items", []) if v.get("name") == names.get(str(wanted))),
            str(wanted),
        )
    moto_adapter.set_method_request(
        str(props["RestApiId"]),
        str(props["ResourceId"]),
        str(props["HttpMethod"]),
        ctx.region,
        validator_id=validator_id,
        models={str(k): str(v) for k, v in models.items()} if models else None,
        parameters={str(k): bool(v) for k, v in parameters.items()} if parameters else None,
        authorizer_id=str(authorizer) if authorizer else None,
        scopes=[str(s) for s in scopes] if scopes else None,
    )


@amends("AWS::ApiGateway::RestApi")
def rest_api_settings(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    set_binary_media_types(ctx.client("apigateway"), str(ctx.resolve({"Ref": logical})), props)


def set_binary_media_types(apigw: Any, api_id: str, props: dict[str, Any]) -> None:
    """The API's BinaryMediaTypes, which moto's CloudFormation drops (its RestApi keeps the name,
    description and endpoint configuration only): without them a binary body would reach a Lambda
    proxy integration as text instead of base64 with isBase64Encoded, as API Gateway sends it."""
    wanted = [str(t) for t in props.get("BinaryMediaTypes", [])]
    have = apigw.get_rest_api(restApiId=api_id).get("binaryMediaTypes", [])
    operations = [
        {"op": op, "path": "/binaryMediaTypes/" + t.replace("~", "~0").replace("/", "~1"), "value": t}
        for op, types, other in (("add", wanted, have), ("remove", have, wanted))
        for t in types
        if t not in other
    ]
    if operations:
        apigw.update_rest_api(restApiId=api_id, patchOperations=operations)
