"""Every route the stack's REST API sends to a function is one that function serves (no 404 or 405 from
the handler for a route the stack defines), with the event API Gateway sends for it."""

from __future__ import annotations

import json
from typing import Any

from lambda_handlers import inference
from tests.conftest import REPO, ServiceFactory
from tests.events import FakeLambdaContext
from tests.handlers.conftest import HANDLER_MODELS
from tests.template_events import rest_event, routes


def test_every_model_route_of_the_template_is_answered_by_the_inference_handler(
    api_template: dict[str, Any], service: ServiceFactory
) -> None:
    served: dict[str, int] = {}
    services = {
        name: service(
            REPO / "models/iris/v1/model.onnx", name=name, labels=["setosa", "versicolor", "virginica"]
        )
        for name in HANDLER_MODELS
    }
    for route in routes(api_template):
        if route.integration.get("Type") != "AWS_PROXY" or route.verb == "OPTIONS":
            continue
        # This config has no prediction store: every Lambda route is a model's, behind its live alias.
        [target] = [p["Ref"] for p in route.integration["Uri"]["Fn::Join"][1] if isinstance(p, dict) and "Ref" in p
                    and not p["Ref"].startswith("AWS::")]  # fmt: skip
        alias = api_template["Resources"][target]
        assert alias["Type"] == "AWS::Lambda::Alias", route
        assert alias["Properties"]["Name"] == "live", route
        model = route.path.split("/")[2]
        body = json.dumps({"instances": [[6.3, 3.4, 5.6, 2.4]]}) if route.verb == "POST" else None
        event = rest_event(api_template, route.verb, route.path, body)
        response = inference.handler(event, FakeLambdaContext(), service=services[model])
        assert response["statusCode"] == 200, (route, response["body"])
        served[model] = served.get(model, 0) + 1
    assert served == dict.fromkeys(HANDLER_MODELS, 3)  # predict, metadata and health of every model
