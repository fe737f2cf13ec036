"""What the REST API's request validator lets through to a model, checked on the synthesized template.

The SageMaker Python SDK's default JSON serializer sends a bare array (``predict(X)``), which every
serving path reads as instances: the gateway in front of them must let it through, on Lambda and on
SageMaker routes alike, and still refuse what no path reads.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import Synth
from tests.template_events import GatewayRefusal, check_body, routes

ROW = [5.1, 3.5, 1.4, 0.2]
PASSES: tuple[Any, ...] = (
    [ROW],
    [ROW, ROW],
    {"instances": [ROW]},
    {"inputs": {"features": [ROW]}},
    {"inputs": [ROW]},
)
REFUSED: tuple[Any, ...] = (
    [],
    {},
    {"instances": []},
    {"instances": [ROW], "inputs": [ROW]},
    {"rows": [ROW]},
    "text",
    3,
)


@pytest.mark.parametrize("which", ["synth_variant", "synth_sagemaker"])
def test_every_predict_route_lets_a_bare_list_of_instances_through(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(which)
    template = synth.merged_json
    predict = [r for r in routes(template) if r.path.endswith("/predict") and r.verb == "POST"]
    assert len(predict) == len(synth.config.models)
    for route in predict:
        for body in PASSES:
            check_body(template, "POST", route.path, json.dumps(body).encode(), "")
        for body in REFUSED:
            with pytest.raises(GatewayRefusal):
                check_body(template, "POST", route.path, json.dumps(body).encode(), "application/json")
