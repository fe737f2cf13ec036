"""The Lambda function on values the model refuses: 422, counted as a client error, logged at WARNING."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from lambda_handlers import inference
from mdk_runtime.service import InferenceService
from tests.conftest import ServiceFactory
from tests.events import FakeLambdaContext, response_json
from tests.handlers.conftest import GatewayEvent
from tests.handlers.test_inference_handler import emf_documents, metric_names
from tests.value_models import gather_client_indices


@pytest.fixture
def lookup(service: ServiceFactory) -> InferenceService:
    svc = service(gather_client_indices(), name="lookup")
    assert svc.model is not None, svc.load_error
    return svc


def test_an_index_the_model_refuses_is_a_client_error_logged_at_warning_without_the_value(
    lookup: InferenceService,
    lambda_context: FakeLambdaContext,
    capfd: pytest.CaptureFixture[str],
    log_lines: io.StringIO,
    gateway_event: GatewayEvent,
) -> None:
    capfd.readouterr()
    event = gateway_event("v1", path="/models/lookup/predict", body=json.dumps({"instances": [1, 987654]}))
    response: dict[str, Any] = inference.handler(event, lambda_context, service=lookup)
    assert response["statusCode"] == 422
    assert response_json(response)["error"]["code"] == "input_rejected_by_model"
    captured = capfd.readouterr()
    output = captured.out + captured.err + log_lines.getvalue()
    assert "987654" not in output + response["body"]
    docs = emf_documents(captured.out)
    names = set().union(*(metric_names(d) for d in docs))
    assert "ClientErrors" in names
    assert "ServerErrors" not in names
    by_code = next(d for d in docs if "ErrorsByCode" in metric_names(d))
    assert by_code["ErrorCode"] == "input_rejected_by_model"
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' not in line]
    rejected = [entry for entry in logs if entry.get("message") == "request rejected"]
    assert [entry["level"] for entry in rejected] == ["WARNING"]
    assert rejected[0]["status"] == 422
    assert not [entry for entry in logs if entry.get("level") == "ERROR"]
