"""API Gateway proxy events (REST v1 and HTTP API v2) to requests, and replies back to responses.

Also the refusals of a path or method the model function does not serve, from the route table
(:mod:`mdk_runtime.routes`), so the handler can answer the model's own routes without an ASGI round trip
(see :mod:`lambda_handlers.inference`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdk_runtime.errors import MalformedRequest, MethodNotAllowed, RouteNotFound
from mdk_runtime.media import JSON
from mdk_runtime.routes import METHODS, Action, listing
from mdk_runtime.service import Reply

TEXT_TYPES = (JSON, "text/")

#: What a synchronous invocation may answer: Lambda fails the invocation (API Gateway's caller gets a
#: 502) when the function's serialized result is larger. "Lambda quotas", Invocation payload (request
#: and response): 6 MB each for synchronous invocations (https://docs.aws.amazon.com/lambda/latest/dg/
#: gettingstarted-limits.html); "Invoke", "For synchronous invocations, the maximum payload size is
#: 6 MB" (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html). 6 MB is 6 * 1024 * 1024 bytes.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
# A proxy response's envelope (status, one header, flags) is a few hundred bytes; JSON escaping makes a
# character of the body at most 12 bytes (an astral character as two \uXXXX escapes).
_ENVELOPE_MARGIN = 1024
_MAX_ESCAPE = 12


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # as sent: HTTP APIs lower-case names, REST APIs keep the client's case
    raw_body: str
    base64: bool
    v2: bool

    def header(self, name: str) -> str | None:
        """A header by lower-case name, whatever case the client used (exact matches first: cheap)."""
        headers = self.headers
        value = headers.get(name)
        if value is None and not self.v2:
            value = headers.get(name.title())
            if value is None:
                for key, candidate in headers.items():
                    if key.lower() == name:
                        return str(candidate)
        return value

    def body(self) -> bytes:
        if self.base64:
            try:
                return base64.b64decode(self.raw_body, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedRequest("request body is flagged base64 but is not valid base64") from None
        # surrogatepass: a lone surrogate must reach the JSON decoder (a clean 400), not crash here.
        return self.raw_body.encode("utf-8", "surrogatepass")


def read_event(event: Mapping[str, Any]) -> HttpRequest:
    """The parts of an API Gateway proxy event a route needs; raises KeyError if it is not one."""
    v2 = event.get("version") == "2.0"
    context = event.get("requestContext") or {}
    if v2:
        method = context["http"]["method"]
        path = event.get("rawPath") or context["http"]["path"]
        stage = context.get("stage")
        # HTTP APIs put a named stage in front of the path; REST APIs do not.
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
    else:
        method = event["httpMethod"]
        path = event["path"]
    return HttpRequest(
        method=str(method).upper(),
        path=str(path),
        headers=event.get("headers") or {},
        raw_body=event.get("body") or "",
        base64=bool(event.get("isBase64Encoded")),
        v2=v2,
    )


def wrong_method(method: str, path: str, action: Action) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on {path[:200]}; use {METHODS[action]}")


def unknown_route(method: str, path: str, model: str) -> RouteNotFound:
    return RouteNotFound(
        f"no route {method} {path[:200]}; this function serves model {model!r}: {listing(model)}"
    )


def to_response(reply: Reply, *, v2: bool) -> dict[str, Any]:
    """A proxy integration response; binary bodies are base64-encoded, as API Gateway expects."""
    binary = not reply.content_type.startswith(TEXT_TYPES)
    body = base64.b64encode(reply.body).decode("ascii") if binary else reply.body.decode("utf-8")
    response: dict[str, Any] = {
        "statusCode": reply.status,
        "headers": {"content-type": reply.content_type},
        "body": body,
        "isBase64Encoded": binary,
    }
    if not v2:
        response["multiValueHeaders"] = {}
    return response


def invocation_size(response: dict[str, Any]) -> int:
    """Bytes of a proxy response as the Python runtime returns it to Lambda: its JSON serialization
    (awslambdaric's encoder: default separators, and before Python 3.12 ``ensure_ascii``, the larger
    count, used here for every runtime). A binary body is already base64 (4 bytes per 3); a text body's
    escapes are counted, not written: the runtime serializes the response itself."""
    body: str = response["body"]
    envelope = len(json.dumps({**response, "body": ""}))
    if body.isascii() and body.isprintable():  # orjson's output: only quotes and backslashes escape
        return envelope + len(body) + body.count('"') + body.count("\\")
    return envelope + len(json.dumps(body)) - 2


def oversized(response: dict[str, Any], limit: int = LAMBDA_RESPONSE_LIMIT) -> int | None:
    """The response's size if it is over ``limit``, else None; free for any body that cannot be over it."""
    if len(response["body"]) * _MAX_ESCAPE + _ENVELOPE_MARGIN <= limit:
        return None
    size = invocation_size(response)
    return size if size > limit else None
