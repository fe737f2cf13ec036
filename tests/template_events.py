"""API Gateway proxy events built from a synthesized template: what the deployed REST API would send.

A test that hands a handler an event must use one the stack can produce. This module reads the
``AWS::ApiGateway::RestApi`` resources (one per model stack: a template of several stacks merged holds
several, and each route belongs to the API its resource tree hangs from), their ``Resource`` trees, ``Method`` and ``Stage`` resources of a template and,
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

from mdk.local.cloud.request_validation import body_problems, match_path, model_for
from tests.events import _recorded


@dataclass(frozen=True)
class Route:
    """One method of the REST API: its template path, verb and the logical id of its Method resource."""

    path: str  # e.g. /models/iris/predictions/{id}
    verb: str
    method_id: str
    integration: dict[str, Any]
    api_id: str = ""  # the logical id of the RestApi the route belongs to


class NoRoute(LookupError):
    """The template's API has no method for this verb and path: API Gateway answers it itself (REST APIs
    answer an unknown route or method 403 ``MISSING_AUTHENTICATION_TOKEN``), the function never sees it."""


class NotLambdaProxy(LookupError):
    """The route exists but is not a Lambda proxy integration (e.g. SageMaker's AWS integration): API
    Gateway sends no Lambda event for it."""


class GatewayRefusal(ValueError):
    """API Gateway's request validator refuses the body before the integration (``BAD_REQUEST_BODY``)."""


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _is_root(ref: Any) -> bool:
    return isinstance(ref, dict) and "Fn::GetAtt" in ref and ref["Fn::GetAtt"][1] == "RootResourceId"


def _api_of(template: dict[str, Any], resource_ref: Any) -> str:
    """The logical id of the RestApi a resource (a Ref, or the root's GetAtt) hangs from."""
    while not _is_root(resource_ref):
        resource_ref = template["Resources"][resource_ref["Ref"]]["Properties"]["ParentId"]
    return str(resource_ref["Fn::GetAtt"][0])


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
        api = _api_of(template, target)
        found.append(Route(path, props["HttpMethod"], logical, props.get("Integration", {}), api))
    return found


def _match(template_path: str, path: str) -> tuple[int, dict[str, str]] | None:
    """How specifically a route's path matches a request path (literal parts count), and its parameters:
    the local gateway's matching (one implementation, so both pick the same route)."""
    return match_path(template_path, path)


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


def binary_media_types(template: dict[str, Any], api_id: str | None = None) -> list[str]:
    """A REST API's ``BinaryMediaTypes`` (request bodies of these types reach a proxy function base64):
    of ``api_id``, or of the template's every API in order, each type once."""
    apis = _resources(template, "AWS::ApiGateway::RestApi")
    chosen = [apis[api_id]] if api_id is not None else list(apis.values())
    types: list[str] = []
    for api in chosen:
        types += [t for t in api["Properties"].get("BinaryMediaTypes", []) if t not in types]
    return types


def _body_schema(template: dict[str, Any], route: Route, content_type: str) -> dict[str, Any] | None:
    """The JSON schema API Gateway validates this route's body against, if its validator checks bodies."""
    props = template["Resources"][route.method_id]["Properties"]
    validator = props.get("RequestValidatorId")
    models = props.get("RequestModels") or {}
    if not isinstance(validator, dict) or "Ref" not in validator:
        return None
    if not template["Resources"][validator["Ref"]]["Properties"].get("ValidateRequestBody"):
        return None
    # API Gateway picks the model by the request's Content-Type, and "$default" otherwise (as the local
    # gateway does: mdk/local/cloud/request_validation.py).
    model = model_for(models, content_type)
    if not isinstance(model, dict) or "Ref" not in model:
        return None
    schema: dict[str, Any] = template["Resources"][model["Ref"]]["Properties"]["Schema"]
    return schema


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_problems(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """What JSON Schema draft 4 finds wrong with ``value``, for the keywords the kit's models use (type,
    properties, additionalProperties, min/maxProperties, minItems, items); any other keyword raises, so a
    model this checker cannot read is never silently accepted."""
    known = {"$schema", "title", "type", "properties", "additionalProperties", "minProperties",
             "maxProperties", "minItems", "maxItems", "items", "description"}  # fmt: skip
    unknown = set(schema) - known
    if unknown:
        raise NotImplementedError(f"schema keywords {sorted(unknown)} at {where}")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        ok = any(
            isinstance(value, _JSON_TYPES[k]) and not (k in ("number", "integer") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            return [f"{where}: expected {' or '.join(kinds)}"]
    problems: list[str] = []
    if isinstance(value, dict):
        most = schema.get("maxProperties", len(value))
        if not schema.get("minProperties", 0) <= len(value) <= most:
            problems.append(f"{where}: {len(value)} properties")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += schema_problems(properties[key], item, f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                problems.append(f"{where}: unexpected property {key}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            problems.append(f"{where}: {len(value)} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                problems += schema_problems(schema["items"], item, f"{where}[{i}]")
    return problems


def _media_type(headers: dict[str, str] | None) -> str:
    value = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
    return value.split(";")[0].strip()


def check_body(template: dict[str, Any], verb: str, path: str, body: bytes | None, media_type: str) -> None:
    """Raise ``GatewayRefusal`` where the route's request validator refuses the body, whatever the route's
    integration (Lambda proxy or SageMaker's AWS integration): a missing, non-JSON or off-model body."""
    route, _ = route_for(template, verb, path)
    # Without a Content-Type, API Gateway takes the body as application/json.
    schema = _body_schema(template, route, media_type or "application/json")
    if schema is None:
        return
    problems = body_problems(schema, body)  # the local gateway's validator: JSON Schema draft 4
    if problems:
        raise GatewayRefusal(f"{verb} {path}: the body fails the method's model: {'; '.join(problems)}")


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
    if route.integration.get("Type") != "AWS_PROXY":
        check_body(
            template, verb, path, body.encode() if isinstance(body, str) else body, _media_type(headers)
        )
        raise NotLambdaProxy(f"{verb} {path}: {route.path} is a {route.integration.get('Type')} integration")
    binary = binary_media_types(template, route.api_id)
    stages = [
        s
        for s in _resources(template, "AWS::ApiGateway::Stage").values()
        if s["Properties"].get("RestApiId") == {"Ref": route.api_id}
    ]
    stage = next((s["Properties"]["StageName"] for s in stages), "prod")
    event = copy.deepcopy(_recorded("v1"))
    recorded = {k: v for k, v in event["headers"].items() if k.lower() not in ("accept", "content-type")}
    given = headers or {}
    # The caller's headers win whatever their case (a client sends each header once).
    recorded = {k: v for k, v in recorded.items() if k.lower() not in {g.lower() for g in given}}
    typed = {"Content-Type": "application/json"} if body is not None else {}
    if any(k.lower() == "content-type" for k in given):
        typed = {}
    headers = {**recorded, **typed, **given}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    raw = body.encode() if isinstance(body, str) else body
    media_type = content_type.split(";")[0].strip()
    is_binary = any(fnmatch.fnmatch(media_type, pattern) for pattern in binary)
    check_body(template, verb, path, raw, media_type)
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
    method = template["Resources"][route.method_id]["Properties"]
    if method.get("AuthorizationType") == "AWS_IAM":
        # A SigV4-signed call: API Gateway names the signer in the identity.
        signer = {
            "accountId": "123456789012",
            "caller": "AROAEXAMPLEROLEID:client",
            "accessKey": "ASIAEXAMPLEACCESSKEY",
            "userArn": "arn:aws:sts::123456789012:assumed-role/client/client",
            "user": "AROAEXAMPLEROLEID:client",
        }
        context["identity"] = {**context["identity"], **signer}
    if method.get("ApiKeyRequired"):
        # The client sent its key (x-api-key); API Gateway names it in the identity.
        event["headers"] = {**event["headers"], "x-api-key": "test-api-key-value"}
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "x-api-key": ["test-api-key-value"]}
        context["identity"] = {**context["identity"], "apiKey": "test-api-key-value", "apiKeyId": "testkeyid"}
    return event
