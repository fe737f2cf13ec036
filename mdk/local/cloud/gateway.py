"""The deployed REST API, served on a loopback port the way API Gateway serves it.

The routes, their auth and their integrations are read from the local AWS (the API the stack created),
so what is served is what was deployed:

* ``http://127.0.0.1:<port>/<stage>/<path>``: resources match literally or by ``{param}`` (``{proxy+}``
  greedily); no match is API Gateway's 403 "Missing Authentication Token";
* auth per method: ``AWS_IAM`` checks the SigV4 signature against the local credentials (scope
  ``execute-api``, the stack's region); ``apiKeyRequired`` checks ``x-api-key`` against the API's enabled
  keys; ``COGNITO_USER_POOLS`` needs a bearer JWT whose issuer is the configured pool (its signature is
  not checked locally: the local cloud has no pool keys);
* ``AWS_PROXY`` (Lambda) integrations get API Gateway's REST proxy event (binary media types base64) and
  invoke the integration's function through its alias, so the alias's weights apply per request; a
  function error is a 502, a timeout a 504, both in the stack's gateway response shape;
* ``AWS`` integrations to ``runtime.sagemaker`` invoke the endpoint locally (variant weights apply) and
  pass the container's status and body through, as the stack's response templates do.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mdk.local.cloud.endpoints import Endpoints
from mdk.local.cloud.functions import FunctionRunner, split_function

log = logging.getLogger("mdk.local")
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_LAMBDA_URI = re.compile(r":lambda:path/2015-03-31/functions/(?P<function>.+)/invocations$")
_SAGEMAKER_URI = re.compile(r":runtime\.sagemaker:path/endpoints/(?P<endpoint>[^/]+)/invocations$")
MAX_BODY = 10 * 1024 * 1024  # API Gateway REST payload limit


@dataclass
class Method:
    resource_path: str
    http_method: str
    authorization: str
    api_key_required: bool
    integration: dict[str, Any]
    authorizer_issuers: tuple[str, ...] = ()


@dataclass
class Api:
    id: str
    stage: str
    binary_types: tuple[str, ...]
    methods: list[Method] = field(default_factory=list)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # gateway responses by type
    throttle: TokenBucket | None = None  # the stage's default method throttling (``*/*``)


class TokenBucket:
    """API Gateway's throttling: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


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
        self.api: Api | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        self.requests = 0

    @property
    def url(self) -> str:
        stage = self.api.stage if self.api else "dev"
        return f"http://127.0.0.1:{self.port}/{stage}/"

    def load(self, api_id: str, stage: str) -> None:
        """Read the API's routes, auth and integrations from the local AWS (after each deploy)."""
        described = self.apigateway.get_rest_api(restApiId=api_id)
        api = Api(api_id, stage, tuple(described.get("binaryMediaTypes", [])))
        authorizers = {a["id"]: a for a in self.apigateway.get_authorizers(restApiId=api_id).get("items", [])}
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
                        "https://cognito-idp.{}.amazonaws.com/{}".format(*_pool(arn))
                        for arn in authorizer.get("providerARNs", [])
                    )
                api.methods.append(
                    Method(
                        resource_path=resource["path"],
                        http_method=verb,
                        authorization=method.get("authorizationType", "NONE"),
                        api_key_required=bool(method.get("apiKeyRequired")),
                        integration=method.get("methodIntegration", {}),
                        authorizer_issuers=issuers,
                    )
                )
        for response in self.apigateway.get_gateway_responses(restApiId=api_id).get("items", []):
            api.responses[response["responseType"]] = response
        settings = self.apigateway.get_stage(restApiId=api_id, stageName=stage).get("methodSettings", {})
        throttling = settings.get("*/*", {})
        if "throttlingRateLimit" in throttling:
            api.throttle = TokenBucket(
                float(throttling["throttlingRateLimit"]), int(throttling.get("throttlingBurstLimit", 0))
            )
        self.api = api

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
        try:
            if self.api is None:
                raise GatewayError(503, "DEFAULT_5XX", "the API is not deployed yet")
            api = self.api
            parts = urlsplit(target)
            stage, _, rest = parts.path.lstrip("/").partition("/")
            if stage != api.stage:
                raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
            path = "/" + rest
            method, params = self._match(api, verb, path)
            if api.throttle is not None and not api.throttle.take():
                raise GatewayError(429, "THROTTLED", "Too Many Requests")
            if len(body) > MAX_BODY:
                raise GatewayError(413, "REQUEST_TOO_LARGE", "Request Too Long")
            identity = self._authorize(api, method, verb=verb, target=target, headers=headers, body=body)
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
                )
                return self._lambda(match.group("function"), event, integration)
            if match := _SAGEMAKER_URI.search(uri):
                return self._sagemaker(match.group("endpoint"), headers, body)
            raise GatewayError(
                500, "DEFAULT_5XX", f"integration {integration.get('type')} {uri} is not served locally"
            )
        except GatewayError as exc:
            return self._gateway_response(exc, request_id)

    def _match(self, api: Api, verb: str, path: str) -> tuple[Method, dict[str, str]]:
        candidates = []
        for method in api.methods:
            params = _match_path(method.resource_path, path)
            if params is not None:
                candidates.append((method, params))
        if not candidates:
            raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
        for method, params in candidates:
            if method.http_method in (verb, "ANY"):
                return method, params
        raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")

    def _authorize(
        self, api: Api, method: Method, *, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        identity: dict[str, Any] = {"sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent")}
        if method.api_key_required:
            key = headers.get("x-api-key")
            values = {
                k["value"]
                for k in self.apigateway.get_api_keys(includeValues=True).get("items", [])
                if k.get("enabled")
            }
            if not key or key not in values:
                raise GatewayError(403, "INVALID_API_KEY", "Forbidden")
            identity["apiKey"] = key
        if method.authorization == "AWS_IAM":
            identity.update(self._verify_sigv4(verb, target, headers, body))
        elif method.authorization == "COGNITO_USER_POOLS":
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            claims = _jwt_claims(token)
            if claims is None:
                raise GatewayError(401, "UNAUTHORIZED", "Unauthorized")
            if method.authorizer_issuers and claims.get("iss") not in method.authorizer_issuers:
                raise GatewayError(401, "UNAUTHORIZED", "Unauthorized")
            if float(claims.get("exp", 0)) < time.time():
                raise GatewayError(401, "UNAUTHORIZED", "The incoming token has expired")
            identity["cognitoAuthenticationProvider"] = claims.get("iss")
        return identity

    def _verify_sigv4(self, verb: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        header = headers.get("authorization", "")
        match = _SIGV4.match(header)
        if match is None:
            raise GatewayError(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
        access_key, secret = self.credentials
        if match.group("key") != access_key:
            raise GatewayError(
                403, "INVALID_SIGNATURE", "The security token included in the request is invalid."
            )
        if match.group("service") != "execute-api" or match.group("region") != self.region:
            raise GatewayError(
                403,
                "INVALID_SIGNATURE",
                f"Credential should be scoped to a valid region and service: {self.region}/execute-api",
            )
        amz_date = headers.get("x-amz-date", "")
        try:
            signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise GatewayError(403, "INVALID_SIGNATURE", "X-Amz-Date is missing or malformed") from None
        if abs((dt.datetime.now(dt.UTC) - signed_at).total_seconds()) > 300:
            raise GatewayError(
                403, "INVALID_SIGNATURE", "Signature expired: the request is more than 5 minutes old"
            )
        signed = match.group("headers").split(";")
        url = f"http://{headers.get('host', '127.0.0.1')}{target}"
        request = AWSRequest(method=verb, url=url, data=body, headers={h: headers.get(h, "") for h in signed})
        expected = _Verifier(
            Credentials(access_key, secret), "execute-api", self.region, amz_date, signed
        ).signature_of(request)
        if expected != match.group("signature"):
            raise GatewayError(
                403,
                "INVALID_SIGNATURE",
                "The request signature we calculated does not match the signature you provided.",
            )
        return {"accessKey": access_key, "caller": access_key, "user": access_key}

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
    ) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        binary = (
            any(fnmatch.fnmatch(content_type, pattern) for pattern in api.binary_types) if body else False
        )
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
                "domainName": f"{api.id}.execute-api.{self.region}.amazonaws.com",
                "apiId": api.id,
            },
            "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"))
            if body
            else None,
            "isBase64Encoded": binary,
        }

    def _lambda(
        self, function_arn: str, event: dict[str, Any], integration: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        name, qualifier = split_function(function_arn)
        timeout = int(integration.get("timeoutInMillis", 29000)) / 1000
        try:
            result = self.runner.invoke(name, qualifier, json.dumps(event).encode(), timeout=timeout)
        except LookupError as exc:
            raise GatewayError(502, "DEFAULT_5XX", f"Internal server error ({exc})") from exc
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
        payload = base64.b64decode(raw) if answer.get("isBase64Encoded") else str(raw).encode()
        out_headers["x-amzn-requestid"] = event["requestContext"]["requestId"]
        return status, out_headers, payload

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

    def _gateway_response(self, exc: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        api = self.api
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


class _Verifier(SigV4Auth):  # type: ignore[misc]
    """SigV4 of a received request, over exactly the headers the client signed, at the client's time."""

    def __init__(
        self, credentials: Credentials, service: str, region: str, amz_date: str, signed: list[str]
    ) -> None:
        super().__init__(credentials, service, region)
        self._amz_date = amz_date
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        for name in list(headers.keys()):
            if name.lower() not in self._signed:
                del headers[name]
        return headers

    def signature_of(self, request: AWSRequest) -> str:
        request.context["timestamp"] = self._amz_date
        if "host" not in request.headers:
            request.headers["host"] = urlsplit(request.url).netloc
        canonical = self.canonical_request(request)
        return str(self.signature(self.string_to_sign(request, canonical), request))


def _match_path(template: str, path: str) -> dict[str, str] | None:
    want = [p for p in template.strip("/").split("/") if p]
    got = [p for p in path.strip("/").split("/") if p]
    params: dict[str, str] = {}
    for index, part in enumerate(want):
        if part.startswith("{") and part.endswith("+}"):
            if index >= len(got):
                return None
            params[part[1:-2]] = "/".join(got[index:])
            return params
        if index >= len(got):
            return None
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = got[index]
        elif part != got[index]:
            return None
    return params if len(want) == len(got) else None


def _pool(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], arn.rsplit("/", 1)[-1]


def _jwt_claims(token: str) -> dict[str, Any] | None:
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        padded = pieces[1] + "=" * (-len(pieces[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mdk-local-apigateway"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, out_headers, payload = gateway.handle(self.command, self.path, headers, body)
            except Exception:
                log.exception("the local gateway failed on %s %s", self.command, self.path)
                status, out_headers, payload = (
                    500,
                    {"content-type": "application/json"},
                    b'{"message": "Internal server error"}',
                )
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            for key, value in out_headers.items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
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
