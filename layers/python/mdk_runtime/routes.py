"""The HTTP routes of a model: the one table the stack, the app, the handler, the hook, the CLI and the
local cloud build from.

Every model is served at ``/models/<name>/<action>``; a Lambda model's function also answers the bare
``/<action>`` (the local server, a function URL). SageMaker models take only ``predict`` at the API
(straight to InvokeEndpoint); a model with a prediction store also has ``GET
/models/<name>/predictions/{id}``. Standard library only: the pre-traffic hook's zip carries this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["predict", "metadata", "health"]
Runtime = Literal["lambda", "sagemaker"]
PREFIX = "models"


@dataclass(frozen=True)
class Route:
    """One action of a model: its HTTP method and the runtimes whose API serves it."""

    action: Action
    method: str
    runtimes: tuple[Runtime, ...]


PREDICT = Route("predict", "POST", ("lambda", "sagemaker"))
METADATA = Route("metadata", "GET", ("lambda",))
HEALTH = Route("health", "GET", ("lambda",))
MODEL_ROUTES: tuple[Route, ...] = (PREDICT, METADATA, HEALTH)
METHODS: dict[str, str] = {route.action: route.method for route in MODEL_ROUTES}

#: The prediction store's route below a model: the record id is its only path parameter.
STORED = ("predictions", "{id}")
STORED_METHOD = "GET"


def served(runtime: str) -> tuple[Route, ...]:
    """The routes the API has for a model of ``runtime``."""
    return tuple(route for route in MODEL_ROUTES if runtime in route.runtimes)


def model_prefix(model: str) -> str:
    return f"/{PREFIX}/{model}"


def model_path(model: str, action: str) -> str:
    """``/models/<model>/<action>``."""
    return f"{model_prefix(model)}/{action}"


def stored_path(model: str) -> str:
    """``/models/<model>/predictions/{id}``: the template path of the model's stored predictions."""
    return "/".join((model_prefix(model), *STORED))


def api_routes(model: str, runtime: str, *, store: bool) -> set[tuple[str, str]]:
    """Every (path, method) the API defines for one model."""
    found = {(model_path(model, route.action), route.method) for route in served(runtime)}
    if store:
        found.add((stored_path(model), STORED_METHOD))
    return found


def match(path: str, model: str | None) -> Action | None:
    """The action of ``/<action>`` or ``/models/<model>/<action>``, else None.

    ``model=None`` (a bundle so broken its name is unknown) matches any model name, so every model
    route answers 503 with the reason rather than 404.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) == 1:
        action = parts[0]
    elif len(parts) == 3 and parts[0] == PREFIX and (model is None or parts[1] == model):
        action = parts[2]
    else:
        return None
    return action if action in METHODS else None  # type: ignore[return-value]


def stored_model(resource: str) -> str | None:
    """The model of a stored-predictions route, from its template path (as the stack built it)."""
    parts = resource.split("/")
    if len(parts) == 5 and parts[0] == "" and parts[1] == PREFIX and tuple(parts[3:]) == STORED:
        return parts[2]
    return None


def listing(model: str) -> str:
    """The model's routes for a message: ``POST /models/m/predict, GET /models/m/metadata, ...``."""
    return ", ".join(f"{route.method} {model_path(model, route.action)}" for route in MODEL_ROUTES)
