"""API Gateway proxy events built from a synthesized template: what the deployed REST API would send.

A test that hands a handler an event must use one the stack can produce. This module reads the
``AWS::ApiGateway::RestApi``, its ``Resource`` tree, ``Method`` and ``Stage`` resources of a template and,
for a method and a concrete path, matches the route as API Gateway does (a literal path part before a
``{param}``, ``{param+}`` greedy) and builds the REST proxy event (format 1.0) of that route: ``resource``
(the route's template path), ``pathParameters`` (exactly the route's parameters, or ``None``),
``requestContext.resourcePath``/``stage``, and the body base64-encoded when its Content-Type is one of the
API's ``BinaryMediaTypes``.

Reference: "Input format of a Lambda function for proxy integration",
https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
"""

from __future__ import annotations

import base64
import copy
import fnmatch
from dataclasses import dataclass
from typing import Any

from tests.events import _recorded


@dataclass(frozen=True)
class Route:
    """One method of the REST API: its template path, verb and the logical id of its Method resource."""

    path: str  # e.g. /models/iris/predictions/{id}
    verb: str
    method_id: str
    integration: dict[str, Any]


class NoRoute(LookupError):
    """The template's API has no method for this verb and path (API Gateway would answer 403/404)."""


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _is_root(ref: Any) -> bool:
    return isinstance(ref, dict) and "Fn::GetAtt" in ref and ref["Fn::GetAtt"][1] == "RootResourceId"


def routes(template: dict[str, Any]) -> list[Route]:
    """Every method of the template's REST API with its full path, resolved from the Resource tree."""
    tree = _resources(template, "AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical: str) -> str:
        if logical not in paths:
            props = tree[logical]["Properties"]
            parent = props["ParentId"]
            head = "" if _is_root(parent) else path_of(parent["Ref"])
            paths[logical] = f"{head}/{props['PathPart']}"
        return paths[logical]

    found = []
    for logical, method in _resources(template, "AWS::ApiGateway::Method").items():
        props = method["Properties"]
        target = props["ResourceId"]
        path = "/" if _is_root(target) else path_of(target["Ref"])
        found.append(Route(path, props["HttpMethod"], logical, props.get("Integration", {})))
    return found


def _match(template_path: str, path: str) -> tuple[int, dict[str, str]] | None:
    """How specifically a route's path matches a request path (literal parts count), and its parameters."""
    want = [p for p in template_path.split("/") if p]
    got = [p for p in path.split("/") if p]
    params: dict[str, str] = {}
    literal = 0
    for i, part in enumerate(want):
        if part.startswith("{") and part.endswith("+}"):
            if i >= len(got):
                return None
            params[part[1:-2]] = "/".join(got[i:])
            return literal, params
        if i >= len(got):
            return None
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = got[i]
        elif part == got[i]:
            literal += 1
        else:
            return None
    return (literal, params) if len(want) == len(got) else None


def route_for(template: dict[str, Any], verb: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route API Gateway picks for a request: the most literal path of the verb (or ANY)."""
    candidates = []
    for route in routes(template):
        if route.verb not in (verb, "ANY"):
            continue
        matched = _match(route.path, path)
        if matched is not None:
            candidates.append((matched[0], route.verb == verb, route, matched[1]))
    if not candidates:
        raise NoRoute(f"{verb} {path}: no method in the template's REST API")
    _, _, route, params = max(candidates, key=lambda c: (c[0], c[1]))
    return route, params


def rest_event(
    template: dict[str, Any],
    verb: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Lambda proxy event the template's REST API sends for this request."""
    route, params = route_for(template, verb, path)
    [api] = _resources(template, "AWS::ApiGateway::RestApi").values()
    binary = api["Properties"].get("BinaryMediaTypes", [])
    stages = _resources(template, "AWS::ApiGateway::Stage").values()
    stage = next((s["Properties"]["StageName"] for s in stages), "prod")
    event = copy.deepcopy(_recorded("v1"))
    recorded = {k: v for k, v in event["headers"].items() if k.lower() not in ("accept", "content-type")}
    typed = {"Content-Type": "application/json"} if body is not None else {}
    headers = {**recorded, **typed, **(headers or {})}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    raw = body.encode() if isinstance(body, str) else body
    is_binary = any(fnmatch.fnmatch(content_type.split(";")[0].strip(), pattern) for pattern in binary)
    event.update(
        resource=route.path,
        path=path,
        httpMethod=verb,
        headers=headers or None,
        multiValueHeaders={k: [v] for k, v in headers.items()} or None,
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in (query or {}).items()} or None,
        pathParameters=params or None,
        stageVariables=None,
        body=None if raw is None else (base64.b64encode(raw).decode() if is_binary else raw.decode()),
        isBase64Encoded=raw is not None and is_binary,
    )
    context = event["requestContext"]
    context.update(resourcePath=route.path, httpMethod=verb, stage=stage, path=f"/{stage}{path}")
    return event
