"""What API Gateway (REST) checks of a request before any integration runs, shared by the local gateway and
the events built from a synthesized template (``tests/template_events.py``), so both refuse the same bodies
and pick the same route.

* Routes: "Set up a proxy integration with a proxy resource"
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-set-up-simple-proxy.html) and
  "Set up REST API resources" (https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-create-resource.html):
  a path part matches literally or by ``{param}``, ``{param+}`` greedily; a literal part is preferred to a
  parameter where both match.
* Bodies: "Request validation for REST APIs in API Gateway"
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-method-request-validation.html):
  a method whose request validator checks bodies validates "the applicable request payload" against the
  method's model "for a given content type. If no matching content type is found, request validation is not
  performed", and a model for ``$default`` applies to every other content type. Without a Content-Type
  header API Gateway takes ``application/json`` ("Method request behavior for payloads without mapping
  templates for REST APIs in API Gateway",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/integration-passthrough-behaviors.html).
  Models are JSON Schema draft 4 ("Data models for REST APIs",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/models-mappings-models.html); a body that is
  not JSON at all fails its model too. The refusal is the ``BAD_REQUEST_BODY`` gateway response ("Gateway
  response types for API Gateway",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html: "The
  gateway response when the request body cannot be validated according to an enabled request validator").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from jsonschema import Draft4Validator  # type: ignore[import-untyped]

T = TypeVar("T")
#: The media type API Gateway assumes for a request without a Content-Type header.
DEFAULT_MEDIA_TYPE = "application/json"


def match_path(template: str, path: str) -> tuple[int, dict[str, str]] | None:
    """How a route's template path matches a request path: the number of literal parts matched (the more,
    the more specific the route) and the path parameters, or ``None`` where it does not match."""
    want = [p for p in template.split("/") if p]
    got = [p for p in path.split("/") if p]
    params: dict[str, str] = {}
    literal = 0
    for index, part in enumerate(want):
        if index >= len(got):
            return None
        if part.startswith("{") and part.endswith("+}"):
            params[part[1:-2]] = "/".join(got[index:])
            return literal, params
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = got[index]
        elif part == got[index]:
            literal += 1
        else:
            return None
    return (literal, params) if len(want) == len(got) else None


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header value (parameters dropped, lower case); the default when
    there is none."""
    value = (content_type or "").split(";")[0].strip().lower()
    return value or DEFAULT_MEDIA_TYPE


def model_for(models: Mapping[str, T] | None, content_type: str | None) -> T | None:
    """The method's request model for the request's Content-Type (``$default`` otherwise), if any."""
    if not models:
        return None
    wanted = media_type(content_type)
    for key, model in models.items():
        if key.lower() == wanted:
            return model
    return models.get("$default")


def body_problems(schema: Mapping[str, Any], body: bytes | None) -> list[str]:
    """What API Gateway's validator finds wrong with a body against a draft 4 model; empty when it passes."""
    try:
        document = json.loads(body or b"")
    except ValueError:
        return ["the body is not JSON"]
    validator = Draft4Validator(dict(schema))
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.append(f"{where}: {error.message}")
    return problems
